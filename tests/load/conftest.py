"""Load and fault tests drive `python -m reglab.cli serve` as a real process over HTTP, so
that a crash, `kill -9`, the process's memory and its open streams are all observable
from outside, as an operator would see them.

`serve(...)` starts one on the database of the `sqlite_db` / `postgres_db` / `any_db`
fixture (already migrated) and stops it when the test ends; its log is kept beside the
database and quoted when it shows a server error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import free_port, health, wait_for

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@dataclass
class ServerProcess:
    """One `reglab serve` subprocess; `restart()` brings it back on the same database."""

    database_url: str
    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.port = self.port or free_port()
        env = {
            **os.environ,
            "REGLAB_DATABASE_URL": self.database_url,
            "REGLAB_DATA_DIR": str(self.folder / "data"),
            "REGLAB_SERVER_URL": self.url,
            "REGLAB_LEASE_SECONDS": "600",  # these tests send no heartbeats
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reglab.cli", "serve", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        process = self.process
        wait_for(lambda: process.poll() is not None or health(self.url), timeout=60)
        assert process.poll() is None, f"server exited:\n{self.log_tail()}"

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the process."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def health(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/health", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def streams(self) -> int:
        """Open event streams, as the server's broker counts them."""
        return int(self.health()["streams"])

    def rss_kib(self) -> int:
        """Resident memory of the server process (VmRSS from /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def log_tail(self, lines: int = 60) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def server_errors(self) -> list[str]:
        """Tracebacks and 5xx answers in the log (empty when the server was healthy)."""
        text = self.log_path.read_text(errors="replace")
        return [
            line
            for line in text.splitlines()
            if line.startswith("Traceback") or ('HTTP/1.1" 5' in line and "/api/" in line)
        ]


ServeFactory = Callable[..., ServerProcess]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """Start `reglab serve` on a migrated database URL with extra REGLAB_* settings."""
    started: list[ServerProcess] = []

    def start(database_url: str, **env: str) -> ServerProcess:
        folder = tmp_path / f"server{len(started)}"
        folder.mkdir()
        server = ServerProcess(database_url, folder, env)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


# --- asynchronous helpers shared by the load tests ----------------------------------------


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` in a thread of its own: the browser tests' Playwright (sync API) keeps
    an event loop running in the main thread for the rest of the session."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main).result()


def limits(connections: int) -> httpx.Limits:
    return httpx.Limits(max_connections=connections, max_keepalive_connections=connections)


@dataclass(frozen=True)
class SseEvent:
    kind: str
    id: int | None
    data: dict[str, Any]
    arrived: float  # time.time() when its last line arrived


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Events of an open `text/event-stream` response, comments and pings skipped."""
    kind, event_id, data = "message", None, list[str]()
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield SseEvent(kind, event_id, json.loads("\n".join(data)), time.time())
            kind, event_id, data = "message", None, list[str]()
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                event_id = int(value)


FINAL = ("succeeded", "failed", "cancelled")


@dataclass
class Viewer:
    """What one viewer of a run saw: the epochs in arrival order and each one's delay."""

    experiment_id: int
    epochs: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    async def follow(self, http: httpx.AsyncClient, opened: asyncio.Event | None = None) -> None:
        """Read the run's stream to its final status; `opened` is set once the replay of
        its queued and running statuses is in (the stream is then live)."""
        url = f"/api/experiments/{self.experiment_id}/events"
        async with http.stream("GET", url, timeout=httpx.Timeout(60.0)) as response:
            assert response.status_code == 200, response.status_code
            async for event in sse_events(response):
                if event.id is not None:
                    self.ids.append(event.id)
                if event.kind == "metrics":
                    self.epochs.append(int(event.data["epoch"]))
                    if event.data.get("time") is not None:
                        self.delays.append(event.arrived - float(event.data["time"]))
                elif event.kind == "status":
                    self.statuses.append(str(event.data["status"]))
                    if len(self.statuses) == 2 and opened is not None:
                        opened.set()
                    if event.data["status"] in FINAL:
                        return


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * q / 100))]
