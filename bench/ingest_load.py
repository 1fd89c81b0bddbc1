"""How many metric points per second the server stores while people watch, on SQLite and
on PostgreSQL.

One `python -m reglab.cli serve` per database (a temp SQLite file; a fresh database on the
local PostgreSQL, dropped at the end). This process then, in one asyncio loop:

  runs     submits R runs (default 8) and claims each like a worker (lease token);
  viewers  opens V SSE streams (default 20), viewer i on run i mod R, and waits until
           each is live (its queued and running statuses replayed);
  lists    keeps L clients (default 2) asking for the runs list and one run, back to
           back, for the whole load;
  uploads  starts R worker-like clients at once, each with its own connection, uploading
           its run epoch by epoch (E epochs, default 100, of M metrics, default 20), each
           upload sent as soon as the previous one is answered, then finishing the run.

A point is one metric value (a Metric row), so the load stores R x E x M points
(16,000 by default). Points/s held = points / (first upload sent -> last one answered);
the slowest 1 s window shows whether the rate held. Upload latency is each upload's
round trip. SSE delay is the time from an upload being sent (`data.time`, stamped just
before the POST) to the event's arrival at a viewer, over every (viewer, epoch) pair.
Errors are any non-2xx answer, a viewer missing or reordering an epoch, or a stored
count that differs from R x E x M.

    .venv/bin/python bench/ingest_load.py                  # both databases
    .venv/bin/python bench/ingest_load.py --db sqlite --epochs 200

`tests/load/test_ingest_load.py` runs `ingest_load()` with the default sizes and asserts
the correctness half (no errors, every point stored, every viewer every epoch in order).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.spec import FINAL_STATUSES
from bench._common import (
    ScriptedWorker,
    Server,
    fmt_ms,
    loadavg,
    machine,
    median,
    percentile,
    print_table,
    process_cpu,
    sse_events,
)

PG_ADMIN_URL = os.environ.get("REGLAB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def load_spec(name: str, epochs: int) -> dict[str, Any]:
    return {
        "name": name,
        "dataset": {"name": "moons", "n_samples": 200},
        "model": {"layers": [{"type": "dense", "units": 8}]},
        "training": {"epochs": epochs, "batch_size": 32, "seed": 0},
    }


@dataclass
class IngestReport:
    runs: list[int]
    epochs: int
    metrics: int
    members: int = 1  # runs per uploader: a pack's members share each upload
    seconds: float = 0.0  # first upload sent -> last upload answered
    upload_latencies: list[float] = field(default_factory=list)
    upload_answered: list[float] = field(default_factory=list)  # monotonic times
    sse_delays: list[float] = field(default_factory=list)
    list_latencies: list[float] = field(default_factory=list)
    viewer_epochs: list[tuple[int, list[int]]] = field(default_factory=list)  # (run, epochs)
    errors: list[str] = field(default_factory=list)

    @property
    def points(self) -> int:
        return len(self.runs) * self.epochs * self.metrics

    @property
    def points_per_second(self) -> float:
        return self.points / self.seconds if self.seconds else 0.0

    def slowest_window(self, width: float = 1.0) -> float:
        """Points/s in the slowest full `width`-second window of the upload phase."""
        if not self.upload_answered:
            return 0.0
        start = min(self.upload_answered)
        per_upload = self.metrics * self.members
        counts: dict[int, int] = {}
        for answered in self.upload_answered:
            index = int((answered - start) / width)
            counts[index] = counts.get(index, 0) + per_upload
        full = range(int((max(self.upload_answered) - start) / width))  # drop the last, partial
        return min((counts.get(i, 0) / width for i in full), default=self.points_per_second)


async def _view(
    http: httpx.AsyncClient, run_id: int, live: asyncio.Event, report: IngestReport
) -> None:
    epochs: list[int] = []
    report.viewer_epochs.append((run_id, epochs))
    statuses = 0
    try:
        async with http.stream("GET", f"/api/experiments/{run_id}/events") as response:
            if response.status_code != 200:
                report.errors.append(f"viewer of run {run_id}: HTTP {response.status_code}")
                live.set()
                return
            async for event, arrived in sse_events(response):
                if event.kind == "metrics":
                    epochs.append(int(event.data["epoch"]))
                    report.sse_delays.append(arrived - float(event.data["time"]))
                elif event.kind == "status":
                    statuses += 1
                    if statuses == 2:
                        live.set()
                    if event.data["status"] in FINAL_STATUSES:
                        return
    except httpx.HTTPError as error:
        report.errors.append(f"viewer of run {run_id}: {error!r}")
        live.set()


async def _list(
    http: httpx.AsyncClient, run_id: int, stop: asyncio.Event, report: IngestReport
) -> None:
    while not stop.is_set():
        for path in ("/api/experiments?limit=50", f"/api/experiments/{run_id}"):
            began = time.perf_counter()
            try:
                response = await http.get(path)
            except httpx.HTTPError as error:
                report.errors.append(f"GET {path}: {error!r}")
                continue
            report.list_latencies.append(time.perf_counter() - began)
            if response.status_code != 200:
                report.errors.append(f"GET {path}: HTTP {response.status_code}")


async def _upload(url: str, run_ids: list[int], token: str, report: IngestReport) -> None:
    """One worker-like client: its own connection, epoch after epoch, then finish. With
    one run it uploads like a single run's child (POST .../experiments/{id}/metrics); with
    a pack's members it uploads every member's epoch in one request, as a pack's child
    does (POST /api/worker/metrics).

    Raw httpx on purpose, not `WorkerClient`: the load is R uploaders at once in the one
    event loop that also holds the viewers and the list clients, and `WorkerClient` is
    synchronous (R threads would share the GIL with that loop and skew what it times).
    The requests are the worker's own, with the lease token.
    """
    names = [f"metric_{index:02d}" for index in range(report.metrics)]
    single = f"/api/worker/experiments/{run_ids[0]}/metrics"
    async with httpx.AsyncClient(base_url=url, timeout=60) as worker:
        for epoch in range(report.epochs):
            values = {name: epoch + index / 100 for index, name in enumerate(names)}
            sent = time.time()
            began = time.perf_counter()
            point = {"epoch": epoch, "values": values, "time": sent}
            if len(run_ids) == 1:
                path, body = single, {"lease_token": token, "points": [point]}
            else:
                members = [{**point, "experiment_id": run} for run in run_ids]
                path, body = "/api/worker/metrics", {"lease_token": token, "points": members}
            try:
                response = await worker.post(path, json=body)
            except httpx.HTTPError as error:
                report.errors.append(f"upload runs {run_ids} epoch {epoch}: {error!r}")
                continue
            report.upload_latencies.append(time.perf_counter() - began)
            report.upload_answered.append(time.monotonic())
            if response.status_code != 200:
                report.errors.append(f"upload runs {run_ids} epoch {epoch}: {response.status_code}")
        for run in run_ids:
            response = await worker.post(
                f"/api/worker/experiments/{run}/finish",
                json={"lease_token": token, "status": "succeeded"},
            )
            if response.status_code != 204:
                report.errors.append(f"finish run {run}: HTTP {response.status_code}")


async def ingest_load(
    url: str,
    *,
    runs: int = 8,
    epochs: int = 100,
    metrics: int = 20,
    viewers: int = 20,
    list_clients: int = 2,
    members: int = 1,
    timeout: float = 120.0,
) -> IngestReport:
    """Drive the load against a server with an empty queue; see the module docstring.
    With `members` > 1 each of the `runs` uploaders is a pack of that many runs."""
    connections = viewers + list_clients + runs + 4
    async with httpx.AsyncClient(
        base_url=url,
        timeout=httpx.Timeout(30.0, read=timeout),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    ) as http:
        jobs = await asyncio.to_thread(claim_jobs, url, runs, members, epochs)
        report = IngestReport(
            runs=sorted(run for ids, _ in jobs for run in ids),
            epochs=epochs,
            metrics=metrics,
            members=members,
        )

        live = [asyncio.Event() for _ in range(viewers)]
        watching = [
            asyncio.create_task(
                _view(http, report.runs[index % len(report.runs)], live[index], report)
            )
            for index in range(viewers)
        ]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in live)), timeout)

        stop = asyncio.Event()
        listing = [
            asyncio.create_task(_list(http, report.runs[index % runs], stop, report))
            for index in range(list_clients)
        ]
        began = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(*(_upload(url, ids, token, report) for ids, token in jobs)),
            timeout,
        )
        report.seconds = max(report.upload_answered) - began if report.upload_answered else 0.0
        try:
            await asyncio.wait_for(asyncio.gather(*watching), timeout)
        except TimeoutError:
            report.errors.append("viewers did not all see the runs end")
        stop.set()
        await asyncio.gather(*listing)

    for run_id, seen in report.viewer_epochs:
        if seen != list(range(epochs)):
            report.errors.append(f"a viewer of run {run_id} saw {len(seen)} epochs out of order")
    return report


def claim_jobs(url: str, runs: int, members: int, epochs: int) -> list[tuple[list[int], str]]:
    """Queue and claim `runs` jobs as a worker would: single runs, or (members > 1) packs
    of that many sweep points; (experiment ids, lease token) each."""
    specs = [load_spec(f"ingest-{index}", epochs) for index in range(runs)]
    with ScriptedWorker(url, worker_id="bench-ingest") as worker:
        if members == 1:
            return [([run], token) for run, token in (worker.claim(spec) for spec in specs)]
        return [worker.claim_pack(spec, members) for spec in specs]


# --- the benchmark ------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str) -> Iterator[str | None]:
    """A fresh database of that kind: a PostgreSQL URL, or None for Server's temp SQLite."""
    if kind == "sqlite":
        yield None
        return
    import psycopg

    name = f"reglab_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def stored_points(database_url: str, run_ids: list[int]) -> int:
    from sqlalchemy import func, select
    from sqlmodel import col

    from app.db import make_engine
    from app.models import Metric

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            query = select(func.count()).where(col(Metric.experiment_id).in_(run_ids))
            return int(connection.execute(query).scalar_one())
    finally:
        engine.dispose()


