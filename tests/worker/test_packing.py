"""Packed members train exactly as their separate runs: same seed, split, batch order and
initial weights, so the same curves (to float rounding) in both engines."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from app.spec import ExperimentSpec, pack_signature
from worker.packing import MemberResult, PackTrainer, check_packable
from worker.training import TrainingResult, train

EPOCHS = 10


def mlp_spec(
    l2: float = 0.0,
    dropout: float = 0.0,
    *,
    loop: str = "fit",
    seed: int = 0,
    epochs: int = EPOCHS,
    **training: Any,
) -> ExperimentSpec:
    """The seed's MLP (Dense 64/32, L2 on each kernel) on 20% of digits."""
    layer = {"regularizer": {"kind": "l2", "l2": l2}, "dropout": dropout}
    return ExperimentSpec.model_validate(
        {
            "name": f"l2={l2} dropout={dropout}",
            "dataset": {"name": "digits", "train_fraction": 0.2},
            "model": {
                "layers": [
                    {"type": "dense", "units": 64, **layer},
                    {"type": "dense", "units": 32, **layer},
                ]
            },
            "training": {
                "epochs": epochs,
                "batch_size": 32,
                "seed": seed,
                "loop": loop,
                "histogram_every": 0,
                **training,
            },
        }
    )


class Recorder:
    """A PackObserver that keeps what the trainer reports and can stop members."""

    def __init__(self, stop: dict[int, int] | None = None) -> None:
        self.stop = stop or {}  # member → stop it after this epoch
        self.epochs: dict[int, list[int]] = {}
        self.kernels: dict[int, list[str]] = {}
        self.ended: list[MemberResult] = []
        self.last_epoch: dict[int, int] = {}

    def member_epoch(
        self, index: int, epoch: int, logs: dict[str, float], kernels: list[tuple[str, Any]]
    ) -> None:
        self.epochs.setdefault(index, []).append(epoch)
        self.kernels[index] = [name for name, _ in kernels]
        self.last_epoch[index] = epoch

    def member_end(self, result: MemberResult) -> None:
        self.ended.append(result)

    def stop_requested(self, index: int) -> bool:
        return index in self.stop and self.last_epoch.get(index, -1) >= self.stop[index]


@functools.cache
def separate(spec_json: str) -> TrainingResult:
    return train(ExperimentSpec.model_validate_json(spec_json))


def assert_same_curves(member: MemberResult, alone: TrainingResult, rtol: float = 1e-5) -> None:
    """Per epoch, equal to `rtol` relative; `reg_loss` (loss - data_loss, which float
    rounding leaves at ±2e-7 where it is 0) relative to the loss it is part of."""
    scale = float(np.max(np.abs(alone.history["loss"])))
    for name in ("loss", "data_loss", "val_loss", "val_data_loss", "reg_loss", "accuracy"):
        packed, single = np.array(member.history[name]), np.array(alone.history[name])
        assert packed.shape == single.shape, name
        atol = rtol * scale if name == "reg_loss" else 1e-7
        np.testing.assert_allclose(packed, single, rtol=rtol, atol=atol, err_msg=name)


LAMBDAS = (0.0, 1e-3, 1e-1)


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_packed_lambda_sweep_equals_separate_runs(loop: str) -> None:
    specs = [mlp_spec(l2, loop=loop) for l2 in LAMBDAS]
    recorder = Recorder()
    results = PackTrainer(specs, recorder).train()
    assert [result.index for result in results] == list(range(len(specs)))
    for spec, member in zip(specs, results, strict=True):
        alone = separate(spec.model_dump_json())
        assert member.epochs_completed == EPOCHS
        assert_same_curves(member, alone)
        for name, value in alone.test_metrics.items():
            assert member.test_metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-7)
        assert member.best_epoch == alone.best_epoch
    # Stronger penalties: larger penalty, as the λ axis says.
    last_reg = [result.history["reg_loss"][-1] for result in results]
    assert last_reg[0] == 0.0 and last_reg == sorted(last_reg)
    assert recorder.kernels[0] == ["dense_0", "dense_1", "output"]


def test_member_model_loads_as_a_plain_model_with_its_test_metrics(tmp_path: Path) -> None:
    specs = [mlp_spec(l2, epochs=3) for l2 in (0.0, 1e-2)]
    results = PackTrainer(specs, Recorder()).train()
    for spec, member in zip(specs, results, strict=True):
        path = tmp_path / f"member-{member.index}.keras"
        member.model.save(path)
        loaded = keras.saving.load_model(path)
        assert not any("pack" in type(layer).__name__.lower() for layer in loaded.layers)
        from worker.builders import input_layout
        from worker.datasets import load_dataset

        splits = load_dataset(spec.dataset, spec.training.seed, input_layout(spec))
        scores = loaded.evaluate(
            splits.x_test, splits.y_test, batch_size=32, verbose=0, return_dict=True
        )
        assert scores["loss"] == pytest.approx(member.test_metrics["test_loss"], rel=1e-5)
        assert scores["accuracy"] == pytest.approx(member.test_metrics["test_accuracy"])


def test_dropout_per_member() -> None:
    """A member with rate 0 equals its separate run; a member with rate > 0 differs."""
    specs = [mlp_spec(1e-3, dropout=0.0, epochs=4), mlp_spec(1e-3, dropout=0.5, epochs=4)]
    results = PackTrainer(specs, Recorder()).train()
    assert_same_curves(results[0], separate(specs[0].model_dump_json()))
    alone = separate(specs[1].model_dump_json())
    assert not np.allclose(results[1].history["data_loss"], alone.history["data_loss"])
    # Dropout is on while training only: the training data loss of the dropout member is
    # measured with it, the validation one without.
    assert results[1].history["data_loss"][-1] > results[0].history["data_loss"][-1]


