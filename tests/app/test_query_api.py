"""Queries through the API on SQLite and PostgreSQL: the issue's examples over known runs,
ordering, paging with a filter, every malformed filter a 422 at its position, and tags
and notes edited after the run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from sqlmodel import Session

from app.db import get_engine
from app.main import create_app
from app.models import Experiment, Status, Sweep
from app.services import experiments, ingest, scripts
from app.spec import ExperimentSpec
from tests.app.test_query_grammar import ISSUE_EXAMPLES, trees
from tests.factories import make_spec


@pytest.fixture
def api(any_db: str) -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def layers(l2: float | None, dropouts: tuple[float, float]) -> dict[str, Any]:
    first: dict[str, Any] = {"type": "dense", "units": 8, "dropout": dropouts[0]}
    if l2 is not None:
        first["regularizer"] = {"kind": "l2", "l2": l2}
    return {"layers": [first, {"type": "dense", "units": 4, "dropout": dropouts[1]}]}


def run(
    session: Session,
    name: str,
    dataset: str,
    l2: float | None,
    dropouts: tuple[float, float],
    seed: int,
    status: Status = Status.queued,
    curves: dict[str, list[float]] | None = None,
    **fields: Any,
) -> int:
    """A run of known settings, status and curves (stored as a worker's upload would be)."""
    data = {"name": dataset, "n_samples": 200 if dataset == "moons" else None}
    spec = make_spec(name=name, dataset=data, model=layers(l2, dropouts), training={"seed": seed})
    row = experiments.create(
        session=session, spec=ExperimentSpec.model_validate(spec), max_attempts=1
    )
    if curves:
        epochs = len(next(iter(curves.values())))
        points = [
            (epoch, {metric: values[epoch] for metric, values in curves.items()}, None)
            for epoch in range(epochs)
        ]
        ingest.store(session=session, uploads=[(row, points)])
    if status != Status.queued:
        experiments.change_status(row, status, session=session)
    for key, value in fields.items():
        setattr(row, key, value)
    session.add(row)
    session.commit()
    assert row.id is not None
    return row.id


def fill() -> dict[str, int]:
    """Five runs whose answers to the issue's examples are known."""
    with Session(get_engine(), expire_on_commit=False) as session:
        sweeps = [Sweep(name=f"sweep {index}", spec={}) for index in range(3)]
        session.add_all(sweeps)
        session.commit()
        sweep = sweeps[2].id
        assert sweep == 3
        ids = {
            "a": run(
                session,
                "l2 sweep a",
                "digits",
                0.01,
                (0.0, 0.0),
                0,
                Status.succeeded,
                {"val_data_loss": [0.5, 0.3, 0.35], "val_accuracy": [0.8, 0.92, 0.91]},
                sweep_id=sweep,
                tags={"team": "vision", "baseline": None},
            ),
            "b": run(
                session,
                "l2 sweep b",
                "digits",
                1e-4,
                (0.0, 0.5),
                1,
                Status.succeeded,
                {"val_data_loss": [0.6, 0.45], "val_accuracy": [0.7, 0.85]},
                sweep_id=sweep,
                verdict="overfitting",
                tags={"team": "audio"},
            ),
            "c": run(session, "baseline moons", "moons", 0.01, (0.0, 0.0), 2),
            "d": run(
                session,
                "x SWEEP c",
                "breast_cancer",
                None,
                (0.1, 0.2),
                5,
                Status.failed,
                {"val_data_loss": [0.38], "val_accuracy": [0.95]},
                sweep_id=sweep,
                verdict="healthy",
                tags={"team": "vision"},
            ),
        }
        script = scripts.create(
            session=session, name="my script", script={"dataset": "digits"}, lease_seconds=60
        )
        assert script.id is not None
        ids["script"] = script.id
    return ids


def query(api: TestClient, filter: str | None = None, **params: Any) -> dict[str, Any]:
    response = api.get("/api/experiments", params={"filter": filter, **params})
    assert response.status_code == 200, response.text
    return dict(response.json())


def names(api: TestClient, ids: dict[str, int], filter: str, **params: Any) -> list[str]:
    by_id = {run_id: key for key, run_id in ids.items()}
    return [by_id[item["id"]] for item in query(api, filter, **params)["items"]]


def test_the_issue_s_examples_on_known_runs(api: TestClient) -> None:
    ids = fill()
    answers = [{"a", "b"}, {"a", "c"}, {"a", "d"}, {"a", "d"}, {"a", "b"}]
    for example, expected in zip(ISSUE_EXAMPLES, answers, strict=True):
        assert set(names(api, ids, example)) == expected, example
    ordered = names(api, ids, "", order_by="metrics.val_data_loss.best asc, created desc")
    assert ordered == ["a", "d", "b", "script", "c"]  # no summaries: newest first, last


# Filters and the runs of fill() they match (None: every run).
FILTERS = [
    ("source = 'script' and dataset = 'digits'", {"script"}),
    ("dataset = 'moons' or dataset = 'breast_cancer'", {"c", "d"}),
    ("not params.model.layers[*].dropout > 0", {"a", "c", "script"}),
    ("params.model.layers[1].dropout >= 0.2", {"b", "d"}),
    ("params.model.layers.0.regularizer.l2 = 0.0001", {"b"}),
    ("not params.model.layers.0.regularizer.l2 > 0.001", {"b", "d", "script"}),
    ("params.model.layers[*].regularizer.l2 > 0", {"a", "b", "c"}),
    ("params.dataset.name in ('moons', 'wine')", {"c"}),
    ("params.model.layers[0].type = 'dense' and params.training.seed >= 2", {"c", "d"}),
    ("metrics.val_accuracy.best = 0.92", {"a"}),
    ("metrics.val_accuracy.last = 0.91", {"a"}),
    ("metrics.val_data_loss.min < 0.4 and metrics.val_data_loss.max > 0.45", {"a"}),
    ("metrics.val_data_loss.last > 0.4", {"b"}),
    ("not metrics.val_data_loss.best < 1", {"c", "script"}),
    ("tags.baseline", {"a"}),
    ("not tags.baseline and tags.team", {"b", "d"}),
    ("tags.team != 'vision'", {"b"}),
    ("not tags.team = 'vision'", {"b", "c", "script"}),
    ("tags.team like 'VIS%'", {"a", "d"}),
    ("name like '%sweep%'", {"a", "b", "d"}),
    ("name not like '%sweep%'", {"c", "script"}),
    ("name like 'l2\\_sweep%' or name like 'l2 sweep _'", {"a", "b"}),
    ("verdict in ('overfitting', 'healthy')", {"b", "d"}),
    ("verdict not in ('overfitting')", {"d"}),
    ("status in ('failed', 'running') and epochs_done >= 1", {"d"}),
    ("sweep = 3 and not (status = 'failed' or verdict = 'overfitting')", {"a"}),
    ("created > '2000-01-01' and created < '2999-12-31T23:00:00+02:00'", None),
    ("started > '2000-01-01'", {"script"}),
    ("finished >= '2000-01-01'", {"a", "b", "d"}),
    ("device = 'gpu'", set()),
    ("pack = 1 or not pack = 1", None),
    ("name = '; drop table experiment; --'", set()),
]


def test_filters_on_known_runs(api: TestClient) -> None:
    ids = fill()
    for filter, expected in FILTERS:
        found = set(names(api, ids, filter))
        assert found == (expected if expected is not None else set(ids)), filter
    assert query(api)["total"] == len(ids)  # nothing dropped, whatever a value said


# Orders and the runs of fill() in that order.
ORDERS = [
    ("", ["script", "d", "c", "b", "a"]),
    ("created", ["a", "b", "c", "d", "script"]),
    ("metrics.val_accuracy.last desc", ["d", "a", "b", "script", "c"]),
    ("metrics.val_data_loss.max desc, name", ["b", "a", "d", "c", "script"]),
    ("tags.team asc, id", ["b", "a", "d", "c", "script"]),
    (
        "params.model.layers[1].dropout desc, params.training.seed",
        ["b", "d", "a", "c", "script"],
    ),
    ("dataset, name desc", ["d", "script", "b", "a", "c"]),
    ("verdict desc", ["b", "d", "script", "c", "a"]),
    ("status, epochs_done desc", ["d", "c", "script", "a", "b"]),
]


def test_ordering_nulls_last_ties_newest_first(api: TestClient) -> None:
    ids = fill()
    for order_by, expected in ORDERS:
        assert names(api, ids, "", order_by=order_by) == expected, order_by


def test_paging_through_a_filter_sees_each_match_once(api: TestClient) -> None:
    with Session(get_engine(), expire_on_commit=False) as session:
        for index in range(13):
            run(
                session,
                f"page {index}",
                "moons",
                0.01 if index % 2 else None,
                (0.0, 0.0),
                index,
                Status.succeeded,
                {"val_data_loss": [1.0 - index / 100]},
            )
    wanted = "params.model.layers[0].regularizer.l2 > 0 or params.training.seed = 0"
    order = "metrics.val_data_loss.best"
    whole = query(api, wanted, order_by=order, limit=500, metrics="val_data_loss")
    assert whole["total"] == 7
    pages = [query(api, wanted, order_by=order, limit=3, offset=offset) for offset in (0, 3, 6, 9)]
    assert [page["total"] for page in pages] == [7, 7, 7, 7]
    assert [item["id"] for page in pages for item in page["items"]] == [
        item["id"] for item in whole["items"]
    ]
    losses = [item["metrics"]["val_data_loss"]["best"] for item in whole["items"]]
    assert losses == sorted(losses)


MALFORMED = [
    ("name = 'unclosed", "at 8: unclosed quote"),
    ("colour = 'red'", "at 1: unknown field 'colour'"),
    ("params. = 1", "at 1: expected a path after 'params.'"),
    ("params.model.layers = 1", "at 1: 'params.model.layers' is a section of the spec"),
    ("metrics.val_loss > 1", "at 1: expected a metric name and a summary"),
    ("epochs_done < 'abc'", "at 15: 'epochs_done' holds a number"),
    ("dataset = 'digits' and id>", "at 27: expected a value after '>'"),
    ("(status = 'queued'", "at 19: expected ')' to close the '(' at 1"),
    ("'; drop table experiment; --", "at 1: unclosed quote"),
    ("name = 'x'; drop table experiment; --", "at 11: unexpected character ';'"),
    ("status = 'a' or", "at 16: expected a field"),
    ("name like '50\\'", "at 11: in a LIKE pattern a backslash goes before %, _ or another \\"),
    ("created > '2026-13-45'", "at 11: 'created' is a time"),
    ("id = 99999999999999999999999 or id = 1e400", "at 38: 1e400 is not a finite number"),
]


@pytest.mark.parametrize(("filter", "message"), MALFORMED)
def test_a_malformed_filter_is_a_422_naming_it(api: TestClient, filter: str, message: str) -> None:
    response = api.get("/api/experiments", params={"filter": filter})
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["field"] == "filter"
    assert problem["msg"].startswith(message), problem["msg"]
    assert problem["input"] == filter


def test_a_filter_too_long_or_a_bad_order_is_a_422(api: TestClient) -> None:
    response = api.get("/api/experiments", params={"filter": "name = '" + "x" * 2000 + "'"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "filter"
    response = api.get("/api/experiments", params={"order_by": "metrics.x.best sideways"})
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["field"] == "order_by"
    assert problem["msg"].startswith("at 16: expected ',', ASC, DESC or the end")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=trees)
def test_every_parsed_filter_runs(api: TestClient, tree: Any) -> None:
    """Whatever the parser accepts, the database answers (never a 500)."""
    from app.domain.query import to_text

    response = api.get("/api/experiments", params={"filter": to_text(tree), "limit": 1})
    assert response.status_code == 200, (to_text(tree), response.text)


def test_tags_and_notes_are_edited_after_the_run(api: TestClient) -> None:
    ids = fill()
    path = f"/api/experiments/{ids['a']}"
    first = api.get(path).json()
    assert first["tags"] == {"team": "vision", "baseline": None} and first["notes"] is None
    assert first["metrics"]["val_data_loss"] == {"best": 0.3, "last": 0.35, "min": 0.3, "max": 0.5}

    edited = api.patch(
        path,
        json={"tags": {"team": "audio", "reviewed": None, "lr": "3e-4"}, "notes": "too slow"},
    )
    assert edited.status_code == 200, edited.text
    body = edited.json()
    assert body["tags"] == {"team": "audio", "baseline": None, "reviewed": None, "lr": "3e-4"}
    assert body["notes"] == "too slow"
    assert body["metrics"]["val_accuracy"]["best"] == 0.92

    # Removal first, then the sets; notes left out stay as they are.
    body = api.patch(path, json={"remove_tags": ["baseline", "lr", "nope"]}).json()
    assert body["tags"] == {"team": "audio", "reviewed": None} and body["notes"] == "too slow"
    assert set(names(api, ids, "tags.team = 'audio'")) == {"a", "b"}
    assert names(api, ids, "tags.reviewed") == ["a"]
    assert names(api, ids, "tags.baseline") == []

    body = api.patch(path, json={"notes": None}).json()
    assert body["notes"] is None and body["tags"] == {"team": "audio", "reviewed": None}

    # A running script run and a queued one take tags too; the list shows them.
    for key in ("script", "c"):
        response = api.patch(f"/api/experiments/{ids[key]}", json={"tags": {"seen": "yes"}})
        assert response.status_code == 200
    assert set(names(api, ids, "tags.seen = 'yes'")) == {"script", "c"}
    listed = {item["id"]: item for item in query(api, metrics="*")["items"]}
    assert listed[ids["c"]]["tags"] == {"seen": "yes"} and listed[ids["c"]]["metrics"] == {}


def test_a_list_carries_the_metric_summaries_asked_for(api: TestClient) -> None:
    ids = fill()
    by_id = {item["id"]: item for item in query(api)["items"]}
    assert by_id[ids["a"]]["metrics"] is None  # none asked for: the page stays small
    every = {item["id"]: item["metrics"] for item in query(api, metrics="*")["items"]}
    assert every[ids["a"]] == {
        "val_data_loss": {"best": 0.3, "last": 0.35, "min": 0.3, "max": 0.5},
        "val_accuracy": {"best": 0.92, "last": 0.91, "min": 0.8, "max": 0.92},
    }
    assert every[ids["c"]] == {} and every[ids["script"]] == {}
    one = {item["id"]: item["metrics"] for item in query(api, metrics="val_accuracy,nope")["items"]}
    assert one[ids["d"]] == {"val_accuracy": {"best": 0.95, "last": 0.95, "min": 0.95, "max": 0.95}}
    response = api.get("/api/experiments", params={"metrics": "a b"})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "metrics"


BAD_EDITS = [
    ({"tags": {"bad key": "x"}}, "tags"),
    ({"tags": {"k": 3}}, "tags.k"),
    ({"tags": {"k": "x" * 501}}, "tags.k"),
    ({"remove_tags": "k"}, "remove_tags"),
    ({"notes": 5}, "notes"),
    ({"colour": "red"}, "colour"),
]


def test_a_bad_edit_is_a_422(api: TestClient) -> None:
    ids = fill()
    for body, field in BAD_EDITS:
        response = api.patch(f"/api/experiments/{ids['a']}", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["field"].startswith(field), body


def test_an_edit_past_the_tag_limit_is_a_422_and_changes_nothing(api: TestClient) -> None:
    ids = fill()
    path = f"/api/experiments/{ids['c']}"
    assert api.patch(path, json={"tags": {f"k{i}": None for i in range(100)}}).status_code == 200
    response = api.patch(path, json={"tags": {"one_more": "x"}})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "tags"
    assert len(api.get(path).json()["tags"]) == 100
    assert api.patch("/api/experiments/999999", json={"notes": "x"}).status_code == 404


def test_queued_runs_keep_the_notes_of_their_spec(api: TestClient) -> None:
    spec = make_spec(name="noted", notes="from the form")
    body = api.post("/api/experiments", json=spec).json()
    assert body["notes"] == "from the form" and body["tags"] == {}
    with Session(get_engine()) as session:
        row = session.get(Experiment, body["id"])
        assert row is not None and row.notes == "from the form"
