"""Page loads in headless Chromium: the compare view of 20 runs, the runs page of 10,000.

Starts a real server (`python -m reglab.cli serve`, temp SQLite under /tmp) and fills it as
the app itself would:

* 20 runs x 100 epochs x 10 metrics through the REST API: POST /api/experiments, then,
  as a worker does, POST /api/worker/claim, .../started, the epochs in one
  POST .../metrics (100 points; up to 1000 go in one request) and .../finish, each with
  the lease token.
* Then up to 10,000 experiments in all with the app's own service functions
  (`app.services.experiments.create`, `queue.claim`, `metrics.ingest`, `queue.finish`,
  `experiments.cancel`) on a session of `app.db.make_engine` over the same SQLite file,
  while the server sits idle. Over HTTP one POST took 10-14 ms on this machine: 10,000
  would take 100-140 s before a single claim or finish; in process the whole fill takes
  ~30 s. The oldest 30% have ended (succeeded, failed or cancelled; a finished run has its
  last epoch's 10 metrics), 10 are running, the newest are queued, as after a big sweep
  was submitted.

Measured:

* `/compare?ids=<20 ids>` in Chromium (Playwright, /usr/bin/chromium, headless, the flags
  of tests/browser/conftest.py). `--repeats` times: Chromium on a new, empty profile,
  then the page opened 3 times, each in a new tab: cold (nothing cached), warm (HTTP
  cache) and hot (HTTP cache and V8's code cache, which Chromium writes on a script's
  2nd run and reads from the 3rd). An init script, run before any page script, looks at
  every animation frame for a `.chart` div whose `data` Plotly has set and whose SVG
  holds a trace; the time is `performance.now()` (ms since navigation start) in the first
  task after that frame, i.e. once it was painted. Also: all 4 charts painted, and a
  breakdown from Resource Timing, long tasks and `Plotly.react` (wrapped by the init
  script). Target: first chart <= 1 s.
* `GET /api/metrics?ids=<20 ids>` from httpx (keep-alive), `--api-repeats` times: p50,
  p95, the response's size; which requests met a full (generation 2) garbage collection
  in the server (a `sitecustomize` on the server's PYTHONPATH logs its `gc.callbacks`;
  the app is not touched); and the server's steps redone in process. Target: <= 100 ms.
* Plotly.js: served gzipped and cached (headers, a 304 on If-None-Match), and the bytes
  each visit transfers (Resource Timing `transferSize`).
* With 10,000 experiments: `GET /api/experiments?limit=50&...`, `--list-requests` times
  over a fixed mix (first pages, deep offsets, status filters, name filters), shuffled:
  p50/p95 (target p95 <= 50 ms). And `/` in Chromium until `#runs tbody tr` holds 50
  rows, cold, warm and hot as above (target <= 1 s).

    .venv/bin/python bench/page_load.py
    .venv/bin/python bench/page_load.py --repeats 5 --api-repeats 30 --list-requests 100 \
        --json bench/out/page_load.json | tee bench/out/page_load.txt
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Server,
    loadavg,
    machine,
    median,
    percentile,
    print_table,
    seed_spec,
)

TARGET_FIRST_CHART_S = 1.0
TARGET_METRICS_API_S = 0.100
TARGET_LIST_P95_S = 0.050
TARGET_RUNS_PAGE_S = 1.0

COMPARE_RUNS = 20
EPOCHS = 100
# The worker's per-epoch names for a classification run (app.spec), plus one per-layer one.
METRIC_NAMES = (
    "loss",
    "val_loss",
    "data_loss",
    "val_data_loss",
    "reg_loss",
    "accuracy",
    "val_accuracy",
    "lr",
    "epoch_seconds",
    "kernel_norm/dense",
)
FAMILIES = ("l2-sweep", "dropout-grid", "l1-sparse", "elastic-net", "baseline")
FINISHED_SHARE = 0.3
RUNNING = 10

CHROMIUM = "/usr/bin/chromium"
# As tests/browser/conftest.py launches it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 900}
VISITS = ("cold", "warm", "hot")

# Runs in every document before its own scripts. Times are performance.now(): ms since
# the navigation started (the document's timeOrigin).
INIT_JS = r"""
(() => {
  if (window.top !== window) return;
  const bench = { react: [], longtasks: [] };
  window.__bench = bench;
  const now = () => performance.now();
  try {
    new PerformanceObserver((list) => {
      for (const task of list.getEntries()) bench.longtasks.push([task.startTime, task.duration]);
    }).observe({ type: "longtask", buffered: true });
  } catch (error) {
    bench.longtaskError = String(error);
  }
  // Plotly.js is a classic script in <head>: it has run once parsing is done.
  document.addEventListener("readystatechange", () => {
    if (document.readyState !== "interactive") return;
    bench.interactive = now();
    const plotly = window.Plotly;
    if (plotly && typeof plotly.react === "function") {
      const react = plotly.react;
      plotly.react = function (...args) {
        const start = now();
        const result = react.apply(this, args);
        bench.react.push([start, now(), args[0] && args[0].id]);
        return result;
      };
    }
  });
  // The first task after a frame's rendering: that frame has been painted.
  const channel = new MessageChannel();
  const pending = [];
  channel.port1.onmessage = () => {
    const t = now();
    for (const key of pending.splice(0)) bench[key] = t;
  };
  const afterPaint = (key) => {
    pending.push(key);
    channel.port2.postMessage(null);
  };
  const drawn = (chart) => Array.isArray(chart.data) && chart.data.length > 0
    && chart.querySelector(".scatterlayer .trace") !== null;
  function frame() {
    const t = now();
    const charts = [...document.querySelectorAll(".chart")];
    const count = charts.filter(drawn).length;
    if (count > 0 && bench.firstChartFrame === undefined) {
      bench.firstChartFrame = t;
      afterPaint("firstChartPainted");
    }
    if (charts.length >= 4 && count === charts.length && bench.allChartsFrame === undefined) {
      bench.allChartsFrame = t;
      afterPaint("allChartsPainted");
    }
    if (bench.rowsFrame === undefined && document.querySelectorAll("#runs tbody tr").length >= 50) {
      bench.rowsFrame = t;
      afterPaint("rowsPainted");
    }
    if (bench.allChartsFrame === undefined && bench.rowsFrame === undefined && t < 60000) {
      requestAnimationFrame(frame);
    }
  }
  requestAnimationFrame(frame);
})();
"""

COLLECT_JS = r"""
() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const resources = performance.getEntriesByType("resource").map((e) => ({
    name: e.name, type: e.initiatorType, start: e.startTime, end: e.responseEnd,
    transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize,
  }));
  const charts = [...document.querySelectorAll(".chart")].map((chart) => ({
    id: chart.id,
    traces: (chart.data ?? []).length,
    points: (chart.data ?? []).reduce((sum, trace) => sum + (trace.x ?? []).length, 0),
  }));
  return {
    bench: { ...window.__bench },
    nav: {
      responseEnd: nav.responseEnd, domInteractive: nav.domInteractive,
      dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
      transfer: nav.transferSize, encoded: nav.encodedBodySize, decoded: nav.decodedBodySize,
    },
    resources,
    charts,
    rows: document.querySelectorAll("#runs tbody tr").length,
  };
}
"""


# --- what the runs hold -----------------------------------------------------------------


def compare_spec(index: int) -> dict[str, Any]:
    """The seed's MLP on digits for 100 epochs, its L2 and dropout varied per run."""
    spec = seed_spec(epochs=EPOCHS, name=f"compare-{index:02d}")
    l2 = (0.0001, 0.0003, 0.001, 0.003, 0.01)[index % 5]
    dropout = (0.0, 0.25, 0.5, 0.6)[index // 5 % 4]
    for layer in spec["model"]["layers"]:
        layer["regularizer"] = {"kind": "l2", "l2": l2}
        layer["dropout"] = dropout
    spec["training"]["seed"] = index
    return spec


def sweep_spec(index: int) -> dict[str, Any]:
    """One of five families of a big sweep; the name carries the family and the index."""
    family = FAMILIES[index % len(FAMILIES)]
    spec = seed_spec(epochs=EPOCHS, name=f"{family}-{index:05d}")
    strength = (0.0001, 0.001, 0.01, 0.1)[index // 5 % 4]
    for layer in spec["model"]["layers"]:
        layer["dropout"] = 0.0
        if family == "l2-sweep":
            layer["regularizer"] = {"kind": "l2", "l2": strength}
        elif family == "dropout-grid":
            layer["regularizer"] = {"kind": "l2", "l2": 0.001}
            layer["dropout"] = (0.1, 0.3, 0.5, 0.7)[index // 5 % 4]
        elif family == "l1-sparse":
            layer["regularizer"] = {"kind": "l1", "l1": strength}
        elif family == "elastic-net":
            layer["regularizer"] = {"kind": "l1l2", "l1": strength, "l2": strength}
        else:
            layer.pop("regularizer", None)
    spec["training"]["seed"] = index
    spec["training"]["learning_rate"] = (0.001, 0.003, 0.01)[index % 3]
    return spec


def epoch_values(epoch: int, run: int, rng: random.Random) -> dict[str, float]:
    """Plausible curves: the training loss falls, validation turns up late, noise on all."""
    data_loss = 0.05 + 2.2 * math.exp(-epoch / (10 + run)) + abs(rng.gauss(0, 0.01))
    overfit = 0.002 * max(0, epoch - 30) * (1 + run % 5) / 5
    val_data_loss = 0.12 + 2.1 * math.exp(-epoch / (12 + run)) + overfit + abs(rng.gauss(0, 0.02))
    reg_loss = (0.01 + 0.002 * run) * (1 + 0.5 * math.exp(-epoch / 15))
    accuracy = max(0.0, min(1.0, 1.0 - data_loss / 2.4 + rng.gauss(0, 0.005)))
    val_accuracy = max(0.0, min(1.0, 1.0 - val_data_loss / 2.2 + rng.gauss(0, 0.01)))
    return {
        "loss": data_loss + reg_loss,
        "val_loss": val_data_loss + reg_loss,
        "data_loss": data_loss,
        "val_data_loss": val_data_loss,
        "reg_loss": reg_loss,
        "accuracy": accuracy,
        "val_accuracy": val_accuracy,
        "lr": 0.001,
        "epoch_seconds": 0.04 + abs(rng.gauss(0, 0.005)),
        "kernel_norm/dense": 3.0 + 4.0 * (1 - math.exp(-epoch / 20)) + rng.gauss(0, 0.05),
    }


# --- filling the database ---------------------------------------------------------------


def fill_compare_runs(client: httpx.Client) -> list[int]:
    """20 finished runs through the REST API, each claimed and fed as a worker would."""
    host = socket.gethostname()
    ids = []
    for index in range(COMPARE_RUNS):
        response = client.post("/api/experiments", json=compare_spec(index))
        response.raise_for_status()
        run_id = int(response.json()["id"])
        claim = client.post(
            "/api/worker/claim",
            json={
                "worker_id": "bench-page-load",
                "host": host,
                "devices": ["CPU"],
                "slot": "CPU",
                "wait": 5,
            },
        )
        claim.raise_for_status()
        if claim.json()["experiment_id"] != run_id:
            raise RuntimeError(f"claimed {claim.json()['experiment_id']}, expected {run_id}")
        token = claim.json()["lease_token"]
        base = f"/api/worker/experiments/{run_id}"
        client.post(
            f"{base}/started", json={"lease_token": token, "device": "/physical_device:CPU:0"}
        ).raise_for_status()
        rng = random.Random(index)
        start = time.time() - EPOCHS * 0.05
        points = [
            {
                "epoch": epoch,
                "values": epoch_values(epoch, index, rng),
                "time": start + epoch * 0.05,
            }
            for epoch in range(EPOCHS)
        ]
        for first in range(0, len(points), 1000):
            ack = client.post(
                f"{base}/metrics",
                json={"lease_token": token, "points": points[first : first + 1000]},
            )
            ack.raise_for_status()
        best = min(range(EPOCHS), key=lambda epoch: points[epoch]["values"]["val_data_loss"])
        last = points[-1]["values"]
        client.post(
            f"{base}/finish",
            json={
                "lease_token": token,
                "status": "succeeded",
                "test_metrics": {
                    "test_loss": last["val_loss"],
                    "test_data_loss": last["val_data_loss"],
                    "test_accuracy": last["val_accuracy"],
                },
                "best_epoch": best,
            },
        ).raise_for_status()
        ids.append(run_id)
    return ids


def fill_experiments(db_path: Path, count: int) -> tuple[Counter[str], float]:
    """`count` more experiments with the app's service functions, one session each."""
    from sqlmodel import Session

    from app.db import make_engine
    from app.models import Status
    from app.services import experiments, metrics, queue
    from app.spec import ExperimentSpec

    engine = make_engine(f"sqlite:///{db_path}")
    finished = int(count * FINISHED_SHARE)
    statuses: Counter[str] = Counter()
    rng = random.Random(7)
    started = time.perf_counter()
    try:
        for index in range(count):
            spec = ExperimentSpec.model_validate(sweep_spec(index))
            with Session(engine, expire_on_commit=False) as session:
                row = experiments.create(session=session, spec=spec, max_attempts=1)
                assert row.id is not None
                fate = "queued"
                if index < finished:
                    fate = {0: "failed", 1: "cancelled", 2: "cancelled"}.get(
                        index % 20, "succeeded"
                    )
                elif index < finished + RUNNING:
                    fate = "running"
                if fate == "cancelled":
                    experiments.cancel(session=session, experiment_id=row.id)
                elif fate != "queued":
                    claimed = queue.claim(
                        session=session,
                        worker_id="bench-fill",
                        host="bench",
                        devices=["CPU"],
                        lease_seconds=3600,
                    )
                    if claimed is None or claimed.id != row.id:
                        raise RuntimeError(f"claimed {claimed and claimed.id}, expected {row.id}")
                    assert claimed.lease_token is not None
                    epoch = {"succeeded": EPOCHS - 1, "failed": 17, "running": 42}[fate]
                    values = epoch_values(epoch, index % 20, rng)
                    metrics.ingest(
                        session=session,
                        experiment_id=row.id,
                        lease_token=claimed.lease_token,
                        points=[(epoch, values, None)],
                    )
                    if fate == "succeeded":
                        queue.finish(
                            session=session,
                            experiment_id=row.id,
                            lease_token=claimed.lease_token,
                            status=Status.succeeded,
                            test_metrics={"test_loss": values["val_loss"]},
                            best_epoch=60,
                        )
                    elif fate == "failed":
                        queue.finish(
                            session=session,
                            experiment_id=row.id,
                            lease_token=claimed.lease_token,
                            status=Status.failed,
                            error=f"diverged at epoch {epoch + 1}",
                            error_epoch=epoch + 1,
                        )
                statuses[fate] += 1
    finally:
        engine.dispose()
    return statuses, time.perf_counter() - started


# --- measuring ----------------------------------------------------------------------------


def timed_gets(client: httpx.Client, paths: list[str]) -> list[tuple[float, int, float, float]]:
    """(seconds, body bytes, wall-clock start, end) of each GET, body read included."""
    out = []
    for path in paths:
        wall = time.time()
        started = time.perf_counter()
        response = client.get(path)
        body = response.content
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        out.append((elapsed, len(body), wall, wall + elapsed))
    return out


# The server's garbage collections, logged by a sitecustomize on its PYTHONPATH (the app's
# code is not touched): wall-clock end, generation, pause in ms.
GC_HOOK = """
import gc, os, time
_path = os.environ.get("REGLAB_BENCH_GC_LOG")
if _path:
    _log = open(_path, "a", buffering=1)
    _began = [0.0]
    def _on_gc(phase, info):
        if phase == "start":
            _began[0] = time.perf_counter()
        else:
            pause = (time.perf_counter() - _began[0]) * 1000
            _log.write(f"{time.time():.6f} {info['generation']} {pause:.3f}\\n")
    gc.callbacks.append(_on_gc)
"""


def gc_hook(folder: Path) -> dict[str, str]:
    """Write the hook under `folder`; the environment that makes a server load it."""
    (folder / "sitecustomize.py").write_text(GC_HOOK)
    (folder / "gc.log").write_text("")
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "REGLAB_BENCH_GC_LOG": str(folder / "gc.log")}


def full_gcs(log: Path, spans: list[tuple[float, int, float, float]]) -> list[tuple[int, float]]:
    """Per request: the server's full (generation 2) collections during it, and their ms."""
    time.sleep(0.1)
    entries = []
    for line in log.read_text().splitlines():
        end, generation, pause = line.split()
        if generation == "2":
            entries.append((float(end), float(pause)))
    out = []
    for _, _, start, end in spans:
        inside = [pause for at, pause in entries if start <= at <= end + 0.002]
        out.append((len(inside), sum(inside)))
    return out


def gc_rows(seconds: list[float], gcs: list[tuple[int, float]]) -> list[list[str]]:
    with_gc = [s for s, (count, _) in zip(seconds, gcs, strict=True) if count]
    without = [s for s, (count, _) in zip(seconds, gcs, strict=True) if not count]
    pauses = [pause for count, pause in gcs if count]
    return [
        [
            "requests during which the server ran a full GC",
            f"{len(with_gc)} of {len(seconds)}",
        ],
        [
            "  those requests, median / the GC pauses in them, median",
            f"{ms(median(with_gc), 1)} / {ms(median(pauses) / 1000, 1)}",
        ],
        ["  the other requests, median", ms(median(without), 1)],
    ]


def metrics_breakdown(db_path: Path, ids: list[int], repeats: int) -> list[list[str]]:
    """The server's work for /api/metrics, step by step in process: medians (seconds)."""
    import sqlite3

    from pydantic import TypeAdapter
    from sqlmodel import Session, col, select

    from app.db import make_engine
    from app.models import Experiment, Metric
    from app.schemas import MetricSeries, RunsMetrics
    from app.services import metrics

    engine = make_engine(f"sqlite:///{db_path}", immediate=False)
    raw = sqlite3.connect(db_path)
    adapter = TypeAdapter(RunsMetrics)
    query = (
        select(Metric.experiment_id, Metric.epoch, Metric.name, Metric.value)
        .where(col(Metric.experiment_id).in_(ids))
        .order_by(col(Metric.experiment_id), col(Metric.epoch))
    )
    sql = str(query.compile(compile_kwargs={"literal_binds": True}))
    steps: dict[str, list[float]] = {}
    rows: list[Any] = []
    body = b""
    gc.disable()  # a collection would land on whichever step happens to trigger it
    try:
        for _ in range(repeats):
            with Session(engine) as session:
                t0 = time.perf_counter()
                found = set(
                    session.exec(select(Experiment.id).where(col(Experiment.id).in_(ids))).all()
                )
                t1 = time.perf_counter()
                rows = raw.execute(sql).fetchall()
                t2 = time.perf_counter()
                session.exec(query).all()
                t3 = time.perf_counter()
                data = metrics.series_of_runs(session=session, experiment_ids=ids)
                t4 = time.perf_counter()
                model = RunsMetrics(
                    runs={
                        str(i): MetricSeries(epochs=data[i][0], series=data[i][1])
                        for i in ids
                        if i in found
                    },
                    missing=[],
                )
                t5 = time.perf_counter()
                body = adapter.dump_json(adapter.validate_python(model))
                t6 = time.perf_counter()
            for key, value in (
                ("ids that exist (1 query)", t1 - t0),
                (f"  metric rows, sqlite3 alone ({len(rows)} rows)", t2 - t1),
                ("  metric rows through SQLAlchemy", t3 - t2),
                ("series_of_runs: SQLAlchemy query + grouping in Python", t4 - t3),
                ("RunsMetrics built (pydantic)", t5 - t4),
                ("response validated + dump_json (as FastAPI does)", t6 - t5),
            ):
                steps.setdefault(key, []).append(value)
    finally:
        gc.enable()
        raw.close()
        engine.dispose()
    return [[key, ms(median(values), 1)] for key, values in steps.items()] + [
        ["JSON body", kib(len(body))]
    ]


def list_breakdown(db_path: Path, queries: dict[str, dict[str, Any]], repeats: int) -> list[list]:
    """list_experiments and ExperimentOut.of per kind of list request, in process."""
    from sqlmodel import Session

    from app.db import make_engine
    from app.models import Status
    from app.schemas import ExperimentList, ExperimentOut
    from app.services import experiments

    engine = make_engine(f"sqlite:///{db_path}", immediate=False)
    rows_out = []
    try:
        for kind, params in queries.items():
            sql, shape = [], []
            for _ in range(repeats):
                with Session(engine) as session:
                    t0 = time.perf_counter()
                    rows, total = experiments.list_experiments(
                        session=session,
                        status=Status(params["status"]) if "status" in params else None,
                        name=params.get("name"),
                        limit=50,
                        offset=params.get("offset", 0),
                    )
                    t1 = time.perf_counter()
                    ExperimentList(
                        items=[ExperimentOut.of(row) for row in rows], total=total
                    ).model_dump_json()
                    t2 = time.perf_counter()
                sql.append(t1 - t0)
                shape.append(t2 - t1)
            rows_out.append([kind, ms(median(sql), 1), ms(median(shape), 1)])
    finally:
        engine.dispose()
    return rows_out


def chromium_version() -> str:
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    result = subprocess.run(
        [CHROMIUM, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    return result.stdout.strip() or "unknown version"


def load_page(context: Any, path: str, done: str, timeout_ms: float = 30_000) -> dict[str, Any]:
    """Open `path` in a new tab of `context`; wait for the init script's `done` mark."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(path, wait_until="commit", timeout=timeout_ms)
        page.wait_for_function(
            f"() => window.__bench && window.__bench.{done} !== undefined", timeout=timeout_ms
        )
        data: dict[str, Any] = page.evaluate(COLLECT_JS)
    finally:
        page.close()
    if errors:
        raise RuntimeError(f"JavaScript errors on {path}: {errors}")
    return data


def browser_loads(
    playwright: Any, base_url: str, path: str, done: str, repeats: int
) -> list[dict[str, Any]]:
    """Per repeat: Chromium on a new, empty profile, then `path` opened VISITS times, each
    in a new tab: cold (nothing cached), warm (HTTP cache), hot (HTTP and V8 code cache).

    A profile on disk, not an incognito `browser.new_context()`: Chromium keeps no V8
    code cache for incognito contexts, so their third visit is no faster than the second.
    """
    loads = []
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory(prefix="reglab-bench-chromium-", dir="/tmp") as profile:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                base_url=base_url,
                viewport=VIEWPORT,
            )
            try:
                context.add_init_script(INIT_JS)
                for visit in VISITS:
                    data = load_page(context, path, done)
                    data["repeat"], data["cache"] = repeat + 1, visit
                    loads.append(data)
            finally:
                context.close()
    return loads


def resource(load: dict[str, Any], pattern: str) -> dict[str, Any] | None:
    for entry in load["resources"]:
        if re.search(pattern, entry["name"]):
            return entry
    return None


def transferred(load: dict[str, Any]) -> int:
    return int(load["nav"]["transfer"] + sum(entry["transfer"] for entry in load["resources"]))


def ms(seconds: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f} ms"


def jms(value: float | None) -> str:
    """A page time (already in ms)."""
    return "n/a" if value is None else f"{value:.0f} ms"


def kib(count: float) -> str:
    return f"{count / 1024:.1f} KiB"


def verdict(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


def plotly_eval(load: dict[str, Any]) -> float | None:
    """The long task that ran Plotly.js: the longest one before parsing ended."""
    end = load["bench"].get("interactive")
    tasks = [d for start, d in load["bench"].get("longtasks", []) if end and start < end]
    return max(tasks) if tasks else None


def compare_rows(loads: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for load in loads:
        bench = load["bench"]
        plotly = resource(load, r"/vendor/plotly-")
        api = resource(load, r"/api/metrics\?")
        listing = resource(load, r"/api/experiments\?")
        react = bench.get("react", [])
        rows.append(
            [
                f"{load['repeat']} {load['cache']}",
                jms(bench.get("firstChartPainted")),
                jms(bench.get("allChartsPainted")),
                jms(load["nav"]["responseEnd"]),
                jms(plotly and plotly["end"]),
                jms(plotly_eval(load)),
                jms(bench.get("interactive")),
                f"{jms(api and api['start'])} -> {jms(api and api['end'])}",
                jms(listing and listing["end"]),
                f"{jms(react[0][0]) if react else 'n/a'} +{sum(b - a for a, b, _ in react):.0f}",
                kib(transferred(load)),
            ]
        )
    return rows


def runs_rows(loads: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for load in loads:
        bench = load["bench"]
        api = resource(load, r"/api/experiments\?")
        script = resource(load, r"/static/js/runs\.js")
        rows.append(
            [
                f"{load['repeat']} {load['cache']}",
                jms(bench.get("rowsPainted")),
                jms(load["nav"]["responseEnd"]),
                jms(script and script["end"]),
                f"{jms(api and api['start'])} -> {jms(api and api['end'])}",
                str(load["rows"]),
                kib(transferred(load)),
            ]
        )
    return rows


def pick(loads: list[dict[str, Any]], cache: str, key: str) -> list[float]:
    return [load["bench"][key] for load in loads if load["cache"] == cache]


def page_summary(
    loads: list[dict[str, Any]], key: str, what: str, target: float
) -> list[list[str]]:
    """A results row per visit: median (max) against the target (seconds)."""
    rows = []
    for visit, note in (("cold", "1st visit"), ("warm", "2nd visit"), ("hot", "3rd visit")):
        values = pick(loads, visit, key)
        rows.append(
            [
                f"{what}, {visit} ({note}), median (max)",
                f"{median(values):.0f} ms ({max(values):.0f})",
                f"<= {target * 1000:.0f} ms",
                verdict(median(values) / 1000, target),
            ]
        )
    return rows


def list_paths(total: int, succeeded: int) -> dict[str, dict[str, Any]]:
    """The kinds of list request the runs page makes, each with its query."""
    last = max(0, (total - 1) // 50 * 50)
    deep = min(1000, max(0, (succeeded - 1) // 50 * 50))
    return {
        "first page": {},
        "page 2": {"offset": 50},
        f"offset {min(5000, last)}": {"offset": min(5000, last)},
        f"last page (offset {last})": {"offset": last},
        "status=queued": {"status": "queued"},
        "status=succeeded": {"status": "succeeded"},
        f"status=succeeded, offset {deep}": {"status": "succeeded", "offset": deep},
        "status=failed": {"status": "failed"},
        "name=dropout": {"name": "dropout"},
        "name=04242 (1 match)": {"name": "04242"},
    }


def as_query(params: dict[str, Any]) -> str:
    return "/api/experiments?" + "&".join(
        f"{key}={value}" for key, value in {"limit": 50, "offset": 0, **params}.items()
    )


# --- main ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="fresh browser profiles per page (default 5)"
    )
    parser.add_argument(
        "--api-repeats", type=int, default=30, help="GET /api/metrics repeats (default 30)"
    )
    parser.add_argument(
        "--list-requests", type=int, default=100, help="list requests (default 100)"
    )
    parser.add_argument(
        "--experiments", type=int, default=10_000, help="experiments in all (default 10000)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw samples here")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {machine()}; {loadavg()}")
    print(f"browser: {chromium_version()}, headless, via Playwright")
    raw: dict[str, Any] = {}
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="reglab-bench-gc-", dir="/tmp") as hook,
        Server(env={"REGLAB_LEASE_SECONDS": "3600", **gc_hook(Path(hook))}) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
        sync_playwright() as playwright,
    ):
        assert server.folder is not None
        db_path = server.folder / "bench.db"
        print(f"server {server.url}, database {db_path}")

        # --- 20 runs over the REST API, the compare view --------------------------------
        t0 = time.perf_counter()
        ids = fill_compare_runs(client)
        print(
            f"filled {COMPARE_RUNS} runs x {EPOCHS} epochs x {len(METRIC_NAMES)} metrics "
            f"over the REST API in {time.perf_counter() - t0:.1f} s"
        )
        wanted = ",".join(map(str, ids))

        found = re.search(r'src="(/vendor/plotly-[^"]+)"', client.get("/compare").text)
        if found is None:
            raise RuntimeError("no Plotly script on /compare")
        plotly_path = found.group(1)
        plotly = client.get(plotly_path, headers={"Accept-Encoding": "gzip"})
        plotly_304 = client.get(
            plotly_path, headers={"If-None-Match": plotly.headers.get("etag", "")}
        )

        compare_loads = browser_loads(
            playwright, server.url, f"/compare?ids={wanted}", "allChartsPainted", args.repeats
        )
        raw["compare_loads"] = compare_loads
        print(
            "compare charts drawn: "
            + ", ".join(
                f"{c['id']} {c['traces']} traces/{c['points']} points"
                for c in compare_loads[0]["charts"]
            )
        )

        api = timed_gets(client, [f"/api/metrics?ids={wanted}"] * args.api_repeats)
        api_seconds = [seconds for seconds, *_ in api]
        api_gcs = full_gcs(Path(hook) / "gc.log", api)
        api_response = client.get(f"/api/metrics?ids={wanted}")
        raw["metrics_api_s"] = api_seconds
        breakdown = metrics_breakdown(db_path, ids, repeats=10)

        # --- 10,000 experiments, the runs page -------------------------------------------
        more = max(0, args.experiments - COMPARE_RUNS)
        statuses, fill_seconds = fill_experiments(db_path, more)
        total = client.get("/api/experiments?limit=1").json()["total"]
        print(
            f"filled {more} more experiments with the service functions in {fill_seconds:.1f} s "
            f"({fill_seconds / max(more, 1) * 1000:.1f} ms each): "
            + ", ".join(f"{k} {v}" for k, v in statuses.items())
            + f"; {total} in all"
        )
        succeeded = client.get("/api/experiments?limit=1&status=succeeded").json()["total"]
        kinds = list_paths(total, succeeded)
        rounds = math.ceil(args.list_requests / len(kinds))
        schedule = [kind for _ in range(rounds) for kind in kinds][: args.list_requests]
        random.Random(1).shuffle(schedule)
        list_times = timed_gets(client, [as_query(kinds[kind]) for kind in schedule])
        by_kind: dict[str, list[float]] = {}
        sizes: dict[str, int] = {}
        for kind, (seconds, size, *_) in zip(schedule, list_times, strict=True):
            by_kind.setdefault(kind, []).append(seconds)
            sizes[kind] = size
        list_seconds = [seconds for seconds, *_ in list_times]
        list_gcs = full_gcs(Path(hook) / "gc.log", list_times)
        raw["list_api_s"] = by_kind
        list_server = {row[0]: row[1:] for row in list_breakdown(db_path, kinds, repeats=5)}

        runs_loads = browser_loads(playwright, server.url, "/", "rowsPainted", args.repeats)
        raw["runs_loads"] = runs_loads
        errors = server.error_summary()
    print(f"whole run {time.perf_counter() - started:.0f} s; at the end: {loadavg()}")
    if errors:
        print("server log, errors:")
        print(errors)

    # --- tables ---------------------------------------------------------------------------
    print_table(
        f"/compare?ids=<{COMPARE_RUNS} ids>, per load, ms since navigation start (each repeat: "
        "a new Chromium profile, then 3 visits in new tabs)",
        [
            "load",
            "1st chart painted",
            "4 charts painted",
            "HTML",
            "Plotly.js loaded",
            "Plotly.js run (long task)",
            "parsing done",
            "/api/metrics fetch",
            "/api/experiments",
            "Plotly.react start +total",
            "transferred",
        ],
        compare_rows(compare_loads),
    )

    def plotly_transfer(visit: str) -> float:
        return median(
            [
                entry["transfer"]
                for load in compare_loads
                if load["cache"] == visit and (entry := resource(load, r"/vendor/plotly-"))
            ]
        )

    def page_transfer(loads: list[dict[str, Any]], visit: str) -> float:
        return median([transferred(load) for load in loads if load["cache"] == visit])

    gzip_ok = plotly.headers.get("content-encoding") == "gzip"
    cached_ok = "max-age" in plotly.headers.get("cache-control", "")
    print_table(
        "Plotly.js served",
        ["check", "value"],
        [
            ["URL", plotly_path],
            ["Content-Encoding (Accept-Encoding: gzip)", plotly.headers.get("content-encoding")],
            [
                "bytes on the wire / decoded",
                f"{kib(int(plotly.headers.get('content-length', 0)))} / {kib(len(plotly.content))}",
            ],
            ["Cache-Control", plotly.headers.get("cache-control")],
            [
                "ETag; If-None-Match answered",
                f"{plotly.headers.get('etag')}; {plotly_304.status_code}",
            ],
            [
                "browser transferSize of Plotly.js, cold / warm / hot (median)",
                " / ".join(kib(plotly_transfer(visit)) for visit in VISITS),
            ],
            [
                "whole compare page transferred, cold / warm / hot (median)",
                " / ".join(kib(page_transfer(compare_loads, visit)) for visit in VISITS),
            ],
        ],
    )
    api_p50, api_p95 = median(api_seconds), percentile(api_seconds, 95)
    print_table(
        f"GET /api/metrics?ids=<{COMPARE_RUNS} ids>: HTTP (httpx, keep-alive), the server's "
        "full GCs, and its steps redone in process (GC off, medians of 10)",
        ["step", "time"],
        [
            [
                f"HTTP, p50 / p95 / max of {len(api_seconds)}",
                f"{ms(api_p50, 1)} / {ms(api_p95, 1)} / {ms(max(api_seconds), 1)}",
            ],
            *gc_rows(api_seconds, api_gcs),
            *breakdown,
        ],
    )
    print_table(
        f"GET /api/experiments?limit=50 with {total} experiments, per kind "
        "(HTTP; in process: list_experiments, then ExperimentOut.of + JSON)",
        ["request", "n", "p50", "max", "body", "in process: query+count", "models+JSON"],
        [
            [
                kind,
                len(by_kind[kind]),
                ms(median(by_kind[kind]), 1),
                ms(max(by_kind[kind]), 1),
                kib(sizes[kind]),
                *list_server[kind],
            ]
            for kind in kinds
            if kind in by_kind
        ],
    )
    print_table(
        f"GET /api/experiments, all {len(list_seconds)}: the server's full GCs",
        ["", "value"],
        gc_rows(list_seconds, list_gcs),
    )
    print_table(
        f"/ (runs page) with {total} experiments, per load, ms since navigation start",
        [
            "load",
            "50 rows painted",
            "HTML",
            "runs.js loaded",
            "/api/experiments fetch",
            "rows",
            "transferred",
        ],
        runs_rows(runs_loads),
    )

    list_p50, list_p95 = median(list_seconds), percentile(list_seconds, 95)
    all_cold = pick(compare_loads, "cold", "allChartsPainted")
    all_warm = pick(compare_loads, "warm", "allChartsPainted")
    evals = {
        visit: median(
            [e for load in compare_loads if load["cache"] == visit and (e := plotly_eval(load))]
        )
        for visit in VISITS
    }
    results = [
        *page_summary(
            compare_loads, "firstChartPainted", "compare: 1st chart", TARGET_FIRST_CHART_S
        ),
        [
            "compare: all 4 charts, cold / warm, median",
            f"{median(all_cold):.0f} / {median(all_warm):.0f} ms",
            "",
            "",
        ],
        [
            "  of which Plotly.js run, cold / warm / hot, median",
            " / ".join(f"{evals[visit]:.0f}" for visit in VISITS) + " ms",
            "",
            "",
        ],
        [
            f"GET /api/metrics (20 runs), p50 of {len(api_seconds)}",
            ms(api_p50, 1),
            "<= 100 ms",
            verdict(api_p50, TARGET_METRICS_API_S),
        ],
        [
            f"GET /api/metrics (20 runs), p95 of {len(api_seconds)}",
            ms(api_p95, 1),
            "<= 100 ms",
            verdict(api_p95, TARGET_METRICS_API_S),
        ],
        [
            "  its response",
            f"{kib(len(api_response.content))} JSON, Content-Encoding "
            f"{api_response.headers.get('content-encoding', 'none')}",
            "",
            "",
        ],
        [
            "Plotly.js gzipped and cached",
            f"{kib(int(plotly.headers.get('content-length', 0)))} gzip, max-age "
            f"{'yes' if cached_ok else 'no'}, 304: {plotly_304.status_code == 304}",
            "gzip + cached",
            "met" if gzip_ok and cached_ok else "MISSED",
        ],
        [
            "compare page transferred, cold / warm, median",
            f"{kib(page_transfer(compare_loads, 'cold'))} / "
            f"{kib(page_transfer(compare_loads, 'warm'))}",
            "",
            "",
        ],
        [
            f"GET /api/experiments ({total} in DB), p50 of {len(list_seconds)}",
            ms(list_p50, 1),
            "",
            "",
        ],
        [
            f"GET /api/experiments ({total} in DB), p95 of {len(list_seconds)}",
            ms(list_p95, 1),
            "<= 50 ms",
            verdict(list_p95, TARGET_LIST_P95_S),
        ],
        *page_summary(runs_loads, "rowsPainted", "runs page: 50 rows", TARGET_RUNS_PAGE_S),
    ]
    print_table("Results", ["figure", "measured", "target", ""], results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(raw, indent=1))
        print(f"raw samples: {args.json}")


if __name__ == "__main__":
    main()
