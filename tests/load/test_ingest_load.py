"""8 runs streaming 30 epochs x 20 metrics at once, with 20 viewers and list queries:
nothing fails, every point is stored once, every viewer gets every epoch in order.

The load is `bench/ingest_load.py`'s; that script also measures its rate (points/s held),
which this test leaves alone.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from app.db import make_engine
from app.models import Metric
from bench.ingest_load import ingest_load
from tests.load.conftest import ServeFactory, run_async

pytestmark = pytest.mark.e2e

RUNS, EPOCHS, METRICS, VIEWERS = 8, 30, 20, 20


def test_eight_runs_streaming_at_once_store_every_point_and_reach_every_viewer(
    any_db: str, serve: ServeFactory
) -> None:
    server = serve(any_db)
    report = run_async(
        ingest_load(server.url, runs=RUNS, epochs=EPOCHS, metrics=METRICS, viewers=VIEWERS)
    )
    assert report.errors == []
    assert len(report.upload_latencies) == RUNS * EPOCHS
    assert len(report.viewer_epochs) == VIEWERS
    assert all(epochs == list(range(EPOCHS)) for _, epochs in report.viewer_epochs)
    assert report.list_latencies, "no list query ran during the load"

    engine = make_engine(any_db)
    with engine.connect() as connection:
        stored = connection.execute(select(func.count()).select_from(Metric)).scalar_one()
        per_run = connection.execute(
            select(col(Metric.experiment_id), func.count()).group_by(col(Metric.experiment_id))
        ).all()
    engine.dispose()
    assert stored == RUNS * EPOCHS * METRICS
    assert sorted(run for run, _ in per_run) == report.runs
    assert {count for _, count in per_run} == {EPOCHS * METRICS}
    assert server.server_errors() == []
