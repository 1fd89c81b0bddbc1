"""The host's GPUs as `nvidia-smi` shows them, without importing a framework: which GPUs
there are, what each one holds now (memory, utilization, compute processes), the slots
planned on them, and whether a slot's GPU is free enough to claim a run.

A GPU is available to a slot while it has at least `min_free_mb` free (memory that this
slot's own children hold counts as free: they give it back) and no compute process runs
on it that is not one of this worker's children, unless sharing is allowed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field

_NVIDIA_SMI_LINE = re.compile(r"^GPU (\d+): (.+?)(?: \(UUID: ([^)]*)\))?$")
GPU_QUERY = "index,uuid,name,memory.used,memory.total,utilization.gpu"
APPS_QUERY = "pid,gpu_uuid,used_memory"
# Children that share a GPU with other slots grow their memory as they need it rather
# than take the whole card at start (TensorFlow, then JAX).
MEMORY_GROWTH_ENV = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    uuid: str = ""


@dataclass(frozen=True)
class GpuState:
    """One GPU as `nvidia-smi --query-gpu` saw it (MiB, percent; None where not reported)."""

    index: int
    uuid: str
    name: str
    memory_used_mb: float | None
    memory_total_mb: float | None
    utilization_percent: float | None

    @property
    def free_mb(self) -> float | None:
        if self.memory_used_mb is None or self.memory_total_mb is None:
            return None
        return max(self.memory_total_mb - self.memory_used_mb, 0.0)


@dataclass(frozen=True)
class ComputeApp:
    """A process with a CUDA context on a GPU (`nvidia-smi --query-compute-apps`)."""

    pid: int
    gpu_uuid: str
    used_memory_mb: float | None


@dataclass(frozen=True)
class GpuSnapshot:
    """What every GPU of the host held at one moment."""

    gpus: list[GpuState]
    apps: list[ComputeApp]
    taken_at: float = field(default_factory=time.monotonic)

    def gpu(self, uuid: str) -> GpuState | None:
        return next((gpu for gpu in self.gpus if gpu.uuid == uuid), None)


@dataclass(frozen=True)
class Slot:
    """Where one training child runs: a GPU (by CUDA index) or the CPU."""

    name: str
    cuda_visible_devices: str  # "-1" hides every GPU from a CPU slot's children
    gpu_uuid: str = ""
    gpu_name: str = ""
    shared: bool = False  # other slots train on the same GPU

    @property
    def gpu(self) -> bool:
        """Whether this slot's children see a GPU."""
        return self.cuda_visible_devices != "-1"

    @property
    def gpu_index(self) -> int | None:
        return int(self.cuda_visible_devices) if self.gpu else None

    @property
    def env(self) -> dict[str, str]:
        """The environment its children need: their GPU, and memory growth when shared."""
        return {
            "CUDA_VISIBLE_DEVICES": self.cuda_visible_devices,
            **(MEMORY_GROWTH_ENV if self.shared else {}),
        }


@dataclass(frozen=True)
class Availability:
    """Whether a slot may claim now, and if not, why (said on the workers page)."""

    available: bool
    reason: str | None = None
    free_mb: float | None = None  # free for this slot, its own children's memory included
    cause: str | None = None  # "process" (a foreign one), "memory", or the caller's own


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


def parse_nvidia_smi(output: str) -> list[Gpu]:
    """Parse `nvidia-smi -L`: 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-…)' per line."""
    gpus = []
    for line in output.splitlines():
        match = _NVIDIA_SMI_LINE.match(line.strip())
        if match:
            gpus.append(Gpu(int(match.group(1)), match.group(2).strip(), match.group(3) or ""))
    return gpus


def parse_gpu_query(output: str) -> list[GpuState]:
    """Parse `--query-gpu=index,uuid,name,memory.used,memory.total,utilization.gpu
    --format=csv,noheader,nounits`; a name may hold commas, the other fields do not."""
    states = []
    for line in output.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 6 or not parts[0].isdigit():
            continue
        used, total, utilization = (_number(part) for part in parts[-3:])
        name = ", ".join(parts[2:-3])
        states.append(GpuState(int(parts[0]), parts[1], name, used, total, utilization))
    return states


def parse_compute_apps(output: str) -> list[ComputeApp]:
    """Parse `--query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits`."""
    apps = []
    for line in output.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        apps.append(ComputeApp(int(parts[0]), parts[1], _number(parts[2])))
    return apps


