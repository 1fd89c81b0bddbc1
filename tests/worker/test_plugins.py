"""Custom penalties as worker-side plugins, chosen by name in the spec."""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from pydantic import ValidationError

from app.spec import ExperimentSpec, RegularizerSpec
from tests.factories import make_spec
from worker import regularizers
from worker.training import train

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "examples" / "plugins"


@pytest.fixture
def plugin_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker host with the example plugin installed and named in its settings."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.setenv(
        "REGLAB_REGULARIZER_PLUGINS", "orthogonality=reglab_orthogonality:Orthogonality"
    )
    monkeypatch.setattr(regularizers, "PLUGINS", {})
    monkeypatch.delitem(sys.modules, "reglab_orthogonality", raising=False)


def plugin_spec(strength: float = 0.05) -> dict[str, object]:
    return {"kind": "plugin", "plugin": "orthogonality", "params": {"strength": strength}}


def test_the_spec_names_a_plugin_and_its_parameters_only() -> None:
    spec = RegularizerSpec.model_validate(plugin_spec())
    assert spec.describe() == "orthogonality(strength=0.05)"
    for bad in (
        {"kind": "plugin"},
        {"kind": "plugin", "plugin": "x", "l2": 0.1},
        {"kind": "l2", "plugin": "x"},
        {"kind": "l2", "params": {"a": 1.0}},
        {"kind": "plugin", "plugin": "../../etc", "params": {}},
        {"kind": "plugin", "plugin": "os.system('x')"},
        {"kind": "plugin", "plugin": "x", "params": {"a": "import os"}},
        {"kind": "plugin", "plugin": "x", "params": {"a": float("nan")}},
    ):
        with pytest.raises(ValidationError):
            RegularizerSpec.model_validate(bad)


def test_the_host_offers_its_plugins_without_importing_them(plugin_host: None) -> None:
    assert regularizers.plugin_names() == ["orthogonality"]
    assert "reglab_orthogonality" not in sys.modules


def test_the_supervisor_tells_the_server_its_plugins(
    plugin_host: None, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor (which never imports a framework) names them in its claims, and the
    server lists them for the form."""
    import httpx

    from reglab.client import WorkerClient
    from worker import plugins, supervisor

    assert plugins.plugin_names() == ["orthogonality"]
    worker = supervisor.Supervisor(server_url=live_server, slots=[], claim_wait=0)
    assert worker.plugins == ["orthogonality"]
    client = WorkerClient(live_server)
    try:  # nothing is queued; the claim registers the worker and its plugins
        assert worker._claim(client, supervisor.Slot("CPU", "-1")) is None
    finally:
        client.close()
    offered = httpx.get(f"{live_server}/api/regularizers").json()["plugins"]
    assert offered == [{"name": "orthogonality", "workers": 1}]


def test_a_plugin_penalty_matches_its_hand_computation(plugin_host: None) -> None:
    penalty = regularizers.from_spec(RegularizerSpec.model_validate(plugin_spec(0.5)))
    kernel = np.array([[1.0, 2.0], [0.0, 1.0], [1.0, 0.0]], dtype="float32")
    gram = kernel.T @ kernel
    expected = 0.5 * np.sum((gram - np.eye(2)) ** 2)
    assert float(keras.ops.convert_to_numpy(penalty(kernel))) == pytest.approx(expected)


def test_a_run_trains_and_saves_with_a_plugin(plugin_host: None, tmp_path: Path) -> None:
    spec = ExperimentSpec.model_validate(
        make_spec(
            model={"layers": [{"type": "dense", "units": 4, "regularizer": plugin_spec()}]},
            training={"epochs": 2},
        )
    )
    assert spec.describe_regularization() == "orthogonality(strength=0.05)"
    result = train(spec)
    assert all(value > 0 for value in result.history["reg_loss"])
    path = tmp_path / "model.keras"
    result.model.save(path)
    loaded = keras.saving.load_model(path)
    sample = np.zeros((2, 2), dtype="float32")
    np.testing.assert_allclose(
        loaded.predict(sample, verbose=0), result.model.predict(sample, verbose=0)
    )


def test_a_worker_without_the_plugin_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(regularizers, "PLUGINS", {})
    monkeypatch.delenv("REGLAB_REGULARIZER_PLUGINS", raising=False)
    with pytest.raises(
        regularizers.UnknownPlugin, match="no regularizer plugin named 'orthogonality'"
    ):
        regularizers.from_spec(RegularizerSpec.model_validate(plugin_spec()))
