"""TensorFlow's harmless start-up notices are left out of a training child's stderr;
everything else it prints, a real error above all, still reaches the worker's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from worker.children import Child
from worker.devices import Slot
from worker.notices import is_start_up_notice

# As a CPU host's child prints them (TensorFlow 2.21, TF_CPP_MIN_LOG_LEVEL 0 to 2).
NOTICES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796533106.391515   21788 cudart_stub.cc:31] Could not find cuda drivers "
    "on your machine, GPU will not be used.",
    "I0000 00:00:1796533113.570357   21846 cpu_feature_guard.cc:227] This TensorFlow binary "
    "is optimized to use available CPU instructions in performance-critical operations.",
    "I0000 00:00:1796562153.672708   20623 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results due to floating-point round-off "
    "errors from different computation orders. To turn them off, set the environment "
    "variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1730000000.000000    1234 cuda_dnn.cc:8310] Unable to register cuDNN "
    "factory: Attempting to register factory for plugin cuDNN when one has already been "
    "registered",
]
CUINIT = (
    "E0000 00:00:1796533111.519687   21788 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)"
)
REAL = [
    "E0000 00:00:1796533111.519687   21788 bfc_allocator.cc:485] Allocator ran out of memory",
    "Traceback (most recent call last):",
    '  File "/app/worker/child.py", line 1, in <module>',
    "RuntimeError: boom",
    "2026-01-01 12:00:00,000 child ERROR experiment 3 failed",
]


@pytest.mark.parametrize("line", NOTICES)
def test_the_known_notices_are_harmless_anywhere(line: str) -> None:
    assert is_start_up_notice(line, gpu=False) and is_start_up_notice(line, gpu=True)


@pytest.mark.parametrize("line", REAL)
def test_a_real_error_is_no_notice(line: str) -> None:
    assert not is_start_up_notice(line, gpu=False) and not is_start_up_notice(line, gpu=True)


def test_a_failed_cuinit_is_harmless_only_where_no_gpu_was_meant() -> None:
    assert is_start_up_notice(CUINIT, gpu=False)
    assert not is_start_up_notice(CUINIT, gpu=True)


def test_the_filter_process_passes_everything_else_in_order() -> None:
    lines = [NOTICES[0], REAL[0], CUINIT, *NOTICES[1:], *REAL[1:]]
    result = subprocess.run(
        [sys.executable, "-m", "worker.notices"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == REAL
    on_a_gpu = subprocess.run(
        [sys.executable, "-m", "worker.notices", "--gpu"],
        input=CUINIT + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert on_a_gpu.stdout.splitlines() == [CUINIT]


@pytest.mark.parametrize("level", [None, "0"])
def test_a_real_child_warms_up_quietly_unless_asked_for_everything(
    level: str | None, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if level is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # the worker's default
    else:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
    child = Child.spawn(Slot(name="CPU", cuda_visible_devices="-1"))
    try:
        assert child.ready.wait(120), "the child never got ready"
    finally:
        child.close_idle()
    assert child.process.returncode == 0
    err = capfd.readouterr().err
    if level is None:
        assert child.notices is not None and child.notices.wait(30) == 0
        for notice in ("failed call to cuInit", "cudart_stub", "absl::InitializeLog"):
            assert notice not in err
    else:  # TF_CPP_MIN_LOG_LEVEL=0: no filter, TensorFlow says all it has to say
        assert child.notices is None
        assert "failed call to cuInit" in err and "cudart_stub" in err
