"""Shared helpers for the benchmarks: a real reglab server in a subprocess, statistics,
tables, the seed's spec and a tiny spec.

Every benchmark starts its own server (`python -m reglab.cli serve`, which applies the
migrations first) on a free port with a throw-away SQLite database under /tmp, waits for
`/api/health`, and stops it at the end. Nothing outside /tmp is written.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXAMPLE_SPEC = ROOT / "examples" / "l2-dropout-digits.json"

# The peers' Keras callbacks, measured earlier on this machine (quoted from
# /work/shared/DESIGN.md, "Measured on these machines"), not re-measured here.
REFERENCE_HOLD_MS = {"MLflow 3.17 Keras callback": 0.9, "TensorBoard callback": 13.5}


# --- specs ------------------------------------------------------------------------------


def seed_spec(epochs: int | None = None, name: str | None = None) -> dict[str, Any]:
    """The seed's MLP (examples/l2-dropout-digits.json): digits, Dense 64/32, L2 0.01,
    dropout 0.5."""
    spec = json.loads(EXAMPLE_SPEC.read_text())
    if epochs is not None:
        spec["training"]["epochs"] = epochs
    if name is not None:
        spec["name"] = name
    return spec


def tiny_spec(epochs: int = 3, name: str = "bench-tiny", batch_size: int = 64) -> dict[str, Any]:
    """A small dense network on two moons: the quickest real run the worker trains."""
    return {
        "name": name,
        "dataset": {"name": "moons", "n_samples": 300},
        "model": {
            "layers": [
                {
                    "type": "dense",
                    "units": 16,
                    "activation": "relu",
                    "regularizer": {"kind": "l2", "l2": 0.001},
                }
            ]
        },
        "training": {
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": "adam",
            "learning_rate": 0.01,
            "seed": 0,
            "loop": "fit",
        },
    }


def with_name(spec: dict[str, Any], name: str) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    spec["name"] = name
    return spec


# --- statistics -------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = "-+-".join("-" * w for w in widths)
    print()
    print(title)
    print(line)
    for index, row in enumerate(cells):
        print(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if index == 0:
            print(line)
    print(line)


def machine() -> str:
    """e.g. '2 CPU cores, Intel(R) Xeon(R) Processor (KVM), 23 GiB, no GPU'."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for text_line in Path("/proc/cpuinfo").read_text().splitlines():
            if text_line.startswith("model name"):
                model = text_line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    return f"{os.cpu_count()} CPU cores, {model}{memory}"


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process and all its descendants (a server that forks workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            total += process_cpu(current)
        pending.extend(children.get(current, []))
    return total


def loadavg() -> str:
    """The 1-, 5- and 15-minute load averages (other tenants' work shows here)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


# --- a real server ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quiet_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


@dataclass
class Server:
    """`python -m reglab.cli serve` on a free port with a temp SQLite database.

    Use as a context manager; `url` is its base URL. `env` adds REGLAB_* settings (for
    example a long lease, so that a benchmark that sends no heartbeats keeps its runs).
    A subclass serves something else by overriding `command`, `environment` and
    `health_path` (see `MlflowServer`).
    """

    folder_prefix: ClassVar[str] = "reglab-bench-"
    health_path: ClassVar[str] = "/api/health"

    env: dict[str, str] = field(default_factory=dict)
    root: Path = ROOT  # the checkout whose app/ is served (another one to compare a patch)
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
        return quiet_env(
            REGLAB_DATABASE_URL=f"sqlite:///{self.folder / 'bench.db'}",
            REGLAB_DATA_DIR=str(self.folder / "data"),
            REGLAB_SERVER_URL=self.url,
            **self.env,
        )

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

    def log_text(self) -> str:
        assert self.server.folder is not None
        with contextlib.suppress(OSError):
            return (self.server.folder / "worker.log").read_text()
        return ""


def add_finished_run(
    client: httpx.Client,
    spec: dict[str, Any],
    points: list[dict[str, Any]],
    *,
    worker_id: str = "bench",
) -> int:
    """Submit `spec`, claim it, upload `points` ({epoch, values, time}) and finish it, all
    through the REST API as a worker would; returns the run's id.

    The claim takes the oldest queued run, so call this only while nothing else is queued.
    """
    response = client.post("/api/experiments", json=spec)
    response.raise_for_status()
    run_id = int(response.json()["id"])
    claim = client.post(
        "/api/worker/claim",
        json={
            "worker_id": worker_id,
            "host": socket.gethostname(),
            "devices": ["CPU"],
            "slot": "CPU",
            "wait": 5,
        },
    )
    claim.raise_for_status()
    if claim.json()["experiment_id"] != run_id:
        raise RuntimeError(f"claimed {claim.json()['experiment_id']}, expected {run_id}")
    token = claim.json()["lease_token"]
    base = f"/api/worker/experiments/{run_id}"
    client.post(
        f"{base}/started", json={"lease_token": token, "device": "/physical_device:CPU:0"}
    ).raise_for_status()
    for first in range(0, len(points), 1000):
        client.post(
            f"{base}/metrics", json={"lease_token": token, "points": points[first : first + 1000]}
        ).raise_for_status()
    client.post(
        f"{base}/finish", json={"lease_token": token, "status": "succeeded"}
    ).raise_for_status()
    return run_id


@contextlib.contextmanager
def running_server(**env: str) -> Iterator[Server]:
    server = Server(env=env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def claim_run(
    worker_url: str, spec: dict[str, Any], *, worker_id: str = "bench"
) -> tuple[int, str]:
    """Submit `spec` and claim it as a worker would: (experiment id, lease token).

    The claim takes the oldest queued run, so call this only while nothing else is queued.
    """
    from reglab.client import ReglabClient, WorkerClient

    with ReglabClient(worker_url) as client:
        run = client.submit(spec)
    worker = WorkerClient(worker_url)
    try:
        claim = worker.claim(
            worker_id=worker_id, host=socket.gethostname(), devices=["CPU"], slot="CPU", wait=5.0
        )
    finally:
        worker.close()
    if claim is None or claim["experiment_id"] != run["id"]:
        raise RuntimeError(f"claimed {claim and claim['experiment_id']}, expected {run['id']}")
    return int(run["id"]), str(claim["lease_token"])


def fmt_ms(seconds: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f} ms"
