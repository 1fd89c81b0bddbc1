"""A lab of real processes for fault injection: `reglab serve` and `reglab worker` with
short leases, killed, paused and restarted with real signals.

Each test module opens its own `Lab` (its own SQLite file, port and lease settings) and
starts the workers it needs. The test reads the database file directly where it must
see what the API does not show (a lease token) or move a lease's time back instead of
waiting for it to run out.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from reglab.client import ReglabClient, ServerEvent
from tests.conftest import free_port, health, wait_for

REGLAB = [sys.executable, "-m", "reglab.cli"]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # for the tests that import the worker


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def stopped(pid: int) -> bool:
    """True while `pid` is stopped by a signal (SIGSTOP)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def is_training_child(pid: int) -> bool:
    try:
        return b"worker.child" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False


@dataclass
class WorkerProcess:
    """One `reglab worker --gpus none` and its log (the supervisor's and its children's)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def worker_id(self) -> str:
        wait_for(lambda: re.search(r"worker (\S+): \d+ slot", self.log()), timeout=30)
        found = re.search(r"worker (\S+): \d+ slot", self.log())
        assert found is not None
        return found.group(1)

    def child_pid(self, experiment_id: int, attempt: int) -> int | None:
        """The pid of the training child that took this attempt, from the claim's log line."""
        pattern = (
            rf"claimed experiment {experiment_id} \(.*?\), attempt {attempt}, "
            rf"slot \S+, child pid (\d+)"
        )
        found = re.search(pattern, self.log())
        return int(found.group(1)) if found else None

    def wait_child_pid(self, experiment_id: int, attempt: int, timeout: float = 60) -> int:
        wait_for(lambda: self.child_pid(experiment_id, attempt) is not None, timeout=timeout)
        pid = self.child_pid(experiment_id, attempt)
        assert pid is not None
        return pid

    def child_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"child pid (\d+)", self.log())]

    def signal(self, signum: int, *, with_children: bool = False) -> None:
        """Send a signal to the supervisor (and to its training children, which run in
        sessions of their own and so miss a signal sent to the supervisor's group)."""
        targets = [self.pid]
        if with_children:
            targets += [pid for pid in self.child_pids() if alive(pid)]
        for pid in targets:
            os.kill(pid, signum)


