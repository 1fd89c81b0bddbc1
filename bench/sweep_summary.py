"""The sweep summary on 1,000 runs: GET /api/sweeps/{id} answers in <= 100 ms.

Fills a served SQLite database with one sweep of 200 points (L2 x dropout, 20 x 10) x 5
seeds = 1,000 finished runs, written with the app's own service functions (no training:
each run is created, claimed, given a few epochs of data losses and finished), then times
GET /api/sweeps/{id} (its runs, and the summary: means over seeds, the best point, the
runner-up, Welch's tests) over 20 requests after one warm-up, and reports p50/p95.

    .venv/bin/python -m bench.sweep_summary [--requests 20]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

import httpx
from sqlmodel import Session

from app.db import make_engine
from app.domain.sweep_plan import expand
from app.models import Status, Sweep
from app.schemas.sweeps import SweepIn
from app.services import experiments, metrics, queue
from app.spec import ExperimentSpec
from bench._common import (
    Server,
    fmt_ms,
    kib,
    loadavg,
    machine,
    percentile,
    print_table,
    seed_spec,
    verdict,
)

L2 = "model.layers[*].regularizer.l2"
DROPOUT = "model.layers[*].dropout"
L2_VALUES = [0.0] + [10 ** (-5 + 4 * i / 18) for i in range(19)]  # 0 and 1e-5 .. 0.1
DROPOUT_VALUES = [i / 20 for i in range(10)]  # 0 .. 0.45
SEEDS = 5
EPOCHS = 5
TARGET_SECONDS = 0.100


def sweep_request() -> SweepIn:
    """The stored request: 200 points; its seeds are filled below (a request may queue at
    most 200 runs, so the 1,000 are written run by run)."""
    base = seed_spec(epochs=EPOCHS, name="bench sweep")
    return SweepIn.model_validate(
        {
            "name": "bench sweep",
            "base": base,
            "axes": [
                {"path": L2, "values": L2_VALUES},
                {"path": DROPOUT, "values": DROPOUT_VALUES},
            ],
            "seeds": 1,
        }
    )


def losses(l2: float, dropout: float, seed: int, epoch: int) -> dict[str, float]:
    """A U over λ (best near 1e-3), dropout shifting it a little, seed noise on top."""
    rng = random.Random(f"{l2}:{dropout}:{seed}:{epoch}")
    strength = abs((l2 + 1e-5) ** 0.25 - 1e-3**0.25) + 0.2 * dropout
    val = 0.35 + strength + 0.5 / (epoch + 1) + rng.gauss(0, 0.02)
    train = 0.2 + 1.2 * strength + 0.5 / (epoch + 1) + rng.gauss(0, 0.01)
    return {"data_loss": train, "val_data_loss": val, "loss": train + l2}


def fill(db_url: str) -> tuple[int, float]:
    """The sweep and its 1,000 finished runs; returns the sweep's id and the seconds taken."""
    started = time.perf_counter()
    request = sweep_request()
    engine = make_engine(db_url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            stored = request.model_dump(mode="json")
            sweep = Sweep(name=request.name, spec={**stored, "seeds": SEEDS})
            session.add(sweep)
            session.commit()
            assert sweep.id is not None
            sweep_id = sweep.id
            for planned in expand(request):
                for seed in range(SEEDS):
                    data = planned.spec.model_dump(mode="json")
                    data["training"]["seed"] = seed
                    data["name"] = f"{data['name']} · seed {seed}"
                    experiments.create(
                        session=session,
                        spec=ExperimentSpec.model_validate(data),
                        max_attempts=1,
                        sweep_id=sweep_id,
                        point=planned.point,
                        commit=False,
                    )
            session.commit()
        for _ in range(len(L2_VALUES) * len(DROPOUT_VALUES) * SEEDS):
            with Session(engine, expire_on_commit=False) as session:
                finish_one(session)
    finally:
        engine.dispose()
    return sweep_id, time.perf_counter() - started


def finish_one(session: Session) -> None:
    """Claim the oldest queued run, store its epochs, finish it as succeeded."""
    row = queue.claim(
        session=session, worker_id="bench", host="bench", devices=["CPU"], lease_seconds=3600
    )
    assert row is not None and row.id is not None and row.lease_token is not None
    point = row.point or {}
    seed = int(row.spec["training"]["seed"])
    points = [
        (epoch, losses(point[L2], point[DROPOUT], seed, epoch), None) for epoch in range(EPOCHS)
    ]
    metrics.ingest(
        session=session, experiment_id=row.id, lease_token=row.lease_token, points=points
    )
    queue.finish(
        session=session,
        experiment_id=row.id,
        lease_token=row.lease_token,
        status=Status.succeeded,
        best_epoch=EPOCHS - 1,
    )


def time_requests(url: str, sweep_id: int, count: int) -> tuple[list[float], dict[str, Any], int]:
    """`count` timed GETs after one warm-up: their seconds, the last body and its size."""
    seconds = []
    with httpx.Client(base_url=url, timeout=30.0) as client:
        client.get(f"/api/sweeps/{sweep_id}").raise_for_status()
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(f"/api/sweeps/{sweep_id}")
            seconds.append(time.perf_counter() - started)
            response.raise_for_status()
    return seconds, response.json(), len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    print(machine())
    print(loadavg())
    with Server() as server:
        assert server.folder is not None
        sweep_id, fill_seconds = fill(f"sqlite:///{server.folder / 'bench.db'}")
        print(
            f"filled 1 sweep, {len(L2_VALUES) * len(DROPOUT_VALUES) * SEEDS} finished runs "
            f"in {fill_seconds:.1f} s"
        )
        seconds, body, size = time_requests(server.url, sweep_id, args.requests)
    summary = body["summary"]
    p50, p95 = percentile(seconds, 50), percentile(seconds, 95)
    print_table(
        f"GET /api/sweeps/{{id}} with its summary, {len(body['runs'])} runs, "
        f"{len(summary['points'])} points ({args.requests} requests, SQLite)",
        ["p50", "p95", "max", "body", "target p95", ""],
        [
            [
                fmt_ms(p50),
                fmt_ms(p95),
                fmt_ms(max(seconds)),
                kib(size),
                "100 ms",
                verdict(p95 <= TARGET_SECONDS),
            ]
        ],
    )
    print(
        f"best {summary['best']['label']} (n={summary['best']['n']}), "
        f"judgement {summary['judgement']}: {summary['text']}"
    )
    print(json.dumps({"p50_ms": p50 * 1000, "p95_ms": p95 * 1000, "bytes": size}))


if __name__ == "__main__":
    main()
