"""Shared helpers for the benchmarks: the servers and the worker they start (from
`bench._servers`), runs set up as a worker would, statistics, tables, the seed's spec and
a tiny spec.

Every benchmark starts its own server (`python -m reglab.cli serve`, which applies the
migrations first) on a free port with a throw-away SQLite database under /tmp, waits for
`/api/health`, and stops it at the end. Nothing outside /tmp is written. Runs are set up
through the client package (`ReglabClient` for the user's calls, `WorkerClient` for the
worker's), never with hand-built requests.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Self

import httpx

from bench._servers import (
    ROOT,
    MlflowServer,
    Server,
    Worker,
    free_port,
    process_cpu,
    process_tree_cpu,
    quiet_env,
    stop_process,
    wait_warm_child,
)
from reglab.client import ReglabClient, ServerEvent, WorkerClient, parse_sse

__all__ = [
    "EXAMPLE_SPEC",
    "REFERENCE_HOLD_MS",
    "ROOT",
    "MlflowServer",
    "ScriptedWorker",
    "Server",
    "Worker",
    "claim_run",
    "fmt_ms",
    "free_port",
    "kib",
    "loadavg",
    "machine",
    "median",
    "percentile",
    "print_table",
    "process_cpu",
    "process_tree_cpu",
    "quiet_env",
    "seed_spec",
    "sse_events",
    "stop_process",
    "tiny_spec",
    "verdict",
    "wait_warm_child",
]

EXAMPLE_SPEC = ROOT / "examples" / "l2-dropout-digits.json"

# The peers' Keras callbacks, measured earlier on this machine (quoted from
# /work/shared/DESIGN.md, "Measured on these machines"), not re-measured here.
REFERENCE_HOLD_MS = {"MLflow 3.17 Keras callback": 0.9, "TensorBoard callback": 13.5}

# The most epochs the server takes in one upload.
UPLOAD_LIMIT = 1000


# --- specs ------------------------------------------------------------------------------


def seed_spec(epochs: int | None = None, name: str | None = None) -> dict[str, Any]:
    """The seed's MLP (examples/l2-dropout-digits.json): digits, Dense 64/32, L2 0.01,
    dropout 0.5."""
    spec: dict[str, Any] = json.loads(EXAMPLE_SPEC.read_text())
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


# --- runs set up as a worker would ------------------------------------------------------


class ScriptedWorker:
    """A worker that trains nothing: it submits runs, claims them and feeds them given
    points through `ReglabClient` and `WorkerClient`, so that a benchmark finds runs in
    the states a real worker leaves them in.

    A claim takes the oldest queued run, so use it only while nothing else is queued.
    """

    def __init__(self, url: str, *, worker_id: str = "bench") -> None:
        self.client = ReglabClient(url)
        self.worker = WorkerClient(url)
        self.worker_id = worker_id

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()
        self.worker.close()

    def claim(self, spec: dict[str, Any]) -> tuple[int, str]:
        """Submit `spec` and claim it: (experiment id, lease token)."""
        run = self.client.submit(spec)
        claim = self.worker.claim(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            devices=["CPU"],
            slot="CPU",
            wait=5.0,
        )
        if claim is None or claim["experiment_id"] != run["id"]:
            raise RuntimeError(f"claimed {claim and claim['experiment_id']}, expected {run['id']}")
        return int(run["id"]), str(claim["lease_token"])

    def claim_pack(self, spec: dict[str, Any], members: int) -> tuple[list[int], str]:
        """Submit a sweep of `members` points of `spec` (L2 strengths: one pack) and claim
        the pack: (its members' experiment ids, lease token)."""
        sweep = self.client.submit_sweep(
            {
                "name": spec["name"],
                "base": spec,
                "axes": [
                    {
                        "path": "model.layers[*].regularizer.l2",
                        "values": [index / 1000 for index in range(members)],
                    }
                ],
            }
        )
        ids = [int(run["id"]) for run in sweep["runs"]]
        claim = self.worker.claim(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            devices=["CPU"],
            slot="CPU",
            wait=5.0,
        )
        pack = claim and claim.get("pack")
        if not pack or [member["experiment_id"] for member in pack["members"]] != ids:
            raise RuntimeError(f"claimed {claim}, expected the pack of {ids}")
        return ids, str(claim["lease_token"])

    def add_finished(
        self, spec: dict[str, Any], points: list[dict[str, Any]], **finish: Any
    ) -> int:
        """Submit and claim `spec`, upload `points` ({epoch, values, time}) and finish it as
        succeeded with `finish`'s fields (test metrics, best epoch); the run's id."""
        experiment_id, token = self.claim(spec)
        self.worker.started(experiment_id, token, "/physical_device:CPU:0")
        for first in range(0, len(points), UPLOAD_LIMIT):
            self.worker.upload_metrics(experiment_id, token, points[first : first + UPLOAD_LIMIT])
        self.worker.finish(experiment_id, token, status="succeeded", **finish)
        return experiment_id


def claim_run(url: str, spec: dict[str, Any], *, worker_id: str = "bench") -> tuple[int, str]:
    """Submit `spec` and claim it as a worker would: (experiment id, lease token)."""
    with ScriptedWorker(url, worker_id=worker_id) as worker:
        return worker.claim(spec)


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[ServerEvent, float]]:
    """A run's event stream read as it arrives, each event with its arrival (`time.time()`
    when its closing blank line came), parsed by the client package's `parse_sse`.

    Async and on a caller's httpx client, because the benchmarks follow tens of streams in
    one event loop, which `ReglabClient.events` (one blocking stream) cannot do.
    """
    block: list[str] = []
    async for line in response.aiter_lines():
        if line != "":
            block.append(line)
            continue
        arrived = time.time()
        for event in parse_sse(iter([*block, ""])):
            yield event, arrived
        block = []


# --- statistics and reporting -------------------------------------------------------------


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
    """The median, or NaN for no values (a table then says n/a)."""
    return float(statistics.median(values)) if values else math.nan


def fmt_ms(seconds: float, digits: int = 2) -> str:
    """Seconds as milliseconds, e.g. '12.35 ms'; NaN as 'n/a'."""
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.{digits}f} ms"


def kib(count: float) -> str:
    """Bytes as KiB, e.g. '4.8 KiB'."""
    return f"{count / 1024:.1f} KiB"


def verdict(met: bool) -> str:
    """A target's column in a results table."""
    return "met" if met else "MISSED"


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
    """e.g. '2 CPU cores, Intel(R) Xeon(R) Processor (KVM), 23 GiB RAM'."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for text_line in Path("/proc/cpuinfo").read_text().splitlines():
            if text_line.startswith("model name"):
                model = text_line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib_total = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f", {kib_total / 2**20:.0f} GiB RAM"
    return f"{os.cpu_count()} CPU cores, {model}{memory}"


def loadavg() -> str:
    """The 1-, 5- and 15-minute load averages (other tenants' work shows here)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"
