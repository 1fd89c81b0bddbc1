"""Run queries on 10,000 runs x 20 metrics: a filter over one setting and one metric, with
an order, answers p95 <= 50 ms on SQLite.

Fills a served database with 10,000 finished runs (a realistic spec each: the seed's MLP
with its L2 strength, dropout rates, seed and dataset varied; 20 metric series over a few
epochs), written with the app's own service functions in bulk (no training: each batch
of runs is created, given its epochs through the ingest path that keeps the metric
summaries, and finished). Then times, over HTTP after one warm-up each:

- the target: `params.model.layers[*].regularizer.l2 >= 1e-3 and
  metrics.val_data_loss.best < 0.6`, ordered by `metrics.val_data_loss.best`, first page
  of 50 runs;
- for comparison: the same with metric summaries in the page (`metrics=`), the issue's
  examples, the plain newest-first page, an order by a setting.

    .venv/bin/python -m bench.query_speed [--runs 10000] [--requests 30]
        [--database-url postgresql://...]   (an empty database; default: SQLite)
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

import httpx
from sqlalchemy import text
from sqlmodel import Session

from app.db import make_engine
from app.models import Status, Sweep
from app.services import experiments, ingest
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

TARGET_SECONDS = 0.050
EPOCHS = 5
BATCH = 250
METRICS = [
    "loss",
    "val_loss",
    "data_loss",
    "val_data_loss",
    "reg_loss",
    "accuracy",
    "val_accuracy",
    "gap",
    *(
        f"layer_{index}/{what}"
        for index in range(3)
        for what in ("l2_norm", "sparsity", "mean", "std")
    ),
]
TARGET = {
    "filter": "params.model.layers[*].regularizer.l2 >= 1e-3 and metrics.val_data_loss.best < 0.6",
    "order_by": "metrics.val_data_loss.best asc",
}
OTHERS = {
    "the target, with the summaries of val_data_loss": {**TARGET, "metrics": "val_data_loss"},
    "the target, with every metric's summaries": {**TARGET, "metrics": "*"},
    "newest first, no filter": {},
    "status and dataset": {"filter": "status = 'succeeded' and dataset = 'digits'"},
    "two settings": {
        "filter": "params.model.layers.0.regularizer.l2 > 1e-3 "
        "and params.model.layers[*].dropout = 0"
    },
    "two metrics, OR": {
        "filter": "metrics.val_data_loss.best < 0.4 or metrics.val_accuracy.last >= 0.9"
    },
    "tags, LIKE, NOT": {
        "filter": "tags.team = 'vision' and name like '%sweep%' and not verdict = 'overfitting'"
    },
    "sweep and seeds": {"filter": "sweep = 1 and params.training.seed in (0, 1, 2)"},
    "ordered by a setting": {"order_by": "params.training.learning_rate desc, created desc"},
}


def spec_of(index: int, rng: random.Random) -> dict[str, Any]:
    """The seed's MLP with this run's L2, dropout, seed and dataset."""
    spec = seed_spec(epochs=EPOCHS, name=f"bench {'sweep' if index % 3 else 'run'} {index}")
    l2 = rng.choice([0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1])
    dropout = rng.choice([0.0, 0.1, 0.3, 0.5])
    for layer in spec["model"]["layers"]:
        if l2:
            layer["regularizer"] = {"kind": "l2", "l2": l2}
        else:
            layer.pop("regularizer", None)
        layer["dropout"] = dropout
    spec["training"]["seed"] = index % 10
    spec["training"]["learning_rate"] = rng.choice([1e-3, 3e-3, 1e-2])
    spec["dataset"]["name"] = rng.choice(["digits", "digits", "wine", "breast_cancer"])
    return spec


def curves(rng: random.Random) -> list[tuple[int, dict[str, float], float | None]]:
    """20 series over EPOCHS epochs: falling losses with noise, rising accuracies."""
    floor = rng.uniform(0.2, 1.0)
    points: list[tuple[int, dict[str, float], float | None]] = []
    for epoch in range(EPOCHS):
        values = {name: rng.random() for name in METRICS}
        values["val_data_loss"] = floor + 0.5 / (epoch + 1) + rng.gauss(0, 0.02)
        values["val_accuracy"] = min(1.0, 1.2 - floor + rng.gauss(0, 0.02))
        points.append((epoch, values, None))
    return points


def fill(db_url: str, runs: int) -> float:
    """`runs` finished runs in batches (one sweep holds a third); returns the seconds."""
    started = time.perf_counter()
    rng = random.Random(20261207)
    engine = make_engine(db_url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            sweep = Sweep(name="bench sweep", spec={})
            session.add(sweep)
            session.commit()
            for first in range(0, runs, BATCH):
                rows = [
                    experiments.create(
                        session=session,
                        spec=ExperimentSpec.model_validate(spec_of(index, rng)),
                        max_attempts=1,
                        sweep_id=sweep.id if index % 3 == 1 else None,
                        commit=False,
                    )
                    for index in range(first, min(first + BATCH, runs))
                ]
                ingest.store(session=session, uploads=[(row, curves(rng)) for row in rows])
                for row in rows:
                    status = Status.succeeded if rng.random() < 0.8 else Status.failed
                    experiments.change_status(
                        row,
                        status,
                        session=session,
                        verdict=rng.choice(["healthy", "overfitting", "underfitting", None]),
                        tags={"team": rng.choice(["vision", "audio", "tabular"])},
                    )
                session.commit()
        if engine.dialect.name == "postgresql":
            # Statistics, as autovacuum gathers them soon after a bulk load on a live server.
            with engine.connect() as connection:
                connection.execute(text("ANALYZE"))
                connection.commit()
    finally:
        engine.dispose()
    return time.perf_counter() - started


def time_query(
    client: httpx.Client, params: dict[str, str], count: int
) -> tuple[list[float], dict[str, Any], int]:
    """`count` timed GETs after one warm-up: their seconds, the last body and its size."""
    client.get("/api/experiments", params=params).raise_for_status()
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get("/api/experiments", params=params)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return seconds, response.json(), len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--database-url", default=None, help="an empty PostgreSQL database")
    args = parser.parse_args()
    print(machine())
    print(loadavg())
    database = "PostgreSQL" if args.database_url else "SQLite"
    with Server(database_url=args.database_url) as server:
        assert server.folder is not None
        url = args.database_url or f"sqlite:///{server.folder / 'bench.db'}"
        fill_seconds = fill(url, args.runs)
        print(
            f"filled {args.runs} runs x {len(METRICS)} metrics x {EPOCHS} epochs "
            f"in {fill_seconds:.1f} s ({database})"
        )
        with httpx.Client(base_url=server.url, timeout=60.0) as client:
            seconds, body, size = time_query(client, TARGET, args.requests)
            others = {
                label: time_query(client, params, args.requests) for label, params in OTHERS.items()
            }
    p50, p95 = percentile(seconds, 50), percentile(seconds, 95)
    print_table(
        f"GET /api/experiments?filter=…&order_by=… ({args.requests} requests, {database})\n"
        f"filter: {TARGET['filter']}\norder_by: {TARGET['order_by']}",
        ["matches", "page", "p50", "p95", "max", "body", "target p95", ""],
        [
            [
                body["total"],
                len(body["items"]),
                fmt_ms(p50),
                fmt_ms(p95),
                fmt_ms(max(seconds)),
                kib(size),
                "50 ms",
                verdict(p95 <= TARGET_SECONDS),
            ]
        ],
    )
    print_table(
        "For comparison (first page of 50)",
        ["query", "matches", "p50", "p95"],
        [
            [
                label,
                other_body["total"],
                fmt_ms(percentile(times, 50)),
                fmt_ms(percentile(times, 95)),
            ]
            for label, (times, other_body, _) in others.items()
        ],
    )
    print(
        json.dumps(
            {
                "database": database,
                "runs": args.runs,
                "p50_ms": p50 * 1000,
                "p95_ms": p95 * 1000,
                "matches": body["total"],
                "others_p95_ms": {
                    label: percentile(times, 95) * 1000 for label, (times, _, _) in others.items()
                },
            }
        )
    )


if __name__ == "__main__":
    main()