def _nvidia_smi(*args: str, timeout: float) -> str | None:
    """What nvidia-smi prints for `args`; None where it is missing or fails."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        result = subprocess.run(
            [executable, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def query_gpus(timeout: float = 10.0) -> GpuSnapshot | None:
    """Every GPU's memory and utilization and the compute processes on them now; None
    where nvidia-smi is missing or cannot say."""
    output = _nvidia_smi(
        f"--query-gpu={GPU_QUERY}", "--format=csv,noheader,nounits", timeout=timeout
    )
    if output is None:
        return None
    apps = _nvidia_smi(
        f"--query-compute-apps={APPS_QUERY}", "--format=csv,noheader,nounits", timeout=timeout
    )
    return GpuSnapshot(parse_gpu_query(output), parse_compute_apps(apps or ""))


def detect_gpus(timeout: float = 10.0) -> list[Gpu]:
    """The host's NVIDIA GPUs, or none where nvidia-smi is missing or fails (a driver that
    knows no `--query-gpu` still lists them with `-L`)."""
    snapshot = query_gpus(timeout)
    if snapshot is not None and snapshot.gpus:
        return [Gpu(gpu.index, gpu.name, gpu.uuid) for gpu in snapshot.gpus]
    output = _nvidia_smi("-L", timeout=timeout)
    return parse_nvidia_smi(output) if output is not None else []


def plan_slots(gpus: list[Gpu], choice: str = "all", slots_per_gpu: int = 1) -> list[Slot]:
    """`slots_per_gpu` slots per chosen GPU, or one CPU slot where there is none.

    `choice` is "all", "none", or a comma-separated list of GPU indices or UUIDs ("0,2").
    """
    if slots_per_gpu < 1:
        raise ValueError(f"--slots-per-gpu must be 1 or more; got {slots_per_gpu}")
    choice = choice.strip()
    if choice.lower() == "none":
        chosen: list[Gpu] = []
    elif choice.lower() == "all":
        chosen = list(gpus)
    else:
        known = {str(gpu.index): gpu for gpu in gpus} | {gpu.uuid: gpu for gpu in gpus if gpu.uuid}
        wanted = [part.strip() for part in choice.split(",") if part.strip()]
        if not wanted or not all(part.isdigit() or part.startswith("GPU-") for part in wanted):
            raise ValueError(
                f"--gpus must be all, none, or indices or UUIDs like 0,1; got {choice!r}"
            )
        missing = [part for part in wanted if part not in known]
        if missing:
            found = ", ".join(str(gpu.index) for gpu in gpus) or "none"
            raise ValueError(f"no GPU {', '.join(missing)} on this host (found {found})")
        chosen = list(dict.fromkeys(known[part] for part in wanted))
    if not chosen:
        return [Slot(name="CPU", cuda_visible_devices="-1")]
    shared = slots_per_gpu > 1
    return [
        Slot(
            name=f"GPU {gpu.index}: {gpu.name}" + (f" #{number + 1}" if shared else ""),
            cuda_visible_devices=str(gpu.index),
            gpu_uuid=gpu.uuid,
            gpu_name=gpu.name,
            shared=shared,
        )
        for gpu in chosen
        for number in range(slots_per_gpu)
    ]


def slot_gpu(slot: Slot, snapshot: GpuSnapshot) -> GpuState | None:
    """The state of `slot`'s GPU in `snapshot` (by UUID, else by index)."""
    if slot.gpu_uuid:
        return snapshot.gpu(slot.gpu_uuid)
    return next((gpu for gpu in snapshot.gpus if gpu.index == slot.gpu_index), None)


def availability(
    slot: Slot,
    snapshot: GpuSnapshot | None,
    *,
    own_pids: Collection[int],
    slot_pids: Collection[int] = (),
    min_free_mb: float = 2048.0,
    share: bool = False,
) -> Availability:
    """Whether `slot` may claim a run now, by its GPU's state in `snapshot`.

    `own_pids`: this worker's children (on any slot): their processes are not foreign.
    `slot_pids`: this slot's own children: the memory they hold counts as free, since the
    child that trains the next run is one of them (or replaces them).
    A CPU slot, or a GPU that nvidia-smi cannot describe, is always available.
    """
    if not slot.gpu or snapshot is None:
        return Availability(True)
    gpu = slot_gpu(slot, snapshot)
    if gpu is None or gpu.free_mb is None:
        return Availability(True)
    apps = [app for app in snapshot.apps if app.gpu_uuid == gpu.uuid]
    held = sum(app.used_memory_mb or 0.0 for app in apps if app.pid in slot_pids)
    free = gpu.free_mb + held
    if gpu.memory_total_mb is not None:
        free = min(free, gpu.memory_total_mb)
    foreign = [app for app in apps if app.pid not in own_pids]
    if foreign and not share:
        app = foreign[0]
        memory = f", {app.used_memory_mb:.0f} MiB" if app.used_memory_mb is not None else ""
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        return Availability(
            False,
            f"GPU busy: another process (pid {app.pid}{memory}){more} uses it",
            free,
            "process",
        )
    if free < min_free_mb:
        return Availability(
            False,
            f"GPU busy: {free:.0f} MiB free of {gpu.memory_total_mb:.0f} MiB "
            f"(needs {min_free_mb:.0f} MiB)",
            free,
            "memory",
        )
    return Availability(True, None, free)


class GpuMonitor:
    """Reads the GPUs' state for every slot of a worker: at most one `nvidia-smi` call at
    a time, and a reading younger than `max_age` seconds is shared."""

    def __init__(self, *, enabled: bool = True, timeout: float = 10.0) -> None:
        self.enabled = enabled
        self.timeout = timeout
        self._lock = threading.Lock()
        self._last: GpuSnapshot | None = None

    def snapshot(self, max_age: float = 1.0) -> GpuSnapshot | None:
        """The GPUs now (or as read less than `max_age` seconds ago); None without them."""
        if not self.enabled:
            return None
        with self._lock:
            last = self._last
            if last is None or time.monotonic() - last.taken_at > max_age:
                self._last = last = query_gpus(self.timeout)
            return last


def describe_gpu_memory(index: int | None, uuid: str, timeout: float = 5.0) -> str | None:
    """'GPU 1 (NVIDIA H100 80GB HBM3, GPU-…): 812 MiB of 81559 MiB free' for the GPU with
    this UUID (or index) now; None where nvidia-smi cannot say."""
    snapshot = query_gpus(timeout)
    if snapshot is None:
        return None
    gpu = snapshot.gpu(uuid) if uuid else None
    if gpu is None:
        gpu = next((state for state in snapshot.gpus if state.index == index), None)
    if gpu is None:
        return None
    memory = (
        f"{gpu.free_mb:.0f} MiB of {gpu.memory_total_mb:.0f} MiB free"
        if gpu.free_mb is not None and gpu.memory_total_mb is not None
        else "free memory unknown"
    )
    return f"GPU {gpu.index} ({gpu.name}, {gpu.uuid}): {memory}"
