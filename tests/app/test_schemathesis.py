"""Schemathesis over the whole OpenAPI document, in process (ASGI, no network).

Every operation gets generated requests, valid and invalid, against the app on a fresh
SQLite database that holds a run of each kind (finished with metrics and a model, running,
cancelled, queued), so that reads, downloads, streams and claims find something. Each
answer must be no 5xx, a documented status code, the documented content type, and match
its documented schema. The seed is pinned: a failure reproduces run after run.

Nothing is excluded. The event stream of a live run never ends by itself: the transport
reads it for a second and checks what came (a finished run's stream ends on its own).
The long-poll claim waits at most REGLAB_CLAIM_WAIT_SECONDS, here 0.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.python import asgi

from app.db import session_scope
from app.main import create_app
from app.models import Status
from app.services import experiments, metrics, queue
from app.settings import get_settings
from app.spec import ExperimentSpec
from app.storage import model_relpath, resolve_artifact
from tests.factories import make_spec

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20260601,
        "generation": {"max-examples": 200, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
    }
)
# The document only; each test drives an app of its own, made once its database exists.
schema = schemathesis.openapi.from_dict(create_app().openapi(), config=CONFIG)


def seed_runs() -> None:
    """Run 1 succeeded (metrics, model), 2 running, 3 cancelled, 4 queued."""
    with session_scope() as session:
        for index in range(4):
            spec = ExperimentSpec.model_validate(make_spec(name=f"run {index + 1}"))
            experiments.create(session, spec=spec, max_attempts=1)
        done = queue.claim(session, worker_id="w", host="h", devices=["CPU"], lease_seconds=600)
        assert done is not None and done.id == 1 and done.lease_token is not None
        points = [(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 0.5}, None) for epoch in range(3)]
        metrics.ingest(session, 1, done.lease_token, points)
        path = resolve_artifact(get_settings(), model_relpath(1))
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"a .keras file")
        queue.set_model_path(session, 1, done.lease_token, model_relpath(1))
        queue.finish(session, 1, done.lease_token, status=Status.succeeded)
        running = queue.claim(session, worker_id="w", host="h", devices=["CPU"], lease_seconds=600)
        assert running is not None and running.id == 2
        cancelled = experiments.get(session, 3)
        assert cancelled is not None and experiments.cancel(session, cancelled)


@pytest.fixture
def api_app(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    monkeypatch.setenv("REGLAB_CLAIM_WAIT_SECONDS", "0")
    get_settings.cache_clear()
    seed_runs()
    yield create_app()
    asgi.shutdown_lifespans()  # the transport started the app's lifespan; end it here


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_operation_conforms(case: schemathesis.Case, api_app: FastAPI) -> None:
    case.call_and_validate(
        app=api_app,
        checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.status_code_conformance,
            schemathesis.checks.content_type_conformance,
            schemathesis.checks.response_schema_conformance,
        ],
        timeout=1.0 if case.operation.path.endswith("/events") else 30.0,
    )
