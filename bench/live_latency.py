"""How long an epoch takes from its end in the training process to a live page.

Three processes, so that none shares a GIL with another:

  server   `python -m reglab.cli serve` on a temp SQLite database (a subprocess);
  clients  this script again with `--role clients` (a subprocess): N SSE clients
           (default 50) in one asyncio loop, httpx streaming, events parsed with
           `reglab.client.parse_sse`, all following the same run;
  trainer  this process: it submits and claims a run like a worker, then trains it on the
           worker's real path, `worker.training.train(spec, [ReglabCallback(sender=sender)])`
           with reglab's `Sender` uploading each epoch (default: a small dense model on two
           moons for 200 epochs, for many points; `--model seed` trains the seed's MLP).

Every `metrics` event carries `data.time`, the Unix time at the epoch's end set by the
ReglabCallback in the trainer; a client stamps `time.time()` when the event's last
line arrives, so delay = arrival - data.time (one machine, one clock).

Printed: p50/p99 of the delay over every (client, epoch) pair, and of the time until the
last client had each epoch; where the time goes (epoch end -> the server's answer to the
upload, as the trainer saw it); how many points went up per request; and how many
`metrics` events each client received (every client must get every epoch).
Target: p99 <= 50 ms with 50 clients.

    .venv/bin/python bench/live_latency.py --clients 50 --epochs 200

To compare a patched server, `--server-root DIR` serves app/ from another checkout (the
trainer and the clients still use this one). If not every client connects within
`--connect-timeout`, the run goes on with those that did, prints the server's errors,
and marks the target as not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from app.spec import FINAL_STATUSES
from bench._common import (
    ROOT,
    Server,
    claim_run,
    fmt_ms,
    loadavg,
    machine,
    median,
    percentile,
    print_table,
    process_cpu,
    quiet_env,
    seed_spec,
    sse_events,
    stop_process,
    tiny_spec,
    verdict,
)

TARGET_P99_S = 0.050


# --- the SSE clients (a subprocess) -----------------------------------------------------


async def _follow(
    http: Any,
    url: str,
    experiment_id: int,
    connected: asyncio.Event,
    counter: list[int],
    total: int,
) -> dict[str, Any]:
    arrivals: list[tuple[int, float]] = []
    others = 0
    seen_first = False
    final = None
    async with http.stream("GET", f"{url}/api/experiments/{experiment_id}/events") as response:
        if response.status_code != 200:
            await response.aread()
            counter[1] += 1
            if counter[0] + counter[1] == total:
                connected.set()
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        async for event, arrived in sse_events(response):
            if not seen_first:
                seen_first = True
                counter[0] += 1
                if counter[0] + counter[1] == total:
                    connected.set()
            if event.kind == "metrics":
                arrivals.append((int(event.data["epoch"]), arrived - float(event.data["time"])))
            else:
                others += 1
                if event.kind == "status" and event.data.get("status") in FINAL_STATUSES:
                    final = event.data["status"]
                    break
    return {"arrivals": arrivals, "other_events": others, "final": final}


async def _clients_main(
    url: str, experiment_id: int, clients: int, timeout: float, connect_timeout: float
) -> list[Any]:
    import httpx

    connected = asyncio.Event()
    counter = [0, 0]  # streams that got their first event, streams refused
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    # One async client for all the streams (`ReglabClient.events` follows one, blocking).
    # No read timeout: a stream is quiet between epochs. The connect phase has its own limit.
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None), limits=limits) as http:
        tasks = [
            asyncio.create_task(_follow(http, url, experiment_id, connected, counter, clients))
            for _ in range(clients)
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(connected.wait(), timeout=connect_timeout)
        # "READY <streams that got their first event> <streams refused>"
        print(f"READY {counter[0]} {counter[1]}", flush=True)
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        results = []
        for task in tasks:
            if task in done and task.exception() is None:
                results.append(task.result())
            else:
                error = "timed out" if task in pending else repr(task.exception())
                results.append({"arrivals": [], "other_events": 0, "final": None, "error": error})
        return results


def clients_role(args: argparse.Namespace) -> None:
    results = asyncio.run(
        _clients_main(args.url, args.experiment, args.clients, args.timeout, args.connect_timeout)
    )
    Path(args.out).write_text(json.dumps(results))


# --- the trainer and the report (this process) ------------------------------------------


@dataclass
class Training:
    """What the trainer saw: each upload's acknowledgement (epoch, seconds from the epoch's
    end, points in the request), the callback's holds, the seconds trained, and the CPU
    seconds each process used meanwhile."""

    acked: list[tuple[int, float, int]] = field(default_factory=list)
    holds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)


def main_role(args: argparse.Namespace) -> None:
    """Serve, start the SSE clients, train the run while they follow it, then report."""
    import keras

    print(f"machine: {machine()}; {loadavg()}")
    if args.model == "seed":
        spec = seed_spec(args.epochs, "bench-live-seed")
    else:
        spec = tiny_spec(args.epochs, "bench-live-tiny", batch_size=args.batch_size)
    print(
        f"{args.clients} SSE clients, {args.epochs} epochs of the {args.model} model, "
        f"Keras {keras.__version__} ({keras.backend.backend()})"
    )
    out = Path(tempfile.mkdtemp(prefix="reglab-live-", dir="/tmp")) / "clients.json"
    root = Path(args.server_root) if args.server_root else ROOT
    if root != ROOT:
        print(f"SERVER FROM ANOTHER CHECKOUT: {root}")
    with Server(env={"REGLAB_LEASE_SECONDS": "3600"}, root=root) as server:
        experiment_id, token = claim_run(server.url, spec)
        clients = start_clients(args, server.url, experiment_id, out)
        try:
            wait_for_clients(args, clients, server)
            training = train_streamed(server, clients.pid, experiment_id, token, spec)
            clients.wait(timeout=args.timeout + 30)
            server_errors = server.error_summary()
        finally:
            stop_process(clients)
    if server_errors:
        print("server log, errors:")
        print(server_errors)
    print(f"at the end: {loadavg()}")
    results = json.loads(out.read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    report(args, results, training)


def start_clients(
    args: argparse.Namespace, url: str, experiment_id: int, out: Path
) -> subprocess.Popen[str]:
    """This script again as the SSE clients' process (its own GIL), writing to `out`."""
    return subprocess.Popen(
        [
            *(sys.executable, __file__, "--role", "clients", "--url", url),
            *("--experiment", str(experiment_id), "--clients", str(args.clients)),
            *("--out", str(out), "--timeout", str(args.timeout)),
            *("--connect-timeout", str(args.connect_timeout)),
        ],
        cwd=ROOT,
        env=quiet_env(),
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_for_clients(
    args: argparse.Namespace, clients: subprocess.Popen[str], server: Server
) -> None:
    """Wait for the clients' READY line; say how many connected (and the server's errors
    if not all did: the run goes on with those that did)."""
    assert clients.stdout is not None
    line = clients.stdout.readline().split()
    if not line or line[0] != "READY":
        raise RuntimeError(f"the SSE clients' process failed: {line!r}")
    ready, refused = int(line[1]), int(line[2])
    print(
        f"{ready} of {args.clients} SSE clients connected"
        + (f", {refused} refused" if refused else "")
        + ("" if ready == args.clients else f" within {args.connect_timeout:.0f} s")
        + "; training",
        flush=True,
    )
    if ready < args.clients:
        print("NOT ALL CLIENTS CONNECTED. Server log, errors so far:")
        print(server.error_summary() or "  (none logged)", flush=True)


def train_streamed(
    server: Server, clients_pid: int, experiment_id: int, token: str, spec: dict[str, Any]
) -> Training:
    """Train the claimed run on the worker's path, `ReglabCallback` streaming each epoch
    through `WorkerClient`; then finish it."""
    from app.spec import ExperimentSpec
    from reglab import ReglabCallback
    from reglab.channels import ClaimedRunChannel, EpochPoint
    from reglab.client import WorkerClient
    from reglab.sender import Sender
    from worker.training import train

    training = Training()

    class AckedChannel(ClaimedRunChannel):
        def upload_epochs(self, points: Sequence[EpochPoint]) -> None:
            super().upload_epochs(points)
            now = time.time()
            training.acked.extend((p.epoch, now - (p.time or now), len(points)) for p in points)

    assert server.process is not None
    pids = {"server": server.process.pid, "SSE clients": clients_pid}
    worker = WorkerClient(server.url)
    try:
        sender = Sender(AckedChannel(worker, experiment_id, token)).start()
        streaming = ReglabCallback(sender=sender)
        cpu_before = {name: process_cpu(pid) for name, pid in pids.items()}
        trainer_before = time.process_time()
        began = time.perf_counter()
        result = train(ExperimentSpec.model_validate(spec), [streaming])
        if not sender.close(timeout=60):
            raise RuntimeError("not every epoch reached the server")
        training.seconds = time.perf_counter() - began
        training.cpu = {"trainer": time.process_time() - trainer_before}
        training.cpu.update(
            {name: process_cpu(pid) - cpu_before[name] for name, pid in pids.items()}
        )
        training.holds = streaming.hold_seconds
        worker.finish(experiment_id, token, status="succeeded", best_epoch=result.best_epoch)
    finally:
        worker.close()
    return training


def spread(label: str, values: list[float], digits: int = 1) -> list[str]:
    """A table row: p50, p90, p99 and max of `values` (seconds) in ms."""
    return [
        label,
        *(fmt_ms(percentile(values, q), digits) for q in (50, 90, 99)),
        fmt_ms(max(values, default=0), digits),
    ]


def report(args: argparse.Namespace, results: list[dict[str, Any]], training: Training) -> None:
    """The delays, the results against the target, the clients' failures, the CPU."""
    delays = [delay for client in results for _, delay in client["arrivals"]]
    last_by_epoch: dict[int, float] = {}
    for client in results:
        for epoch, delay in client["arrivals"]:
            last_by_epoch[epoch] = max(delay, last_by_epoch.get(epoch, 0.0))
    trained = training.seconds
    print(
        f"trained {args.epochs} epochs in {trained:.1f} s "
        f"({trained / args.epochs * 1000:.0f} ms per epoch, the pace of the events)"
    )
    print_table(
        "Delay from an epoch's end in the trainer",
        ["", "p50", "p90", "p99", "max"],
        [
            spread("to each SSE client (all client x epoch pairs)", delays),
            spread("to the last of the clients, per epoch", list(last_by_epoch.values())),
            spread(
                "to the server's answer to the upload (trainer)",
                [delay for _, delay, _ in training.acked],
            ),
            spread("callback hold of the training thread", training.holds, digits=3),
        ],
    )
    print_table(
        "Results", ["figure", "measured", "target", ""], results_rows(args, results, training)
    )
    errors = [str(client["error"]) for client in results if client.get("error")]
    if errors:
        distinct: dict[str, int] = {}
        for error in errors:
            distinct[error] = distinct.get(error, 0) + 1
        print(f"{len(errors)} of {len(results)} clients failed:")
        for error, count in sorted(distinct.items(), key=lambda item: -item[1]):
            print(f"  {count:3d} x {error}")
    print(
        "CPU per epoch while training: "
        + ", ".join(
            f"{name} {sec / args.epochs * 1000:.1f} ms" for name, sec in training.cpu.items()
        )
        + f" (2 cores give {2 * trained / args.epochs * 1000:.0f} ms per epoch in all)"
    )


def results_rows(
    args: argparse.Namespace, results: list[dict[str, Any]], training: Training
) -> list[list[str]]:
    """The delay's p50 and p99 against the target, and whether every client got every epoch."""
    delays = [delay for client in results for _, delay in client["arrivals"]]
    counts = [len(client["arrivals"]) for client in results]
    complete = [
        sorted(epoch for epoch, _ in client["arrivals"]) == list(range(args.epochs))
        for client in results
    ]
    failed = any(client.get("error") for client in results)
    batch_sizes = [size for _, _, size in training.acked]
    p99 = percentile(delays, 99)
    connected = sum(1 for client in results if client["arrivals"] or client["final"])
    return [
        ["p50 delay, epoch end -> SSE client", fmt_ms(median(delays), 1), "", ""],
        [
            f"p99 delay with {connected} of {args.clients} clients connected",
            fmt_ms(p99, 1),
            f"<= {TARGET_P99_S * 1000:.0f} ms with {args.clients}",
            verdict(p99 <= TARGET_P99_S)
            if connected == args.clients
            else "NOT MEASURED (clients refused)",
        ],
        [
            "metrics events per client (min / max)",
            f"{min(counts, default=0)} / {max(counts, default=0)}",
            f"{args.epochs} each",
            verdict(all(complete) and not failed and len(results) == args.clients),
        ],
        ["clients that got every epoch", f"{sum(complete)} of {len(results)}", "all", ""],
        [
            "points per upload request (median / max)",
            f"{median(batch_sizes):.0f} / {max(batch_sizes, default=0)}",
            "",
            "",
        ],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="SSE clients (default 50)")
    parser.add_argument("--epochs", type=int, default=200, help="epochs to stream (default 200)")
    parser.add_argument(
        "--model",
        choices=("tiny", "seed"),
        default="tiny",
        help="tiny: Dense 16 on two moons (quick epochs); seed: the seed's MLP on digits",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="batch size of the tiny model")
    parser.add_argument("--timeout", type=float, default=150.0, help="clients give up after (s)")
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=45.0,
        help="seconds for all clients to connect; training starts then with those that did",
    )
    parser.add_argument(
        "--server-root", help="serve app/ from another checkout (to compare a patch)"
    )
    parser.add_argument(
        "--role", choices=("main", "clients"), default="main", help=argparse.SUPPRESS
    )
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--experiment", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "clients":
        clients_role(args)
    else:
        main_role(args)


if __name__ == "__main__":
    main()
