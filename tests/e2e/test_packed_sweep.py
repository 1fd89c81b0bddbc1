"""Packed sweeps end to end: `reglab serve` and `reglab worker` train a λ sweep as one
packed model, and every member's curves equal a separately submitted run of the same spec;
a member's model downloads as a plain Keras model with the member's test metrics."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import wait_for

pytestmark = pytest.mark.e2e
L2 = "model.layers[*].regularizer.l2"
FINAL = {"succeeded", "failed", "cancelled", "pruned"}
EPOCHS = 10


def mlp(loop: str) -> dict[str, Any]:
    """The seed's MLP (Dense 64/32 with L2 on each kernel), no dropout, 20% of digits."""
    layer = {"regularizer": {"kind": "l2", "l2": 0.0}}
    return {
        "name": f"packed {loop}",
        "dataset": {"name": "digits", "train_fraction": 0.2},
        "model": {
            "layers": [
                {"type": "dense", "units": 64, **layer},
                {"type": "dense", "units": 32, **layer},
            ]
        },
        "training": {
            "epochs": EPOCHS,
            "batch_size": 32,
            "seed": 2,
            "loop": loop,
            "histogram_every": 5,
        },
    }


def get(url: str, path: str) -> Any:
    response = httpx.get(f"{url}{path}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_final(url: str, ids: list[int]) -> list[dict[str, Any]]:
    wait_for(
        lambda: all(get(url, f"/api/experiments/{i}")["status"] in FINAL for i in ids), 600, 0.5
    )
    return [get(url, f"/api/experiments/{i}") for i in ids]


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_packed_members_equal_their_separate_runs(stack: str, loop: str) -> None:
    lambdas = [0.0, 1e-3, 1e-2]
    body = {"name": f"pack {loop}", "base": mlp(loop), "axes": [{"path": L2, "values": lambdas}]}
    created = httpx.post(f"{stack}/api/sweeps", json=body, timeout=30)
    assert created.status_code == 201, created.text
    members = [run["id"] for run in created.json()["runs"]]
    separate = []
    for member, value in zip(members, lambdas, strict=True):
        spec = get(stack, f"/api/experiments/{member}")["spec"]
        assert spec["model"]["layers"][0]["regularizer"]["l2"] == value
        alone = httpx.post(f"{stack}/api/experiments", json={**spec, "name": "alone"}, timeout=30)
        assert alone.status_code == 201, alone.text
        separate.append(alone.json()["id"])

    runs = wait_final(stack, members + separate)
    assert [run["status"] for run in runs] == ["succeeded"] * 6
    pack = runs[0]["pack"]
    assert pack is not None and pack["members"] == 3
    assert [run["pack"] for run in runs[:3]] == [{**pack, "index": k} for k in range(3)]
    assert all(run["pack"] is None for run in runs[3:])
    assert len({run["device"] for run in runs}) == 1  # the pack's device, on every member

    for member, alone, run in zip(members, separate, runs[:3], strict=True):
        packed = get(stack, f"/api/experiments/{member}/metrics")
        single = get(stack, f"/api/experiments/{alone}/metrics")
        assert packed["epochs"] == single["epochs"] == list(range(EPOCHS))
        scale = max(abs(v) for v in single["series"]["loss"])
        for name in ("data_loss", "val_data_loss", "reg_loss"):
            np.testing.assert_allclose(
                packed["series"][name],
                single["series"][name],
                rtol=1e-5,
                atol=1e-5 * scale if name == "reg_loss" else 1e-7,
                err_msg=f"{name} of member {member}",
            )
        # Per-layer statistics and histograms stream per member as for a single run.
        assert "kernel_norm/dense_0" in packed["series"]
        histograms = get(stack, f"/api/experiments/{member}/histograms")
        assert histograms["epochs"] == [0, 5, 9]
        tested = run["test_metrics"]
        other = get(stack, f"/api/experiments/{alone}")["test_metrics"]
        for name in ("test_loss", "test_data_loss", "test_accuracy"):
            assert tested[name] == pytest.approx(other[name], rel=1e-5, abs=1e-7)

    # A member's model is a plain single model (the member's slice of every weight).
    content = httpx.get(f"{stack}/api/experiments/{members[1]}/model", timeout=30).content
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        config = archive.read("config.json").decode()
    assert '"Sequential"' in config and "Packed" not in config
