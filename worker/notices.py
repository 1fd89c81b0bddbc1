"""TensorFlow's known harmless start-up notices, left out of a training child's stderr.

Every child prints them as it imports TensorFlow, whatever `TF_CPP_MIN_LOG_LEVEL` says
(they come before absl's logging is set up): 'failed call to cuInit' on a host or slot
with no GPU, cudart_stub's 'Could not find cuda drivers', cpu_feature_guard's note on
CPU instructions, port.cc's note that oneDNN's operations are on, absl's own warning,
and the cuDNN/cuFFT/cuBLAS factories registered twice.

Run as `python -m worker.notices [--gpu]` between a child's stderr and the worker's:
every other line passes through at once, so a real error still shows, and it lives as
long as the child's stderr is open, whatever happens to the supervisor. On a GPU slot a
failed cuInit is a real error, and shows.
"""

from __future__ import annotations

import re
import sys
from typing import BinaryIO

_HARMLESS = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|cudart_stub\.cc:\d+\]"
    r"|cpu_feature_guard\.cc:\d+\]"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|^To enable the following instructions: .* rebuild TensorFlow with the appropriate"
    r"|Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register factory"
)
_NO_GPU = re.compile(r"failed call to cuInit")


def is_start_up_notice(line: str, *, gpu: bool) -> bool:
    """Whether `line` is one of TensorFlow's harmless start-up notices; a failed cuInit
    only where no GPU was meant to be seen (`gpu` False)."""
    return bool(_HARMLESS.search(line)) or (not gpu and bool(_NO_GPU.search(line)))


def relay(source: BinaryIO, sink: BinaryIO, *, gpu: bool) -> None:
    """Copy `source` to `sink` line by line, without the start-up notices, until EOF."""
    for raw in iter(source.readline, b""):
        if is_start_up_notice(raw.decode("utf-8", "replace"), gpu=gpu):
            continue
        sink.write(raw)
        sink.flush()


def main() -> None:
    relay(sys.stdin.buffer, sys.stdout.buffer, gpu="--gpu" in sys.argv[1:])


if __name__ == "__main__":
    main()
