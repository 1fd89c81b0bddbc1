"""A stand-in `nvidia-smi` for hosts without a GPU: a shell script that prints what the
test wrote in its folder, so that a test changes what the "GPUs" hold while a worker
reads them. It answers `-L`, `--query-gpu=...` and `--query-compute-apps=...` in
nvidia-smi's csv,noheader,nounits format, and logs every call."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SCRIPT = """#!/bin/sh
here=$(dirname "$0")
echo "$*" >> "$here/calls.log"
case "$*" in
  *--query-gpu=*) cat "$here/gpus.csv" ;;
  *--query-compute-apps=*) cat "$here/apps.csv" ;;
  -L) while IFS=, read -r index uuid name rest; do
        echo "GPU $index:$name (UUID:$uuid)"
      done < "$here/gpus.csv" ;;
  *) echo "stand-in nvidia-smi: unknown arguments $*" >&2; exit 2 ;;
esac
"""
H100 = "NVIDIA H100 80GB HBM3"


def uuid(index: int) -> str:
    return f"GPU-5a1d0000-0000-4000-8000-{index:012d}"


@dataclass
class StandInSmi:
    """The script's folder (put it first on PATH) and the GPUs and processes it shows."""

    folder: Path

    @classmethod
    def create(cls, folder: Path) -> StandInSmi:
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / "nvidia-smi"
        script.write_text(SCRIPT)
        script.chmod(0o755)
        standin = cls(folder)
        standin.set_gpus([])
        standin.set_apps([])
        return standin

    @property
    def path(self) -> str:
        """PATH with the stand-in first."""
        return f"{self.folder}{os.pathsep}{os.environ.get('PATH', '')}"

    def set_gpus(self, gpus: list[tuple[int, float, float, float]], name: str = H100) -> None:
        """GPUs as (index, memory used MiB, memory total MiB, utilization %)."""
        lines = [
            f"{index}, {uuid(index)}, {name}, {used:.0f}, {total:.0f}, {utilization:.0f}\n"
            for index, used, total, utilization in gpus
        ]
        self._write("gpus.csv", "".join(lines))

    def set_apps(self, apps: list[tuple[int, int, float]]) -> None:
        """Compute processes as (pid, GPU index, used memory MiB)."""
        lines = [f"{pid}, {uuid(index)}, {used:.0f}\n" for pid, index, used in apps]
        self._write("apps.csv", "".join(lines))

    def calls(self) -> list[str]:
        log = self.folder / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def _write(self, name: str, text: str) -> None:
        # Whole files replaced at once: a reader never sees half of one.
        partial = self.folder / f".{name}.part"
        partial.write_text(text)
        partial.replace(self.folder / name)