def measure(kind: str, args: argparse.Namespace) -> list[str]:
    with (
        database(kind) as url,
        Server(database_url=url, env={"REGLAB_LEASE_SECONDS": "600"}) as server,
    ):
        assert server.process is not None and server.folder is not None
        database_url = url or f"sqlite:///{server.folder / 'bench.db'}"
        cpu = process_cpu(server.process.pid)
        report = asyncio.run(
            ingest_load(
                server.url,
                runs=args.runs,
                epochs=args.epochs,
                metrics=args.metrics,
                viewers=args.viewers,
                list_clients=args.lists,
                members=args.members,
            )
        )
        cpu = process_cpu(server.process.pid) - cpu
        stored = stored_points(database_url, report.runs)
        errors = server.error_summary()
    if stored != report.points:
        report.errors.append(f"stored {stored} points, expected {report.points}")
    for error in report.errors[:10]:
        print(f"  {kind}: {error}")
    if errors:
        print(f"  {kind} server log errors:\n{errors}")
    uploads = len(report.upload_latencies)
    return [
        kind,
        f"{stored}/{report.points}",
        f"{report.seconds:.2f} s",
        f"{report.points_per_second:,.0f}",
        f"{report.slowest_window():,.0f}",
        f"{uploads / report.seconds:.0f}" if report.seconds else "n/a",
        f"{fmt_ms(median(report.upload_latencies), 1)} / "
        f"{fmt_ms(percentile(report.upload_latencies, 99), 1)}",
        f"{fmt_ms(median(report.sse_delays), 1)} / {fmt_ms(percentile(report.sse_delays, 99), 1)}"
        f" / {fmt_ms(max(report.sse_delays, default=float('nan')), 1)}",
        f"{fmt_ms(median(report.list_latencies), 1)} / "
        f"{fmt_ms(percentile(report.list_latencies, 99), 1)} ({len(report.list_latencies)})",
        f"{cpu / report.points * 1e6:.0f} µs" if report.points else "n/a",
        f"{cpu / (report.points / report.metrics) * 1e3:.2f} ms" if report.points else "n/a",
        str(len(report.errors)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--runs", type=int, default=8, help="runs uploading at once (default 8)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs per run (default 100)")
    parser.add_argument("--metrics", type=int, default=20, help="metrics per epoch (default 20)")
    parser.add_argument("--viewers", type=int, default=20, help="SSE viewers (default 20)")
    parser.add_argument("--lists", type=int, default=2, help="list-query clients (default 2)")
    parser.add_argument(
        "--members",
        type=int,
        default=8,
        help="runs per uploader, a packed sweep's members sharing each upload (default 8; "
        "1: single runs, one upload per run and epoch)",
    )
    args = parser.parse_args()

    print(f"machine: {machine()}; {loadavg()}")
    print(
        f"load: {args.runs} uploaders x {args.members} runs x {args.epochs} epochs x "
        f"{args.metrics} metrics, one epoch (of every member) per upload; {args.viewers} SSE "
        f"viewers; {args.lists} list clients"
    )
    rows = [measure(kind.strip(), args) for kind in args.db.split(",") if kind.strip()]
    print_table(
        "Ingest under load (a point = one metric value)",
        [
            "database",
            "stored",
            "upload phase",
            "points/s held",
            "slowest 1 s",
            "uploads/s",
            "upload p50 / p99",
            "SSE delay p50 / p99 / max",
            "list p50 / p99 (n)",
            "server CPU/point",
            "server CPU/run-epoch",
            "errors",
        ],
        rows,
    )
    print(f"at the end: {loadavg()}")
    if any(row[-1] != "0" for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
