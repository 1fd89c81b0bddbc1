"""The processes a benchmark starts and watches: a real reglab server, MLflow's tracking
server, a reglab worker, and what /proc says about them (CPU time, children).

Every server runs on a free port with a throw-away SQLite database under /tmp (or a given
database URL), is waited for until its health check answers, and is stopped at the end.
Nothing outside /tmp is written. The benchmarks import these names from `bench._common`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quiet_env(**extra: str) -> dict[str, str]:
    """This environment with TensorFlow's start-up notices hidden and output unbuffered."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def stop_process(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGINT (uvicorn and the worker stop gracefully on it), then SIGKILL; this process only."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()


@dataclass
class Server:
    """`python -m reglab.cli serve` on a free port with a temp SQLite database.

    Use as a context manager; `url` is its base URL. `env` adds REGLAB_* settings (for
    example a long lease, so that a benchmark that sends no heartbeats keeps its runs);
    `database_url` serves another database (a PostgreSQL one) instead of the temp file.
    A subclass serves something else by overriding `command`, `environment` and
    `health_path` (see `MlflowServer`).
    """

    folder_prefix: ClassVar[str] = "reglab-bench-"
    health_path: ClassVar[str] = "/api/health"

    env: dict[str, str] = field(default_factory=dict)
    root: Path = ROOT  # the checkout whose app/ is served (another one to compare a patch)
    database_url: str | None = None
    startup_timeout: float = 60.0
    keep_dir: bool = False
    port: int = 0
    url: str = ""
    folder: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _log: Any = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=self.folder_prefix, dir="/tmp"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (self.folder / "server.log").open("wb")
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.root,
            env=self.environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_healthy()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "reglab.cli", "serve", "--port", str(self.port)]

    def environment(self) -> dict[str, str]:
        assert self.folder is not None
        settings = {
            "REGLAB_DATABASE_URL": self.database_url or f"sqlite:///{self.folder / 'bench.db'}",
            "REGLAB_DATA_DIR": str(self.folder / "data"),
            "REGLAB_SERVER_URL": self.url,
            **self.env,
        }
        return quiet_env(**settings)

    def wait_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited ({self.process.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.health_path, timeout=2.0).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not healthy after {self.startup_timeout:.0f} s")

    def log_tail(self, lines: int = 40) -> str:
        if self.folder is None:
            return ""
        with contextlib.suppress(OSError):
            return "\n".join((self.folder / "server.log").read_text().splitlines()[-lines:])
        return ""

    def error_summary(self, limit: int = 8) -> str:
        """The distinct exception lines of the server's log, with counts."""
        if self.folder is None:
            return ""
        counts: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for text_line in (self.folder / "server.log").read_text().splitlines():
                if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout)\b.*:", text_line) or (
                    " 500 Internal Server Error" in text_line
                ):
                    key = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:*", text_line)[:220]
                    counts[key] = counts.get(key, 0) + 1
        rows = sorted(counts.items(), key=lambda item: -item[1])[:limit]
        return "\n".join(f"  {count:5d} x {text}" for text, count in rows)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.folder is not None and not self.keep_dir:
            shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class MlflowServer(Server):
    """MLflow's tracking server (`mlflow server`, the bench extra) on its own SQLite file.

    One uvicorn worker process, like reglab's server, and no job runner (its huey
    consumer would take CPU from the measured processes). Artifacts go to the temp folder.
    """

    folder_prefix: ClassVar[str] = "reglab-bench-mlflow-"
    health_path: ClassVar[str] = "/health"

    def command(self) -> list[str]:
        assert self.folder is not None
        mlflow = Path(sys.executable).with_name("mlflow")
        return [
            str(mlflow) if mlflow.exists() else "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.folder / 'mlflow.db'}",
            "--default-artifact-root",
            str(self.folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]

    def environment(self) -> dict[str, str]:
        return quiet_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **self.env)


@dataclass
class Worker:
    """`python -m reglab.cli worker --gpus none` (one CPU slot) against a running server.

    Its log goes to `worker.log` in the server's temp folder.
    """

    server: Server
    process: subprocess.Popen[bytes] | None = None
    _log: Any = None

    def __enter__(self) -> Worker:
        assert self.server.folder is not None
        self._log = (self.server.folder / "worker.log").open("wb")
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "reglab.cli", "worker"),
                *("--server", self.server.url, "--gpus", "none"),
            ],
            cwd=self.server.root,
            env=quiet_env(REGLAB_SERVER_URL=self.server.url),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            stop_process(self.process)
        if self._log is not None:
            self._log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def exited(self) -> int | None:
        """The worker's exit code once it has ended, else None."""
        assert self.process is not None
        return self.process.poll()

    def log_text(self) -> str:
        assert self.server.folder is not None
        with contextlib.suppress(OSError):
            return (self.server.folder / "worker.log").read_text()
        return ""


# --- what /proc says ----------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_children() -> dict[int, list[int]]:
    """Every live process's children, by parent pid."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its descendants (a server that forks workers)."""
    children = process_children()
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            total += process_cpu(current)
        pending.extend(children.get(current, []))
    return total


def training_children(worker_pid: int) -> list[int]:
    """The worker's training children (`python -m worker.child`)."""
    found = []
    for pid in process_children().get(worker_pid, []):
        with contextlib.suppress(OSError):
            if b"worker.child" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def wait_warm_child(worker_pid: int, *, quiet_for: float = 1.0, timeout: float = 60.0) -> float:
    """Wait until the worker's idle child has imported TensorFlow and gone quiet.

    Returns the child's CPU seconds. Warm = at least 1 s of CPU used, then none for
    `quiet_for` seconds (it blocks on its stdin, waiting for a job).
    """
    deadline = time.monotonic() + timeout
    last: tuple[int, float] | None = None
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        children = training_children(worker_pid)
        if len(children) == 1:
            pid = children[0]
            cpu = None
            with contextlib.suppress(OSError, IndexError, ValueError):
                cpu = process_cpu(pid)
            if cpu is not None:
                if last is None or last[0] != pid or cpu != last[1]:
                    last, quiet_since = (pid, cpu), time.monotonic()
                elif cpu >= 1.0 and time.monotonic() - quiet_since >= quiet_for:
                    return cpu
        time.sleep(0.1)
    raise RuntimeError(f"no warm training child under worker {worker_pid} after {timeout:.0f} s")
