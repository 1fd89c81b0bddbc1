"""λ schedules in both engines: the streamed `reg_scale` follows the schedule, and the
penalty in the loss (`reg_loss`) follows the scale."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from app.spec import ExperimentSpec, ScheduleSpec
from reglab import ReglabCallback
from reglab.sender import Sender
from reglab.testing import MemoryClaimedChannel
from worker import regularizers
from worker.training import train

EPOCHS = 6
L2 = 0.05


def schedule_spec(loop: str, schedule: dict[str, Any] | None, **training: Any) -> ExperimentSpec:
    """A tiny regression net with an L2 penalty on its one hidden kernel; a learning rate
    so small that the weights barely move within an epoch."""
    return ExperimentSpec.model_validate(
        {
            "name": "schedule",
            "dataset": {"name": "noisy_regression", "n_samples": 60},
            "model": {
                "layers": [{"type": "dense", "units": 16, "regularizer": {"kind": "l2", "l2": L2}}]
            },
            "training": {
                "epochs": EPOCHS,
                "batch_size": 64,
                "learning_rate": 1e-5,
                "loop": loop,
                "shuffle": False,
                "histogram_every": 0,
                "schedule": schedule,
                **training,
            },
        }
    )


def streamed(spec: ExperimentSpec) -> list[dict[str, float]]:
    """Train with the streaming callback; the values of each uploaded epoch, in order."""
    channel = MemoryClaimedChannel()
    sender = Sender(channel).start()
    train(spec, [ReglabCallback(sender=sender)])
    assert sender.close(timeout=30)
    return [channel.epochs[key] for key in sorted(channel.epochs)]


EXPECTED = {
    "constant": [1.0] * EPOCHS,
    "warmup": [0.0, 0.25, 0.5, 0.75, 1.0, 1.0],  # warmup_epochs 4
    # 0.2 + 0.8 · (1 + cos(π e / 5)) / 2
    "cosine": [1.0, 0.9236068, 0.7236068, 0.4763932, 0.2763932, 0.2],
}


@pytest.mark.parametrize("kind", ["constant", "warmup", "cosine"])
def test_schedule_scale_by_hand(kind: str) -> None:
    schedule = ScheduleSpec(kind=kind, warmup_epochs=4, final_fraction=0.2)  # type: ignore[arg-type]
    values = [regularizers.schedule_scale(schedule, epoch, EPOCHS) for epoch in range(EPOCHS)]
    assert values == pytest.approx(EXPECTED[kind], abs=1e-6)


def test_schedule_edges() -> None:
    assert regularizers.schedule_scale(None, 3, 10) == 1.0
    cosine = ScheduleSpec(kind="cosine", final_fraction=0.5)
    assert regularizers.schedule_scale(cosine, 0, 1) == 1.0  # a one-epoch run
    assert regularizers.schedule_scale(ScheduleSpec(kind="warmup", warmup_epochs=1), 0, 5) == 0.0


@pytest.mark.parametrize("loop", ["fit", "custom"])
@pytest.mark.parametrize("kind", ["constant", "warmup", "cosine"])
def test_streamed_scale_and_penalty_follow_the_schedule(loop: str, kind: str) -> None:
    spec = schedule_spec(loop, {"kind": kind, "warmup_epochs": 4, "final_fraction": 0.2})
    epochs = streamed(spec)
    assert [values["reg_scale"] for values in epochs] == pytest.approx(EXPECTED[kind], abs=1e-6)
    for values in epochs:
        # The L2 penalty of the weights as they stand (they barely move in an epoch) times
        # the scale: reg_loss is the scaled penalty, not λ·R(w) alone.
        unscaled = L2 * values["kernel_norm/dense_0"] ** 2
        assert unscaled > 0.01
        expected = values["reg_scale"] * unscaled
        assert values["reg_loss"] == pytest.approx(expected, rel=0.02, abs=1e-5)


def test_global_regularizer_is_scaled_in_the_custom_loop() -> None:
    spec = ExperimentSpec.model_validate(
        {
            **schedule_spec("custom", {"kind": "warmup", "warmup_epochs": 2}).model_dump(),
            "model": {"layers": [{"type": "dense", "units": 16}]},
            "training": {
                **schedule_spec("custom", None).training.model_dump(),
                "epochs": 3,
                "schedule": {"kind": "warmup", "warmup_epochs": 2},
                "global_regularizer": {"kind": "l2", "l2": 0.01},
            },
        }
    )
    epochs = streamed(spec)
    assert [values["reg_scale"] for values in epochs] == pytest.approx([0.0, 0.5, 1.0])
    assert epochs[0]["reg_loss"] == pytest.approx(0.0, abs=1e-7)
    assert epochs[1]["reg_loss"] > 0
    assert epochs[2]["reg_loss"] == pytest.approx(2 * epochs[1]["reg_loss"], rel=0.02)


def test_no_schedule_streams_no_scale() -> None:
    epochs = streamed(schedule_spec("fit", None, epochs=2))
    assert all("reg_scale" not in values for values in epochs)


def test_scheduled_model_saves_and_loads(tmp_path: Path) -> None:
    spec = schedule_spec("fit", {"kind": "cosine", "final_fraction": 0.5}, epochs=2)
    result = train(spec)
    scale = regularizers.penalty_scale(result.model)
    assert float(keras.ops.convert_to_numpy(scale)) == pytest.approx(0.5)
    path = tmp_path / "model.keras"
    result.model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.linspace(-1, 1, 8, dtype="float32").reshape(-1, 1)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), result.model.predict(x, verbose=0))
    penalty = loaded.get_layer("dense_0").kernel_regularizer
    assert isinstance(penalty, regularizers.Scheduled)
    assert isinstance(penalty.regularizer, regularizers.L2)
    assert math.isclose(penalty.regularizer.l2, L2)
