"""A training child process as its supervisor sees it: spawn it, hand it jobs, hear what
it says on its protocol pipe, and end it (EOF when idle, SIGTERM then SIGKILL otherwise).

A child trains one job after another (worker/child.py); `jobs` counts what it was given,
`done` is set when it reports the current job finished, with its resident memory then.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from worker.devices import Slot


@dataclass
class Child:
    """A training child process and what it has said on its protocol pipe."""

    process: subprocess.Popen[str]
    notices: subprocess.Popen[bytes] | None = None  # the filter on its stderr, if any
    ready: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)  # the current job ended
    started: dict[str, Any] | None = None  # what the current job's "started" said
    finishing: bool = False  # the current job has begun reporting its end to the server
    finished: dict[str, Any] | None = None  # what the current job's "finished" said
    jobs: int = 0  # jobs handed to this child so far
    first_memory_mb: float | None = None  # resident memory after its first job

    @classmethod
    def spawn(cls, slot: Slot) -> Child:
        env = child_environment(slot)
        notices = None if env["TF_CPP_MIN_LOG_LEVEL"] == "0" else quiet_start_up_notices(slot)
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=notices.stdin if notices is not None else None,
            text=True,
            env=env,
            # Keep Ctrl-C for the supervisor, which stops children in order.
            start_new_session=True,
        )
        if notices is not None and notices.stdin is not None:
            notices.stdin.close()  # the child holds the only writing end: EOF when it ends
        child = cls(process, notices)
        threading.Thread(target=child._read, daemon=True, name=f"child-{process.pid}").start()
        return child

    def _read(self) -> None:
        stream: IO[str] | None = self.process.stdout
        assert stream is not None
        for line in stream:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            event = message.pop("event", None)
            if event == "ready":
                self.ready.set()
            elif event == "started":
                self.started = message
            elif event == "finishing":
                self.finishing = True
            elif event == "finished":
                self.finished = message
                if self.first_memory_mb is None:
                    self.first_memory_mb = float(message.get("memory_mb") or 0.0)
                self.done.set()
        if self.notices is not None:  # reap the filter once the child's stderr closes
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.notices.wait(30)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def pid(self) -> int:
        return self.process.pid

    def memory_growth_mb(self) -> float:
        """How much its resident memory grew since its first job ended."""
        if self.finished is None or self.first_memory_mb is None:
            return 0.0
        return float(self.finished.get("memory_mb") or 0.0) - self.first_memory_mb

    def send(self, job: dict[str, Any]) -> bool:
        """Hand over a job; False when the child is gone."""
        self.started, self.finished, self.finishing = None, None, False
        self.done.clear()
        self.jobs += 1
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(job) + "\n")
            stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def stop(self, grace: float = 3.0) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def close_idle(self) -> None:
        """End a child between jobs (EOF on its stdin), killing it if it lingers."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.stop()


def child_environment(slot: Slot, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child on `slot`: the worker's own (`base`, by default), its GPU
    (CUDA numbering the GPUs as nvidia-smi does, by PCI bus), memory growth where the GPU
    is shared, and the GPU's index and UUID for the child to name it in its device and
    out-of-memory messages."""
    base = os.environ if base is None else base
    env = {
        **base,
        **slot.env,
        # Quiet by default; a level the worker's environment sets wins.
        "TF_CPP_MIN_LOG_LEVEL": base.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        # The child watches this pid and exits when it is gone (see worker.child).
        "REGLAB_SUPERVISOR_PID": str(os.getpid()),
    }
    for name in ("REGLAB_GPU_INDEX", "REGLAB_GPU_UUID", "REGLAB_GPU_NAME"):
        env.pop(name, None)  # a worker started from a child's environment has its own
    if slot.gpu:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["REGLAB_GPU_INDEX"] = slot.cuda_visible_devices
        env["REGLAB_GPU_UUID"] = slot.gpu_uuid
        env["REGLAB_GPU_NAME"] = slot.gpu_name
    return env


def quiet_start_up_notices(slot: Slot) -> subprocess.Popen[bytes]:
    """A filter process (worker/notices.py) for a child's stderr, writing to ours: it
    leaves out TensorFlow's known harmless start-up lines and passes everything else.
    A process of its own, not a thread here, so that what a child says after its
    supervisor died (it stops, and says why) still reaches the worker's log."""
    return subprocess.Popen(
        [sys.executable, "-m", "worker.notices", *(["--gpu"] if slot.gpu else [])],
        stdin=subprocess.PIPE,
        stdout=2,  # the supervisor's stderr, where the child's would have gone
        start_new_session=True,  # Ctrl-C is the supervisor's; this ends at EOF
    )


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
