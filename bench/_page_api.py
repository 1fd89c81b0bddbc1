"""The API side of bench/page_load.py: timed GETs, the server's full garbage collections
during them (logged by a `sitecustomize` hook), and the server's steps for
`/api/metrics` and `/api/experiments` redone in process on the same database.

The GETs are timed with a plain keep-alive httpx client on purpose: the figure is the
HTTP round trip of the very request a page makes, body read included, which the client
package's calls would wrap in their own parsing.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter
from sqlmodel import Session, col, select

from app.db import make_engine
from app.models import Experiment, Metric, Status
from app.schemas import ExperimentList, ExperimentOut, MetricSeries, RunsMetrics
from app.services import experiments, metrics
from bench._common import fmt_ms, kib, median

# One timed GET: seconds, body bytes, wall-clock start and end.
Timed = tuple[float, int, float, float]


def timed_gets(client: httpx.Client, paths: list[str]) -> list[Timed]:
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


# --- the server's garbage collections -----------------------------------------------------

# Logged by a sitecustomize on the server's PYTHONPATH (the app's code is not touched):
# wall-clock end, generation, pause in ms.
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


def full_gcs(log: Path, spans: list[Timed]) -> list[tuple[int, float]]:
    """Per request: the server's full (generation 2) collections during it, and their ms."""
    time.sleep(0.1)
    entries = []
    for line in log.read_text().splitlines():
        at, generation, pause = line.split()
        if generation == "2":
            entries.append((float(at), float(pause)))
    out = []
    for _, _, start, end in spans:
        inside = [pause for at, pause in entries if start <= at <= end + 0.002]
        out.append((len(inside), sum(inside)))
    return out


# --- the server's steps, in process ---------------------------------------------------------


def metrics_breakdown(db_path: Path, ids: list[int], repeats: int) -> list[list[str]]:
    """The server's work for /api/metrics, step by step in process: medians (seconds)."""
    engine = make_engine(f"sqlite:///{db_path}", immediate=False)
    raw = sqlite3.connect(db_path)
    query = (
        select(Metric.experiment_id, Metric.epoch, Metric.name, Metric.value)
        .where(col(Metric.experiment_id).in_(ids))
        .order_by(col(Metric.experiment_id), col(Metric.epoch))
    )
    adapter = TypeAdapter(RunsMetrics)
    steps: dict[str, list[float]] = {}
    body = b""
    gc.disable()  # a collection would land on whichever step happens to trigger it
    try:
        for _ in range(repeats):
            with Session(engine) as session:
                timings, body = metrics_steps(session, raw, ids, query, adapter)
            for key, value in timings.items():
                steps.setdefault(key, []).append(value)
    finally:
        gc.enable()
        raw.close()
        engine.dispose()
    return [[key, fmt_ms(median(values), 1)] for key, values in steps.items()] + [
        ["JSON body", kib(len(body))]
    ]


def metrics_steps(
    session: Session,
    raw: sqlite3.Connection,
    ids: list[int],
    query: Any,
    adapter: TypeAdapter[RunsMetrics],
) -> tuple[dict[str, float], bytes]:
    """One pass over /api/metrics' steps (`query` reads the metric rows): each step's
    seconds, and the JSON body."""
    sql = str(query.compile(compile_kwargs={"literal_binds": True}))
    t0 = time.perf_counter()
    found = set(session.exec(select(Experiment.id).where(col(Experiment.id).in_(ids))).all())
    t1 = time.perf_counter()
    rows = raw.execute(sql).fetchall()
    t2 = time.perf_counter()
    session.exec(query).all()
    t3 = time.perf_counter()
    data = metrics.series_of_runs(session=session, experiment_ids=ids)
    t4 = time.perf_counter()
    model = RunsMetrics(
        runs={
            str(i): MetricSeries(epochs=data[i][0], series=data[i][1]) for i in ids if i in found
        },
        missing=[],
    )
    t5 = time.perf_counter()
    body = adapter.dump_json(adapter.validate_python(model))
    t6 = time.perf_counter()
    return {
        "ids that exist (1 query)": t1 - t0,
        f"  metric rows, sqlite3 alone ({len(rows)} rows)": t2 - t1,
        "  metric rows through SQLAlchemy": t3 - t2,
        "series_of_runs: SQLAlchemy query + grouping in Python": t4 - t3,
        "RunsMetrics built (pydantic)": t5 - t4,
        "response validated + dump_json (as FastAPI does)": t6 - t5,
    }, body


def list_breakdown(
    db_path: Path, queries: dict[str, dict[str, Any]], repeats: int
) -> dict[str, list[str]]:
    """Per kind of list request, in process: list_experiments, then ExperimentOut.of and
    the JSON (medians, formatted)."""
    engine = make_engine(f"sqlite:///{db_path}", immediate=False)
    out = {}
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
            out[kind] = [fmt_ms(median(sql), 1), fmt_ms(median(shape), 1)]
    finally:
        engine.dispose()
    return out


# --- the list requests the runs page makes ------------------------------------------------


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
    """The runs page's list URL for these filters (50 a page)."""
    return "/api/experiments?" + "&".join(
        f"{key}={value}" for key, value in {"limit": 50, "offset": 0, **params}.items()
    )
