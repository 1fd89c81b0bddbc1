"""The OpenAPI document is the contract: schemathesis over every operation, every check.

A real uvicorn server (one for the module) on a fresh SQLite database that holds a run of
each kind (finished with metrics and a model, running, cancelled, queued) and a dataset,
so that reads, downloads, streams and claims find something. Each operation gets the
examples, coverage and fuzzing phases, and the stateful phase follows the document's
links from one call to the next (a run submitted, read, cancelled, deleted...). Every
check schemathesis has is on: no 5xx, documented status codes, content types, headers
and schemas, schema-valid requests accepted and schema-violating ones refused, `Allow`
on 405, resources there once created and gone once deleted. The seed is pinned: a
failure reproduces run after run.

Nothing is excluded. The event stream of a live run never ends by itself: its requests
time out after a second and what came is checked (a finished run's stream ends on its
own). The long-poll claim waits at most REGLAB_CLAIM_WAIT_SECONDS, here a tenth of one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from app.db import reset_engines, session_scope
from app.domain.storage import model_relpath, resolve_artifact
from app.main import create_app
from app.migrate import upgrade
from app.models import Status
from app.services import experiments, metrics, queue
from app.settings import get_settings
from app.spec import ExperimentSpec
from tests.conftest import free_port, run_in_thread
from tests.factories import make_spec

# Operations whose bodies carry rules that JSON Schema cannot say: the sum of two splits,
# which layers may follow which and on what data, what a sweep's path names, what an
# uploaded file holds, a histogram's one more edge than counts, a query's grammar, a model
# file that is not empty. A schema-valid body may break one of them; the answer is then a
# 422 naming it, and `refusals_name_a_rule` checks that it is that and nothing else (never
# the schema's own kind of refusal).
RULES_BEYOND_THE_SCHEMA = [
    ("POST", "/api/experiments"),
    ("GET", "/api/experiments"),  # the filter and order languages
    ("PATCH", "/api/experiments/{experiment_id}"),  # at most 100 tags on a run
    ("POST", "/api/sweeps"),
    ("POST", "/api/sweeps/{sweep_id}/seeds"),  # the sweep's run limit
    ("POST", "/api/datasets"),
    ("POST", "/api/worker/experiments/{experiment_id}/histograms"),
    ("PUT", "/api/worker/experiments/{experiment_id}/model"),  # a model file is not empty
]
# A spec has a hundred fields: the coverage phase would send ~3,000 bodies to each of
# these two (1,100 of them valid), every field at every bound and broken every way. Their
# share is the fuzzing phase's, bounded like every other operation's (the spec's bounds
# have tests of their own: test_bad_input.py, test_spec.py).
LARGE_BODIES = {
    operation: {"phases": {"coverage": {"enabled": False}}}
    for operation in (("POST", "/api/experiments"), ("POST", "/api/sweeps"))
}
ACCEPTED_OR_A_RULE = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
# A body that breaks the schema by its size (more items than `maxItems`) may pass the
# server's byte limit first: 413 refuses it as surely as a 422 would.
REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261206,
        "checks": {"negative_data_rejection": {"expected-statuses": [*REFUSED, "5xx"]}},
        "generation": {"max-examples": 6, "database": "none"},
        # The stateful phase follows the document's own links (app/api/links.py). Links
        # inferred from names would also lead from a run just submitted to its model,
        # which exists once training has ended (404 before, by design).
        "phases": {"stateful": {"max-steps": 6, "inference": {"algorithms": []}}},
        # Generous: the suite runs beside other processes on two cores, and the first 405
        # builds the OpenAPI document for its Allow header (half a second on its own).
        "request-timeout": 10.0,
        "operations": [
            {
                "include-method": method,
                "include-path": path,
                "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED_OR_A_RULE}},
                **LARGE_BODIES.get((method, path), {}),
            }
            for method, path in RULES_BEYOND_THE_SCHEMA
        ]
        + [
            # A live run's stream never ends by itself: a second of it is checked, not
            # the ten the other operations may take.
            {
                "include-method": "GET",
                "include-path": "/api/experiments/{experiment_id}/events",
                "request-timeout": 1.0,
            }
        ],
    }
)


@schemathesis.check
def refusals_name_a_rule(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """A schema-valid request answered 422 broke a rule beyond the schema (`value_error`,
    naming its field), never one the schema says (a type, a bound, a pattern, a field
    missing or unknown): those the document would have had to refuse."""
    if response.status_code != 422 or case.meta is None:
        return None
    if not case.meta.generation.mode.is_positive:
        return None
    shapes = [item for item in response.json()["detail"] if item["type"] != "value_error"]
    if shapes:
        raise AssertionError(f"a schema-valid request refused for its shape: {shapes}")
    return None


STATEFUL = settings(
    max_examples=3,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def seed_runs() -> None:
    """Run 1 succeeded (metrics, model), 2 running, 3 cancelled, 4 queued."""
    with session_scope() as session:
        for index in range(4):
            spec = ExperimentSpec.model_validate(make_spec(name=f"run {index + 1}"))
            experiments.create(session=session, spec=spec, max_attempts=1)
        done = queue.claim(
            session=session, worker_id="w", host="h", devices=["CPU"], lease_seconds=600
        )
        assert done is not None and done.id == 1 and done.lease_token is not None
        points = [(epoch, {"loss": 1.0 / (epoch + 1), "val_loss": 0.5}, None) for epoch in range(3)]
        metrics.ingest(
            session=session, experiment_id=1, lease_token=done.lease_token, points=points
        )
        path = resolve_artifact(get_settings(), model_relpath(1))
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"a .keras file")
        queue.set_model_path(
            session=session, experiment_id=1, lease_token=done.lease_token, path=model_relpath(1)
        )
        queue.finish(
            session=session, experiment_id=1, lease_token=done.lease_token, status=Status.succeeded
        )
        running = queue.claim(
            session=session, worker_id="w", host="h", devices=["CPU"], lease_seconds=600
        )
        assert running is not None and running.id == 2
        experiments.cancel(session=session, experiment_id=3)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("contract")
    url = f"sqlite:///{folder / 'reglab.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REGLAB_DATABASE_URL", url)
        env.setenv("REGLAB_DATA_DIR", str(folder / "data"))
        env.setenv("REGLAB_CLAIM_WAIT_SECONDS", "0.1")
        env.setenv("REGLAB_SWEEP_SECONDS", "0.5")
        get_settings.cache_clear()
        reset_engines()
        upgrade(url)
        seed_runs()
        yield from run_in_thread(free_port())
        reset_engines()
        get_settings.cache_clear()


# The document, read at collection time from the app itself; a test below checks that
# the server serves this very document.
DOCUMENT = create_app().openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


def test_the_server_serves_the_document_under_test(server: str) -> None:
    assert httpx.get(f"{server}/openapi.json", timeout=10).json() == DOCUMENT


@schema.parametrize()
@settings(suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_the_contract(case: schemathesis.Case, server: str) -> None:
    case.call_and_validate(base_url=server)


def test_calls_that_follow_each_other_keep_the_contract(server: str) -> None:
    class Calls(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": server}

    Calls.run(settings=STATEFUL)
