"""`kill -9` of the server in the middle of a write load, then a restart on the same
SQLite file: every write the server answered 2xx is there, and the file is intact."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.factories import make_spec
from tests.load.conftest import ServeFactory, ServerProcess, limits, run_async

pytestmark = pytest.mark.e2e

SUBMITTERS, UPLOADERS, CRASHES = 12, 4, 2
ANSWERS_BEFORE_KILL = 150  # per crash: 2xx answers seen before the kill


@dataclass
class Answered:
    """What the server confirmed with a 2xx, as the clients saw it."""

    experiments: dict[int, str] = field(default_factory=dict)  # id -> name
    epochs: dict[int, set[int]] = field(default_factory=dict)  # run -> epochs
    count: int = 0


async def write_until_the_server_dies(
    server: ServerProcess, runs: dict[int, str], answered: Answered, crash: int
) -> None:
    """Submitters and uploaders write as fast as they can; a watcher kills the server
    with SIGKILL once enough answers came back; each writer stops at its first error."""
    target = answered.count + ANSWERS_BEFORE_KILL
    killed = asyncio.Event()

    async def submit(http: httpx.AsyncClient, submitter: int) -> None:
        for index in range(10**6):
            name = f"crash{crash}-s{submitter}-{index}"
            try:
                response = await http.post("/api/experiments", json=make_spec(name=name))
            except httpx.TransportError:
                return
            assert response.status_code == 201, response.text
            answered.experiments[response.json()["id"]] = name
            answered.count += 1

    async def upload(http: httpx.AsyncClient, run_id: int) -> None:
        epochs = answered.epochs.setdefault(run_id, set())
        epoch = max(epochs, default=-1) + 1
        while True:
            point = {"epoch": epoch, "values": {"loss": 1 / (epoch + 1), "accuracy": epoch / 1e4}}
            try:
                response = await http.post(
                    f"/api/worker/experiments/{run_id}/metrics",
                    json={"lease_token": runs[run_id], "points": [point]},
                )
            except httpx.TransportError:
                return
            assert response.status_code == 200, response.text
            epochs.add(epoch)
            answered.count += 1
            epoch += 1

    async def kill_when_enough() -> None:
        while answered.count < target:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(server.kill)
        killed.set()

    async with httpx.AsyncClient(
        base_url=server.url, timeout=30, limits=limits(SUBMITTERS + UPLOADERS)
    ) as http:
        writers = [submit(http, n) for n in range(SUBMITTERS)]
        writers += [upload(http, run_id) for run_id in runs]
        await asyncio.gather(kill_when_enough(), *writers)
    assert killed.is_set()


def stored(path: str) -> tuple[str, dict[int, str], dict[int, dict[int, dict[str, float]]]]:
    """integrity_check, experiments (id -> name) and metrics (run -> epoch -> values),
    read straight from the file."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        (integrity,) = connection.execute("PRAGMA integrity_check").fetchone()
        experiments = dict(connection.execute("SELECT id, name FROM experiment").fetchall())
        metrics: dict[int, dict[int, dict[str, float]]] = {}
        for run_id, epoch, name, value in connection.execute(
            "SELECT experiment_id, epoch, name, value FROM metric"
        ):
            metrics.setdefault(run_id, {}).setdefault(epoch, {})[name] = value
    return integrity, experiments, metrics


def test_kill_9_during_writes_loses_no_answered_write_and_leaves_the_file_intact(
    sqlite_db: str, serve: ServeFactory
) -> None:
    server = serve(sqlite_db)
    path = make_url(sqlite_db).database
    assert path is not None
    runs: dict[int, str] = {}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for index in range(UPLOADERS):
            run_id = http.post("/api/experiments", json=make_spec(name=f"run-{index}")).json()["id"]
            claim = http.post(
                "/api/worker/claim",
                json={"worker_id": f"w{index}", "host": "h", "slot": "CPU", "wait": 0},
            ).json()
            assert claim["experiment_id"] == run_id
            runs[run_id] = claim["lease_token"]

    answered = Answered()
    for crash in range(CRASHES):
        run_async(write_until_the_server_dies(server, runs, answered, crash))
        assert server.process is not None and server.process.returncode == -9

        integrity, experiments, metrics = stored(path)
        assert integrity == "ok"
        missing = {i: n for i, n in answered.experiments.items() if experiments.get(i) != n}
        assert missing == {}, f"answered 201 but not stored after kill -9 #{crash}"
        for run_id, epochs in answered.epochs.items():
            for epoch in epochs:
                values = metrics.get(run_id, {}).get(epoch)
                assert values == {"loss": 1 / (epoch + 1), "accuracy": epoch / 1e4}, (
                    f"run {run_id} epoch {epoch} answered 200 but stored as {values}"
                )
        server.start()  # the same file, the same port
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/api/experiments", params={"limit": 1}).json()["total"] >= len(
                answered.experiments
            )
            for run_id, epochs in answered.epochs.items():
                series = http.get(f"/api/experiments/{run_id}/metrics").json()
                assert set(epochs) <= set(series["epochs"])

    assert len(answered.experiments) > 100 and all(answered.epochs.values())
    assert "Traceback" not in server.log_tail(400)
