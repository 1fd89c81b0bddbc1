"""Finding GPUs, reading their state, planning slots and judging whether a slot may claim,
on stand-in device lists and a stand-in nvidia-smi (this machine has no GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.worker.standin_smi import H100, StandInSmi, uuid
from worker.children import child_environment
from worker.devices import (
    Availability,
    ComputeApp,
    Gpu,
    GpuMonitor,
    GpuState,
    Slot,
    availability,
    describe_gpu_memory,
    detect_gpus,
    parse_compute_apps,
    parse_gpu_query,
    parse_nvidia_smi,
    plan_slots,
    query_gpus,
)

NVIDIA_SMI = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0f1c2e3d-aaaa-bbbb-cccc-000000000000)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-0f1c2e3d-aaaa-bbbb-cccc-000000000001)
  MIG 1g.10gb     Device  0: (UUID: MIG-1234)
GPU 2: Tesla T4 (UUID: GPU-2)
"""
GPUS = parse_nvidia_smi(NVIDIA_SMI)


def test_parse_nvidia_smi() -> None:
    assert [
        Gpu(0, "NVIDIA H100 80GB HBM3", "GPU-0f1c2e3d-aaaa-bbbb-cccc-000000000000"),
        Gpu(1, "NVIDIA H100 80GB HBM3", "GPU-0f1c2e3d-aaaa-bbbb-cccc-000000000001"),
        Gpu(2, "Tesla T4", "GPU-2"),
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


# --- the GPUs' state, read from a stand-in nvidia-smi ----------------------------------


@pytest.fixture
def smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StandInSmi:
    """A stand-in nvidia-smi first on PATH, showing what each test sets."""
    standin = StandInSmi.create(tmp_path / "smi")
    monkeypatch.setenv("PATH", standin.path)
    return standin


def test_parse_gpu_query_reads_numbers_and_not_reported_fields() -> None:
    output = (
        "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 70213, 81559, 97\n"
        "1, GPU-bbbb, NVIDIA A100-SXM4-40GB MIG 3g.20gb, [N/A], [N/A], [Not Supported]\n"
        "2, GPU-cccc, Odd, Name, With Commas, 1, 16384, 0\n"
        "garbage line\n"
    )
    assert parse_gpu_query(output) == [
        GpuState(0, "GPU-aaaa", "NVIDIA H100 80GB HBM3", 70213.0, 81559.0, 97.0),
        GpuState(1, "GPU-bbbb", "NVIDIA A100-SXM4-40GB MIG 3g.20gb", None, None, None),
        GpuState(2, "GPU-cccc", "Odd, Name, With Commas", 1.0, 16384.0, 0.0),
    ]
    assert parse_gpu_query(output)[0].free_mb == 81559.0 - 70213.0
    assert parse_gpu_query(output)[1].free_mb is None


def test_parse_compute_apps() -> None:
    output = "4242, GPU-aaaa, 70000\n5151, GPU-bbbb, [N/A]\nNo running processes found\n"
    assert parse_compute_apps(output) == [
        ComputeApp(4242, "GPU-aaaa", 70000.0),
        ComputeApp(5151, "GPU-bbbb", None),
    ]


def test_detect_gpus_reads_index_uuid_and_name(smi: StandInSmi) -> None:
    smi.set_gpus([(0, 500, 81559, 0), (1, 500, 81559, 3)])
    assert detect_gpus() == [Gpu(0, H100, uuid(0)), Gpu(1, H100, uuid(1))]
    snapshot = query_gpus()
    assert snapshot is not None
    assert [(gpu.index, gpu.free_mb, gpu.utilization_percent) for gpu in snapshot.gpus] == [
        (0, 81059.0, 0.0),
        (1, 81059.0, 3.0),
    ]


def test_a_host_without_nvidia_smi_gets_one_cpu_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert query_gpus() is None
    assert plan_slots(detect_gpus(), "all", slots_per_gpu=2) == [Slot("CPU", "-1")]
    cpu = plan_slots(detect_gpus())[0]
    assert availability(cpu, query_gpus(), own_pids=set()) == Availability(True)


def test_a_host_whose_nvidia_smi_shows_no_gpu_gets_one_cpu_slot(smi: StandInSmi) -> None:
    assert detect_gpus() == []
    assert plan_slots(detect_gpus()) == [Slot("CPU", "-1")]


def test_two_slots_per_gpu_share_it_with_memory_growth(smi: StandInSmi) -> None:
    smi.set_gpus([(0, 500, 81559, 0), (1, 500, 81559, 0)])
    slots = plan_slots(detect_gpus(), "0", slots_per_gpu=2)
    assert [slot.name for slot in slots] == [f"GPU 0: {H100} #1", f"GPU 0: {H100} #2"]
    for slot in slots:
        assert slot.env == {
            "CUDA_VISIBLE_DEVICES": "0",
            "TF_FORCE_GPU_ALLOW_GROWTH": "true",
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        }
        assert (slot.gpu_uuid, slot.gpu_index, slot.shared) == (uuid(0), 0, True)
    # One slot per GPU takes the card alone: no growth asked for in its environment.
    assert plan_slots(detect_gpus(), "1")[0].env == {"CUDA_VISIBLE_DEVICES": "1"}
    with pytest.raises(ValueError):
        plan_slots(detect_gpus(), "all", slots_per_gpu=0)


def test_children_of_shared_slots_get_their_gpu_and_memory_growth(smi: StandInSmi) -> None:
    smi.set_gpus([(0, 500, 81559, 0)])
    first, second = plan_slots(detect_gpus(), "all", slots_per_gpu=2)
    base = {"PATH": "/usr/bin", "REGLAB_GPU_UUID": "inherited", "TF_CPP_MIN_LOG_LEVEL": "1"}
    for slot in (first, second):
        env = child_environment(slot, base)
        assert env["CUDA_VISIBLE_DEVICES"] == "0"
        assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
        assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
        assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # numbered as nvidia-smi numbers them
        assert (env["REGLAB_GPU_INDEX"], env["REGLAB_GPU_UUID"]) == ("0", uuid(0))
        assert env["REGLAB_GPU_NAME"] == H100
        assert (env["PATH"], env["TF_CPP_MIN_LOG_LEVEL"]) == ("/usr/bin", "1")
    cpu = child_environment(Slot("CPU", "-1"), base)
    assert cpu["CUDA_VISIBLE_DEVICES"] == "-1"
    assert "REGLAB_GPU_UUID" not in cpu and "TF_FORCE_GPU_ALLOW_GROWTH" not in cpu


def test_choosing_gpus_by_uuid(smi: StandInSmi) -> None:
    smi.set_gpus([(0, 500, 81559, 0), (1, 500, 81559, 0)])
    slots = plan_slots(detect_gpus(), f"{uuid(1)},0")
    assert [(slot.cuda_visible_devices, slot.gpu_uuid) for slot in slots] == [
        ("1", uuid(1)),
        ("0", uuid(0)),
    ]
    with pytest.raises(ValueError, match="no GPU GPU-nope"):
        plan_slots(detect_gpus(), "GPU-nope")


def test_a_gpu_with_enough_free_memory_and_no_other_process_is_available(
    smi: StandInSmi,
) -> None:
    smi.set_gpus([(0, 79000, 81559, 10)])
    slot = plan_slots(detect_gpus())[0]
    verdict = availability(slot, query_gpus(), own_pids=set(), min_free_mb=2048)
    assert verdict == Availability(True, None, 2559.0)


def test_a_gpu_short_of_memory_is_busy(smi: StandInSmi) -> None:
    smi.set_gpus([(0, 80000, 81559, 10)])
    slot = plan_slots(detect_gpus())[0]
    verdict = availability(slot, query_gpus(), own_pids=set(), min_free_mb=2048)
    assert not verdict.available and verdict.cause == "memory"
    assert verdict.reason == "GPU busy: 1559 MiB free of 81559 MiB (needs 2048 MiB)"
    assert availability(slot, query_gpus(), own_pids=set(), min_free_mb=1024).available


def test_a_foreign_process_makes_a_gpu_unavailable(smi: StandInSmi) -> None:
    smi.set_gpus([(0, 1500, 81559, 40), (1, 500, 81559, 0)])
    smi.set_apps([(4242, 0, 1000)])
    gpu0, gpu1 = plan_slots(detect_gpus())
    verdict = availability(gpu0, query_gpus(), own_pids={7, 8})
    assert not verdict.available and verdict.cause == "process"
    assert verdict.reason == "GPU busy: another process (pid 4242, 1000 MiB) uses it"
    assert availability(gpu1, query_gpus(), own_pids={7, 8}).available  # not on GPU 1
    # REGLAB_GPU_SHARE=1: the process may stay, as long as enough memory is free.
    assert availability(gpu0, query_gpus(), own_pids=set(), share=True).available
    smi.set_apps([])
    assert availability(gpu0, query_gpus(), own_pids={7, 8}).available


def test_the_worker_s_own_children_are_not_foreign_and_a_slot_s_own_memory_counts_free(
    smi: StandInSmi,
) -> None:
    smi.set_gpus([(0, 80500, 81559, 90)])
    smi.set_apps([(101, 0, 40000), (202, 0, 40000)])  # one child per slot, two slots
    first, second = plan_slots(detect_gpus(), slots_per_gpu=2)
    snapshot = query_gpus()
    # Slot 1's own child (pid 101) gives its memory back to the run it trains next.
    verdict = availability(first, snapshot, own_pids={101, 202}, slot_pids={101})
    assert verdict == Availability(True, None, 41059.0)
    # Without the credit, only 1059 MiB are free: the sibling's memory is really in use.
    busy = availability(second, snapshot, own_pids={101, 202}, slot_pids=set())
    assert not busy.available and busy.cause == "memory"
    # A process that is not one of the worker's children is foreign.
    assert availability(first, snapshot, own_pids={101}, slot_pids={101}).cause == "process"


def test_a_gpu_nvidia_smi_cannot_describe_is_taken_as_available(smi: StandInSmi) -> None:
    smi.set_gpus([(0, 500, 81559, 0)])
    slot = plan_slots(detect_gpus())[0]
    assert availability(slot, None, own_pids=set()).available
    smi.set_gpus([])  # the GPU vanished from the listing (reset, MIG change)
    assert availability(slot, query_gpus(), own_pids=set()).available


def test_the_monitor_shares_one_reading_between_slots(smi: StandInSmi) -> None:
    smi.set_gpus([(0, 500, 81559, 0)])
    monitor = GpuMonitor()
    first = monitor.snapshot(max_age=60)
    assert first is not None and monitor.snapshot(max_age=60) is first
    queries = [call for call in smi.calls() if call.startswith("--query-gpu")]
    assert len(queries) == 1
    smi.set_gpus([(0, 9000, 81559, 50)])
    fresh = monitor.snapshot(max_age=0)
    assert fresh is not None and fresh.gpus[0].memory_used_mb == 9000
    assert GpuMonitor(enabled=False).snapshot() is None


def test_describe_gpu_memory_names_the_gpu_and_its_free_memory(smi: StandInSmi) -> None:
    smi.set_gpus([(0, 500, 81559, 0), (1, 80747, 81559, 99)])
    assert describe_gpu_memory(1, uuid(1)) == (
        f"GPU 1 ({H100}, {uuid(1)}): 812 MiB of 81559 MiB free"
    )
    assert describe_gpu_memory(0, "") == f"GPU 0 ({H100}, {uuid(0)}): 81059 MiB of 81559 MiB free"
    assert describe_gpu_memory(5, "GPU-gone") is None