@dataclass
class Lab:
    """A server on its own SQLite file and port, and the workers the tests start."""

    folder: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    server: subprocess.Popen[bytes] | None = None
    workers: list[WorkerProcess] = field(default_factory=list)
    _logs: list[IO[str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.folder / "reglab.db"

    @classmethod
    @contextmanager
    def open(cls, folder: Path, **settings: object) -> Iterator[Lab]:
        """Start a server with these settings (e.g. lease_seconds=3 for REGLAB_LEASE_SECONDS)."""
        env = {
            **os.environ,
            "REGLAB_DATABASE_URL": f"sqlite:///{folder / 'reglab.db'}",
            "REGLAB_DATA_DIR": str(folder / "data"),
            "REGLAB_LEASE_SECONDS": "3",
            "REGLAB_SWEEP_SECONDS": "0.5",
            "REGLAB_HEARTBEAT_SECONDS": "0.5",
            "REGLAB_CLAIM_WAIT_SECONDS": "10",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **{f"REGLAB_{name.upper()}": str(value) for name, value in settings.items()},
        }
        lab = cls(folder, env)
        env["REGLAB_SERVER_URL"] = lab.url
        try:
            lab.start_server()
            yield lab
        finally:
            lab.close()

    # --- processes ----------------------------------------------------------------

    def _log(self, name: str) -> IO[str]:
        handle = (self.folder / name).open("a")
        self._logs.append(handle)
        return handle

    def start_server(self) -> None:
        assert self.server is None or self.server.poll() is not None
        self.server = subprocess.Popen(
            [*REGLAB, "serve", "--port", str(self.port)],
            env=self.env,
            cwd=self.folder,
            stdout=self._log("server.log"),
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: health(self.url), timeout=60)

    def stop_server(self, signum: int = signal.SIGTERM, timeout: float = 30) -> float:
        """Signal the server and wait for it to exit; returns how long that took."""
        assert self.server is not None
        began = time.monotonic()
        self.server.send_signal(signum)
        code = self.server.wait(timeout)
        # uvicorn re-raises the signal it stopped on once it has shut down cleanly.
        assert code in (0, -signum), f"server exit code {code}; {self.tail('server.log')}"
        return time.monotonic() - began

    def start_worker(self, name: str, *, memory_limit_mb: int | None = None) -> WorkerProcess:
        """`reglab worker` with one CPU slot; `memory_limit_mb` caps its address space
        (and so its training children's), like a device with that much memory."""
        command = [*REGLAB, "worker", "--gpus", "none"]
        env = dict(self.env)
        if memory_limit_mb is not None:
            command = ["bash", "-c", f'ulimit -v {memory_limit_mb * 1024} && exec "$0" "$@"']
            command += [*REGLAB, "worker", "--gpus", "none"]
            # What takes address space without using memory, held the same on any host:
            # malloc's per-thread arenas (64 MiB each) and the thread pools' stacks.
            env.update(
                MALLOC_ARENA_MAX="2",
                TF_NUM_INTRAOP_THREADS="2",
                TF_NUM_INTEROP_THREADS="2",
                OMP_NUM_THREADS="2",
            )
        log_path = self.folder / f"{name}.log"
        log_file = self._log(f"{name}.log")
        process = subprocess.Popen(
            command, env=env, cwd=self.folder, stdout=log_file, stderr=subprocess.STDOUT
        )
        worker = WorkerProcess(name, process, log_path, log_file)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            children = [pid for pid in worker.child_pids() if alive(pid)]
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(10)
            for pid in children:
                if alive(pid) and is_training_child(pid):
                    os.kill(pid, signal.SIGKILL)
        if self.server is not None and self.server.poll() is None:
            self.server.kill()
            self.server.wait(10)
        for handle in self._logs:
            handle.close()

    def tail(self, *names: str, lines: int = 40) -> str:
        """The ends of the logs, for assertion messages."""
        names = names or ("server.log", *(f"{worker.name}.log" for worker in self.workers))
        parts = []
        for name in names:
            path = self.folder / name
            if path.exists():
                text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                parts.append(f"--- {name}\n{text}")
        return "\n".join(parts)

    # --- the API and the database ---------------------------------------------------

    def client(self) -> ReglabClient:
        return ReglabClient(self.url)

    def submit(self, spec: dict[str, Any]) -> int:
        with self.client() as client:
            return int(client.submit(spec)["id"])

    def get(self, run_id: int) -> dict[str, Any]:
        with self.client() as client:
            return client.get(run_id)

    def wait_status(self, run_id: int, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        wait_for(lambda: self.get(run_id)["status"] in statuses, timeout=timeout)
        return self.get(run_id)

    def wait_epochs(self, run_id: int, epochs: int, timeout: float = 60) -> None:
        """Until the run has stored at least `epochs` epochs (of its current attempt)."""
        wait_for(lambda: self.get(run_id)["epochs_done"] >= epochs, timeout=timeout)

    def events(self, run_id: int) -> list[ServerEvent]:
        """Every stored event of a finished run, replayed by its event stream."""
        with self.client() as client:
            return list(client.events(run_id, reconnect=False))

    def sql(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db_path, timeout=30) as connection:
            return connection.execute(statement, params).fetchall()

    def lease(self, run_id: int) -> tuple[str | None, str | None]:
        """(lease_token, lease_expires_at) as stored."""
        ((token, expires),) = self.sql(
            "SELECT lease_token, lease_expires_at FROM experiment WHERE id = ?", run_id
        )
        return token, expires

    def expire_lease(self, run_id: int) -> None:
        """Move the lease's end into the past, as if its holder had gone quiet long ago."""
        self.sql(
            "UPDATE experiment SET lease_expires_at = '2000-01-01 00:00:00.000000' "
            "WHERE id = ? AND status = 'running'",
            run_id,
        )

    def statuses(self, run_id: int) -> list[dict[str, Any]]:
        """The run's status events in order, as stored (with the server's time in `at`)."""
        rows = self.sql(
            "SELECT data, created_at FROM event WHERE experiment_id = ? AND kind = 'status' "
            "ORDER BY id",
            run_id,
        )
        return [{**json.loads(data), "at": _unix(created_at)} for data, created_at in rows]


def _unix(stored: str) -> float:
    """A timestamp as SQLite holds it (UTC, no zone) as Unix time."""
    return datetime.fromisoformat(stored).replace(tzinfo=UTC).timestamp()
