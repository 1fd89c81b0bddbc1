"""The queue under racing claimers and a burst of submissions, over HTTP against a real
`reglab serve` process, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.db import make_engine
from tests.factories import make_spec
from tests.load.conftest import ServeFactory, limits, run_async

pytestmark = pytest.mark.e2e

ROUNDS = 15
CLAIMERS = 20
DRAIN_RUNS = 120
DRAIN_WORKERS = 4
SUBMISSIONS = 200
IN_FLIGHT = 50


def claim_body(worker_id: str) -> dict[str, Any]:
    return {"worker_id": worker_id, "host": "load", "slot": "CPU", "devices": ["CPU"], "wait": 0}


async def submit_many(http: httpx.AsyncClient, names: list[str], in_flight: int) -> list[Any]:
    """POST one experiment per name, `in_flight` at a time; the answers in name order."""
    gate = asyncio.Semaphore(in_flight)

    async def submit(name: str) -> httpx.Response:
        async with gate:
            return await http.post("/api/experiments", json=make_spec(name=name))

    return list(await asyncio.gather(*(submit(name) for name in names)))


def test_twenty_claimers_racing_for_one_run_one_wins_the_rest_get_204(
    any_db: str, serve: ServeFactory
) -> None:
    server = serve(any_db)

    async def race() -> list[tuple[int, list[int]]]:
        rounds: list[tuple[int, list[int]]] = []
        async with httpx.AsyncClient(
            base_url=server.url, timeout=30, limits=limits(CLAIMERS + 2)
        ) as http:
            for index in range(ROUNDS):
                submitted = await http.post(
                    "/api/experiments", json=make_spec(name=f"race-{index}")
                )
                assert submitted.status_code == 201, submitted.text
                answers = await asyncio.gather(
                    *(
                        http.post("/api/worker/claim", json=claim_body(f"w{n}"))
                        for n in range(CLAIMERS)
                    )
                )
                codes = sorted(answer.status_code for answer in answers)
                assert codes == [200] + [204] * (CLAIMERS - 1), f"round {index}: {Counter(codes)}"
                won = [
                    answer.json()["experiment_id"]
                    for answer in answers
                    if answer.status_code == 200
                ]
                rounds.append((submitted.json()["id"], won))
        return rounds

    rounds = run_async(race())
    assert all(won == [run_id] for run_id, won in rounds)
    engine = make_engine(any_db)
    with engine.connect() as connection:
        attempts = connection.execute(
            text("SELECT status, attempt, count(*) FROM experiment GROUP BY status, attempt")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in attempts] == [("running", 1, ROUNDS)]
    assert server.server_errors() == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_slots_of_a_new_worker_claiming_at_once_get_no_500(
    database: str, request: pytest.FixtureRequest, serve: ServeFactory
) -> None:
    """A worker with 4 GPU slots claims from each slot with one worker id as it starts."""
    server = serve(request.getfixturevalue({"sqlite": "sqlite_db"}.get(database, "postgres_db")))

    async def start_workers() -> list[Counter[int]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits(8)) as http:
            rounds = []
            for index in range(10):
                submitted = await http.post("/api/experiments", json=make_spec())
                assert submitted.status_code == 201
                answers = await asyncio.gather(
                    *(
                        http.post("/api/worker/claim", json=claim_body(f"new-{index}"))
                        for _ in range(4)
                    )
                )
                rounds.append(Counter(answer.status_code for answer in answers))
            return rounds

    assert run_async(start_workers()) == [Counter({200: 1, 204: 3})] * 10


def test_four_workers_drain_a_hundred_and_twenty_runs_each_claimed_once(
    any_db: str, serve: ServeFactory
) -> None:
    server = serve(any_db)

    async def drain() -> tuple[list[int], dict[str, list[int]]]:
        async with httpx.AsyncClient(
            base_url=server.url, timeout=30, limits=limits(IN_FLIGHT)
        ) as http:
            answers = await submit_many(http, [f"drain-{n}" for n in range(DRAIN_RUNS)], 32)
            assert {answer.status_code for answer in answers} == {201}
            queued = [answer.json()["id"] for answer in answers]
            claimed: dict[str, list[int]] = {}

            async def work(worker_id: str) -> None:
                mine = claimed.setdefault(worker_id, [])
                while True:
                    answer = await http.post("/api/worker/claim", json=claim_body(worker_id))
                    if answer.status_code == 204:
                        return
                    assert answer.status_code == 200, answer.text
                    claim = answer.json()
                    mine.append(claim["experiment_id"])
                    finished = await http.post(
                        f"/api/worker/experiments/{claim['experiment_id']}/finish",
                        json={"lease_token": claim["lease_token"], "status": "succeeded"},
                    )
                    assert finished.status_code == 204, finished.text

            await asyncio.gather(*(work(f"worker-{n}") for n in range(DRAIN_WORKERS)))
            return queued, claimed

    queued, claimed = run_async(drain())
    everything = [run_id for runs in claimed.values() for run_id in runs]
    assert sorted(everything) == sorted(queued)  # each run claimed once, none left over
    assert all(claimed.values()), (
        f"a worker got nothing: { {w: len(r) for w, r in claimed.items()} }"
    )
    engine = make_engine(any_db)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT status, attempt, count(*) FROM experiment GROUP BY status, attempt")
        ).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [("succeeded", 1, DRAIN_RUNS)]
    assert server.server_errors() == []


def test_two_hundred_submissions_fifty_at_a_time_are_stored_once_each(
    any_db: str, serve: ServeFactory
) -> None:
    server = serve(any_db)
    names = [f"burst-{n:04d}" for n in range(SUBMISSIONS)]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=server.url, timeout=60, limits=limits(IN_FLIGHT)
        ) as http:
            return await submit_many(http, names, IN_FLIGHT)

    answers = run_async(burst())
    assert Counter(answer.status_code for answer in answers) == {201: SUBMISSIONS}
    ids = [answer.json()["id"] for answer in answers]
    assert len(set(ids)) == SUBMISSIONS
    assert [answer.json()["name"] for answer in answers] == names
    engine = make_engine(any_db)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT id, name FROM experiment")).all()
    engine.dispose()
    assert sorted(name for _, name in stored) == names  # every name, none twice
    assert sorted(run_id for run_id, _ in stored) == sorted(ids)
    assert server.server_errors() == []
