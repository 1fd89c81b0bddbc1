"""A run that runs out of memory on a GPU says which GPU and how much of its memory was
free, and is retryable (the server requeues it for another slot, or for this one once
the GPU frees up); on the CPU it stays the run's own failure. The run's device names the
host's GPU by index and UUID. A stand-in nvidia-smi shows the GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from tests.worker.standin_smi import H100, StandInSmi, uuid
from worker.jobs import describe_error, failure, gpu_device

OOM = "OOM when allocating tensor with shape[4096,4096] and type float"


def oom() -> BaseException:
    return tf.errors.ResourceExhaustedError(None, None, OOM)


@pytest.fixture
def gpu_slot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandInSmi:
    """A child's environment on the slot of GPU 1 (worker.children sets these)."""
    standin = StandInSmi.create(tmp_path / "smi")
    standin.set_gpus([(0, 500, 81559, 0), (1, 80747, 81559, 100)])
    monkeypatch.setenv("PATH", standin.path)
    monkeypatch.setenv("REGLAB_GPU_INDEX", "1")
    monkeypatch.setenv("REGLAB_GPU_UUID", uuid(1))
    return standin


def test_an_out_of_memory_failure_names_the_gpu_and_its_free_memory(gpu_slot: StandInSmi) -> None:
    outcome = failure(oom(), 3)
    assert outcome == {
        "status": "failed",
        "error": f"out of memory on GPU 1 ({H100}, {uuid(1)}): 812 MiB of 81559 MiB free: "
        f"ResourceExhaustedError: {OOM}",
        "error_epoch": 3,
        "retryable": True,
    }
    assert describe_error(MemoryError()).startswith(f"out of memory on GPU 1 ({H100}")


def test_without_nvidia_smi_the_gpu_is_still_named(
    gpu_slot: StandInSmi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert describe_error(oom()) == (
        f"out of memory on GPU 1 ({uuid(1)}): free memory unknown: ResourceExhaustedError: {OOM}"
    )


def test_another_failure_on_a_gpu_is_the_run_s_own(gpu_slot: StandInSmi) -> None:
    assert failure(ValueError("bad shape"), 0) == {
        "status": "failed",
        "error": "ValueError: bad shape",
        "error_epoch": 0,
    }


def test_out_of_memory_on_the_cpu_is_the_run_s_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGLAB_GPU_INDEX", raising=False)
    monkeypatch.delenv("REGLAB_GPU_UUID", raising=False)
    assert failure(oom(), 0) == {
        "status": "failed",
        "error": f"out of memory: ResourceExhaustedError: {OOM}",
        "error_epoch": 0,
    }


def test_a_run_s_device_names_the_host_s_gpu_by_index_and_uuid(gpu_slot: StandInSmi) -> None:
    assert gpu_device(H100, "tensorflow") == f"GPU:1 {H100} {uuid(1)} (tensorflow)"
    assert gpu_device("NVIDIA H100 80GB HBM3", "jax") == f"GPU:1 {H100} {uuid(1)} (jax)"


def test_a_gpu_the_supervisor_did_not_name_keeps_the_framework_s_number(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REGLAB_GPU_INDEX", raising=False)
    assert gpu_device("Tesla T4", "tensorflow") == "GPU:0 Tesla T4 (tensorflow)"
