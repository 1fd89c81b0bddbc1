"""Finding the host's GPUs without importing a framework, and planning one slot per GPU."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

_NVIDIA_SMI_LINE = re.compile(r"^GPU (\d+): (.+?)(?: \(UUID: [^)]*\))?$")


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str


@dataclass(frozen=True)
class Slot:
    """Where one training child runs: a GPU (by CUDA index) or the CPU."""

    name: str
    cuda_visible_devices: str  # "-1" hides every GPU from a CPU slot's children

    @property
    def gpu(self) -> bool:
        """Whether this slot's children see a GPU."""
        return self.cuda_visible_devices != "-1"

    @property
    def env(self) -> dict[str, str]:
        return {"CUDA_VISIBLE_DEVICES": self.cuda_visible_devices}


def parse_nvidia_smi(output: str) -> list[Gpu]:
    """Parse `nvidia-smi -L`: 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-…)' per line."""
    gpus = []
    for line in output.splitlines():
        match = _NVIDIA_SMI_LINE.match(line.strip())
        if match:
            gpus.append(Gpu(int(match.group(1)), match.group(2).strip()))
    return gpus


def detect_gpus(timeout: float = 10.0) -> list[Gpu]:
    """The host's NVIDIA GPUs, or none where nvidia-smi is missing or fails."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return []
    try:
        result = subprocess.run(
            [executable, "-L"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi(result.stdout) if result.returncode == 0 else []


def plan_slots(gpus: list[Gpu], choice: str = "all") -> list[Slot]:
    """One slot per chosen GPU, or one CPU slot where there is none.

    `choice` is "all", "none", or a comma-separated list of GPU indices ("0,2").
    """
    choice = choice.strip().lower()
    if choice == "none":
        chosen: list[Gpu] = []
    elif choice == "all":
        chosen = list(gpus)
    else:
        try:
            wanted = [int(part) for part in choice.split(",") if part.strip()]
        except ValueError:
            raise ValueError(
                f"--gpus must be all, none or indices like 0,1; got {choice!r}"
            ) from None
        known = {gpu.index: gpu for gpu in gpus}
        missing = [index for index in wanted if index not in known]
        if missing:
            raise ValueError(f"no GPU with index {missing} on this host (found {sorted(known)})")
        chosen = [known[index] for index in dict.fromkeys(wanted)]
    if not chosen:
        return [Slot(name="CPU", cuda_visible_devices="-1")]
    return [
        Slot(name=f"GPU {gpu.index}: {gpu.name}", cuda_visible_devices=str(gpu.index))
        for gpu in chosen
    ]
