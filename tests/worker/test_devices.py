"""Finding GPUs and planning slots, on stand-in device lists (this machine has none)."""

from __future__ import annotations

import pytest

from worker.devices import Gpu, Slot, detect_gpus, parse_nvidia_smi, plan_slots

NVIDIA_SMI = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0f1c2e3d-aaaa-bbbb-cccc-000000000000)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-0f1c2e3d-aaaa-bbbb-cccc-000000000001)
  MIG 1g.10gb     Device  0: (UUID: MIG-1234)
GPU 2: Tesla T4 (UUID: GPU-2)
"""
GPUS = parse_nvidia_smi(NVIDIA_SMI)


def test_parse_nvidia_smi() -> None:
    assert [
        Gpu(0, "NVIDIA H100 80GB HBM3"),
        Gpu(1, "NVIDIA H100 80GB HBM3"),
        Gpu(2, "Tesla T4"),
    ] == GPUS


def test_one_slot_per_gpu_each_seeing_only_its_own() -> None:
    slots = plan_slots(GPUS, "all")
    assert [slot.env for slot in slots] == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "1"},
        {"CUDA_VISIBLE_DEVICES": "2"},
    ]
    assert slots[2].name == "GPU 2: Tesla T4"


def test_a_host_without_gpus_gets_one_cpu_slot_that_hides_gpus() -> None:
    assert plan_slots([], "all") == [Slot("CPU", "-1")]
    assert plan_slots(GPUS, "none") == [Slot("CPU", "-1")]


def test_choosing_gpus_by_index() -> None:
    assert [slot.cuda_visible_devices for slot in plan_slots(GPUS, "2,0,2")] == ["2", "0"]


@pytest.mark.parametrize("choice", ["3", "0,7", "gpu0", "1;2"])
def test_bad_choices_are_refused(choice: str) -> None:
    with pytest.raises(ValueError):
        plan_slots(GPUS, choice)


def test_detect_gpus_without_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert detect_gpus() == []