def test_early_stopping_acts_per_member() -> None:
    patient = {"patience": 1, "min_delta": 10.0}  # never "improves" by 10: stops after 2
    specs = [
        mlp_spec(0.0, epochs=6),
        mlp_spec(1e-3, epochs=6, early_stopping=patient),
    ]
    recorder = Recorder()
    results = PackTrainer(specs, recorder).train()
    assert recorder.epochs[0] == list(range(6))
    assert recorder.epochs[1] == [0, 1]
    assert results[1].stopped_epoch == 1 and results[1].test_metrics["stopped_epoch"] == 1.0
    # The stopped member ended first, while the other went on; both have test metrics.
    assert [result.index for result in recorder.ended] == [1, 0]
    assert_same_curves(results[1], separate(specs[1].model_dump_json()))
    assert results[1].test_metrics.keys() >= {"test_loss", "test_data_loss", "test_accuracy"}


def test_a_member_stopped_from_outside_ends_alone() -> None:
    specs = [mlp_spec(l2, epochs=5) for l2 in (0.0, 1e-3, 1e-2)]
    recorder = Recorder(stop={1: 1})
    results = PackTrainer(specs, recorder).train()
    assert recorder.epochs[1] == [0, 1]
    assert results[1].stopped_by == "cancelled" and results[1].test_metrics == {}
    assert recorder.epochs[0] == recorder.epochs[2] == list(range(5))
    assert_same_curves(results[2], separate(specs[2].model_dump_json()))


def test_a_diverging_member_fails_alone() -> None:
    # Plain SGD at 0.1: fine without a penalty; with L2 100 each step multiplies the
    # weights by -19, so that member's loss overflows within a few epochs.
    specs = [mlp_spec(l2, epochs=4, optimizer="sgd", learning_rate=0.1) for l2 in (0.0, 100.0)]
    recorder = Recorder()
    results = PackTrainer(specs, recorder).train()
    assert results[1].error is not None and results[1].epochs_completed < 4
    assert results[1].error.epoch == results[1].epochs_completed
    assert results[0].error is None and results[0].epochs_completed == 4
    assert_same_curves(results[0], separate(specs[0].model_dump_json()))
    assert np.isfinite(results[0].test_metrics["test_loss"])


def test_schedule_and_conv_pack() -> None:
    """A conv2d network with pooling and a warm-up schedule packs too."""

    def conv(l2: float) -> ExperimentSpec:
        return ExperimentSpec.model_validate(
            {
                "name": "conv",
                "dataset": {"name": "digits", "train_fraction": 0.2},
                "model": {
                    "layers": [
                        {
                            "type": "conv2d",
                            "filters": 4,
                            "kernel_size": 3,
                            "pool_size": 2,
                            "regularizer": {"kind": "l2", "l2": l2},
                            "activity_regularizer": {"kind": "l1", "l1": l2 / 10},
                        },
                        {"type": "dense", "units": 8, "bias_regularizer": {"kind": "l1", "l1": l2}},
                    ]
                },
                "training": {
                    "epochs": 3,
                    "batch_size": 64,
                    "histogram_every": 0,
                    "schedule": {"kind": "warmup", "warmup_epochs": 2},
                },
            }
        )

    specs = [conv(0.0), conv(1e-2)]
    results = PackTrainer(specs, Recorder()).train()
    for spec, member in zip(specs, results, strict=True):
        alone = separate(spec.model_dump_json())
        assert_same_curves(member, alone, rtol=2e-5)
        np.testing.assert_allclose(member.history["reg_scale"], alone.history["reg_scale"])


def test_conv1d_smoothness_pack() -> None:
    def series(smoothness: float, rate: float) -> ExperimentSpec:
        return ExperimentSpec.model_validate(
            {
                "name": "series",
                "dataset": {"name": "periodic_series", "n_samples": 200},
                "model": {
                    "layers": [
                        {
                            "type": "conv1d",
                            "filters": 4,
                            "kernel_size": 4,
                            "regularizer": {"kind": "smoothness", "smoothness": smoothness},
                            "dropout": rate,
                        },
                    ]
                },
                "training": {"epochs": 2, "batch_size": 32, "histogram_every": 0},
            }
        )

    specs = [series(0.0, 0.0), series(0.1, 0.0), series(0.1, 0.3)]
    results = PackTrainer(specs, Recorder()).train()
    for spec, member in zip(specs[:2], results[:2], strict=True):
        assert_same_curves(member, separate(spec.model_dump_json()), rtol=2e-5)


def test_what_packs_and_what_does_not() -> None:
    base = mlp_spec(1e-3)
    assert pack_signature(base) == pack_signature(mlp_spec(1e-1, dropout=0.3))
    assert pack_signature(base) != pack_signature(mlp_spec(1e-3, seed=1))
    assert pack_signature(base) != pack_signature(mlp_spec(1e-3, learning_rate=0.01))
    plugin = base.model_dump()
    plugin["model"]["layers"][0]["regularizer"] = {"kind": "plugin", "plugin": "orthogonal"}
    assert pack_signature(ExperimentSpec.model_validate(plugin)) is None
    with pytest.raises(ValueError, match="network shape"):
        check_packable([base, mlp_spec(1e-3, epochs=3)])
