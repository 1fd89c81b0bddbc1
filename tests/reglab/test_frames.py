"""ReglabClient's queries against a live server: `runs` pages through every match,
`runs_frame` flattens runs into typed columns named as filters name fields, and
`history_frame` gives the curves in long format; without pandas both say how to get it.

The runs are fed through the API as a worker and a script would: queued runs claimed,
their epochs uploaded and finished; a script run with its config and test metrics; tags
set with PATCH."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from reglab.client import ReglabClient, ReglabError, WorkerClient
from reglab.frames import flatten_run
from tests.factories import make_spec

CURVES = {
    "a": {
        "data_loss": [0.9, 0.5, 0.3],
        "val_data_loss": [1.0, 0.6, 0.7],
        "accuracy": [0.5, 0.8, 0.9],
    },
    "b": {"data_loss": [0.8, 0.6], "val_data_loss": [0.9, 0.55], "accuracy": [0.6, 0.7]},
    "script": {"data_loss": [1.2, 0.7], "val_data_loss": [1.3, 0.65], "reg_loss": [0.1, 0.08]},
}


@dataclass
class Fed:
    """The ids of the runs fed to a server, by their role."""

    a: int  # succeeded: L2 0.01, tagged team=vision and a bare label, test metrics
    b: int  # failed after 2 epochs: L2 0.001, tagged team=audio
    queued: int  # never claimed: no epochs, no start
    script: int  # a script's run with its own config and test metrics

    @property
    def all(self) -> list[int]:
        return [self.a, self.b, self.queued, self.script]


def points(curves: dict[str, list[float]]) -> list[dict[str, Any]]:
    epochs = len(next(iter(curves.values())))
    return [
        {"epoch": epoch, "values": {name: values[epoch] for name, values in curves.items()}}
        for epoch in range(epochs)
    ]


def spec(name: str, l2: float, seed: int) -> dict[str, Any]:
    layer = {"type": "dense", "units": 8, "regularizer": {"kind": "l2", "l2": l2}, "dropout": 0.1}
    return make_spec(name=name, model={"layers": [layer]}, training={"seed": seed})


def feed(url: str) -> Fed:
    """Four runs of known settings, curves, tags and test metrics."""
    with ReglabClient(url) as client:
        a = client.submit(spec("frames a", 0.01, 0))["id"]
        b = client.submit(spec("frames b", 0.001, 1))["id"]
        worker = WorkerClient(url)
        for run_id, key, status in ((a, "a", "succeeded"), (b, "b", "failed")):
            claim = worker.claim(worker_id="w", host="h", devices=["CPU"], slot="CPU", wait=0)
            assert claim is not None and claim["experiment_id"] == run_id
            token = claim["lease_token"]
            worker.started(run_id, token, "CPU")
            worker.upload_metrics(run_id, token, points(CURVES[key]))
            if status == "succeeded":
                test = {"test_loss": 0.4, "test_accuracy": 0.875}
                worker.finish(run_id, token, status=status, test_metrics=test, best_epoch=1)
            else:
                worker.finish(run_id, token, status=status, error="boom", error_epoch=1)
        worker.close()
        queued = client.submit(spec("frames queued", 0.1, 2))["id"]
        config = {"lr": 0.01, "optimizer": "sgd", "augment": True, "width": 64}
        script = client.create_run("frames script", {"dataset": "my data", "config": config})
        client.upload_run_epochs(script["id"], points(CURVES["script"]))
        client.finish_run(script["id"], status="succeeded", test_metrics={"test_accuracy": 0.5})
        client.edit(a, tags={"team": "vision", "baseline": None}, notes="first try", set_notes=True)
        client.edit(b, tags={"team": "audio"})
    return Fed(a=a, b=b, queued=queued, script=script["id"])


@pytest.fixture
def fed(live_server: str) -> Fed:
    return feed(live_server)


def test_runs_pages_through_every_match_in_order(live_server: str, fed: Fed) -> None:
    with ReglabClient(live_server) as client:
        newest_first = [run["id"] for run in client.runs(page_size=1)]
        assert newest_first == sorted(fed.all, reverse=True)
        best_first = client.runs(order_by="metrics.val_data_loss.best asc", page_size=2)
        assert [run["id"] for run in best_first] == [fed.b, fed.a, fed.script, fed.queued]
        assert [run["id"] for run in client.runs(limit=2, page_size=1)] == newest_first[:2]
        tagged = list(client.runs("tags.team = 'vision' or tags.team = 'audio'", "id asc"))
        assert [run["id"] for run in tagged] == [fed.a, fed.b]
        assert tagged[0]["metrics"]["val_data_loss"] == {
            "best": 0.6,
            "last": 0.7,
            "min": 0.6,
            "max": 1.0,
        }
        assert list(client.runs("status = 'pruned'")) == []
        with pytest.raises(ReglabError) as refused:
            list(client.runs("params.model.layers.0.regularizer.l2 >"))
        assert refused.value.status_code == 422
        assert refused.value.detail[0]["field"] == "filter"
        assert "expected a value after '>'" in refused.value.detail[0]["msg"]


def test_runs_frame_has_one_typed_column_per_field(live_server: str, fed: Fed) -> None:
    with ReglabClient(live_server) as client:
        frame = client.runs_frame(order_by="id asc")
    assert list(frame["id"]) == fed.all
    columns = list(frame.columns)
    assert columns[:4] == ["id", "name", "status", "created"]
    families = ["params.", "config.", "metrics.", "tags.", "test."]
    firsts = [min(i for i, c in enumerate(columns) if c.startswith(f)) for f in families]
    assert firsts == sorted(firsts)  # attributes, settings, then what was measured
    frame = frame.set_index("id")
    for column in (
        "name",
        "status",
        "created",
        "started",
        "finished",
        "sweep",
        "pack",
        "source",
        "verdict",
        "device",
        "dataset",
        "epochs_done",
        "params.model.layers.0.regularizer.l2",
        "params.model.layers.0.units",
        "params.training.seed",
        "params.dataset.name",
        "config.lr",
        "metrics.val_data_loss.best",
        "metrics.accuracy.last",
        "metrics.reg_loss.max",
        "tags.team",
        "tags.baseline",
        "test.test_accuracy",
    ):
        assert column in frame.columns, column
    assert "params.name" not in frame.columns and "params.notes" not in frame.columns

    dtypes = frame.dtypes
    assert frame.index.dtype == "int64"
    for column in ("created", "started", "finished"):
        assert isinstance(dtypes[column], pd.DatetimeTZDtype), column
        assert str(dtypes[column].tz) == "UTC"
    assert dtypes["epochs_done"] == "int64" and dtypes["epochs_total"] == "int64"
    assert dtypes["sweep"] == "Int64" and dtypes["best_epoch"] == "Int64"
    for column in frame.columns:
        if column.startswith(("metrics.", "test.")):
            assert dtypes[column] == "float64", column
        if column.startswith("tags."):
            assert pd.api.types.is_string_dtype(dtypes[column]), column
    assert dtypes["params.model.layers.0.regularizer.l2"] == "float64"
    assert dtypes["params.model.layers.0.units"] == "Int64"  # the script run has no spec
    assert pd.api.types.is_string_dtype(dtypes["params.dataset.name"])
    assert dtypes["config.lr"] == "float64" and dtypes["config.width"] == "Int64"
    assert dtypes["config.augment"] == "boolean"
    assert pd.api.types.is_string_dtype(dtypes["config.optimizer"])
    assert pd.api.types.is_string_dtype(dtypes["status"])

    a, b, queued, script = (frame.loc[run_id] for run_id in fed.all)
    assert a["params.model.layers.0.regularizer.l2"] == 0.01
    assert b["params.training.seed"] == 1
    assert a["status"] == "succeeded" and b["status"] == "failed" and queued["status"] == "queued"
    assert a["metrics.val_data_loss.best"] == 0.6 and a["metrics.accuracy.last"] == 0.9
    assert a["metrics.accuracy.best"] == 0.8  # the value at the best epoch
    assert script["metrics.reg_loss.max"] == 0.1 and pd.isna(a["metrics.reg_loss.max"])
    assert a["tags.team"] == "vision" and a["tags.baseline"] == ""  # a bare label
    assert pd.isna(b["tags.baseline"]) and pd.isna(queued["tags.team"])
    assert a["test.test_accuracy"] == 0.875 and pd.isna(b["test.test_accuracy"])
    assert a["dataset"] == "moons" and script["dataset"] == "my data"
    assert script["source"] == "script" and a["source"] == "queue"
    assert script["config.augment"] and script["config.optimizer"] == "sgd"
    assert pd.isna(a["config.lr"]) and pd.isna(script["params.model.layers.0.units"])
    assert pd.isna(queued["started"]) and a["finished"] >= a["started"] >= a["created"]
    assert a["notes"] == "first try" and a["device"] == "CPU" and a["epochs_done"] == 3
    assert queued["verdict"] == "too_early" and pd.notna(a["verdict"])


def test_runs_frame_filters_and_keeps_the_columns_when_nothing_matches(
    live_server: str, fed: Fed
) -> None:
    with ReglabClient(live_server) as client:
        strong = client.runs_frame("params.model.layers[*].regularizer.l2 >= 0.01", "id desc")
        nothing = client.runs_frame("status = 'pruned'")
    assert list(strong["id"]) == [fed.queued, fed.a]
    assert len(nothing) == 0
    assert {"id", "name", "status", "created", "verdict"} <= set(nothing.columns)
    assert nothing.dtypes["id"] == "int64"
    assert isinstance(nothing.dtypes["created"], pd.DatetimeTZDtype)


def test_history_frame_is_long_and_typed(live_server: str, fed: Fed) -> None:
    with ReglabClient(live_server) as client:
        history = client.history_frame([fed.a, fed.script])
        losses = client.history_frame(pd.Series([fed.b, fed.a]), metrics=["val_data_loss"])
        with pytest.raises(ReglabError) as missing:
            client.history_frame([fed.a, 999_999])
    assert list(history.columns) == ["run", "epoch", "metric", "value"]
    assert history.dtypes["run"] == "int64" and history.dtypes["epoch"] == "int64"
    assert history.dtypes["value"] == "float64"
    assert pd.api.types.is_string_dtype(history.dtypes["metric"])
    assert len(history) == 3 * 3 + 2 * 3  # a: 3 metrics x 3 epochs; the script: 3 x 2
    assert set(history[history["run"] == fed.a]["metric"]) == {
        "data_loss",
        "val_data_loss",
        "accuracy",
    }
    curve = history[(history["run"] == fed.script) & (history["metric"] == "reg_loss")]
    assert list(curve["epoch"]) == [0, 1] and list(curve["value"]) == [0.1, 0.08]
    assert set(losses["metric"]) == {"val_data_loss"}
    by_run = losses.groupby("run")["value"].apply(list).to_dict()
    assert by_run == {fed.a: [1.0, 0.6, 0.7], fed.b: [0.9, 0.55]}
    assert missing.value.status_code == 404 and "999999" in str(missing.value)


def test_without_pandas_the_frames_say_how_to_install_it(
    live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` fails
    with ReglabClient(live_server) as client:
        with pytest.raises(ImportError, match=r"pip install 'reglab\[pandas\]'"):
            client.runs_frame()
        with pytest.raises(ImportError, match=r"pip install 'reglab\[pandas\]'"):
            client.history_frame([1])
        assert list(client.runs()) == []  # the rest of the client needs no pandas


def test_a_flat_row_takes_the_stored_verdict_unless_one_is_given() -> None:
    run = {"id": 3, "name": "r", "status": "succeeded", "verdict": "overfitting", "spec": {}}
    assert flatten_run(run)["verdict"] == "overfitting"
    assert flatten_run(run, "healthy")["verdict"] == "healthy"
    assert flatten_run({**run, "verdict": None})["verdict"] is None
