"""How long an epoch takes from its end in the training process to a live page.

Three processes, so that none shares a GIL with another:

  server   `python -m app.cli serve` on a temp SQLite database (a subprocess);
  clients  this script again with `--role clients` (a subprocess): N SSE clients
           (default 50) in one asyncio loop, httpx streaming, events parsed with
           `app.client.parse_sse`, all following the same run;
  trainer  this process: it submits and claims a run like a worker, then trains it on the
           worker's real path, `worker.training.train(spec, [StreamingCallback(sender)])`
           with a `MetricSender` uploading each epoch (default: a small dense model on two
           moons for 200 epochs, for many points; `--model seed` trains the seed's MLP).

Every `metrics` event carries `data.time`, the Unix time at the epoch's end set by the
StreamingCallback in the trainer; a client stamps `time.time()` when the event's last
line arrives, so delay = arrival - data.time (one machine, one clock).

Printed: p50/p99 of the delay over every (client, epoch) pair, and of the time until the
last client had each epoch; where the time goes (epoch end -> the server's answer to the
upload, as the trainer saw it); how many points went up per request; and how many
`metrics` events each client received (every client must get every epoch).
Target: p99 <= 50 ms with 50 clients.

    .venv/bin/python bench/live_latency.py --clients 50 --epochs 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench._common import (  # noqa: E402
    ROOT,
    Server,
    claim_run,
    fmt_ms,
    machine,
    median,
    percentile,
    print_table,
    quiet_env,
    seed_spec,
    stop_process,
    tiny_spec,
)

TARGET_P99_S = 0.050
FINAL = ("succeeded", "failed", "cancelled")


# --- the SSE clients (a subprocess) -----------------------------------------------------


async def _follow(
    http: Any, url: str, experiment_id: int, connected: asyncio.Event, counter: list[int],
    total: int,
) -> dict[str, Any]:
    from app.client import parse_sse

    arrivals: list[tuple[int, float]] = []
    others = 0
    seen_first = False
    final = None
    async with http.stream("GET", f"{url}/api/experiments/{experiment_id}/events") as response:
        response.raise_for_status()
        block: list[str] = []
        async for line in response.aiter_lines():
            if line != "":
                block.append(line)
                continue
            now = time.time()
            for event in parse_sse(iter([*block, ""])):
                if not seen_first:
                    seen_first = True
                    counter[0] += 1
                    if counter[0] == total:
                        connected.set()
                if event.kind == "metrics":
                    arrivals.append((int(event.data["epoch"]), now - float(event.data["time"])))
                else:
                    others += 1
                    if event.kind == "status" and event.data.get("status") in FINAL:
                        final = event.data["status"]
            block = []
            if final is not None:
                break
    return {"arrivals": arrivals, "other_events": others, "final": final}


async def _clients_main(url: str, experiment_id: int, clients: int, timeout: float) -> list[Any]:
    import httpx

    connected = asyncio.Event()
    counter = [0]
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None), limits=limits) as http:
        tasks = [
            asyncio.create_task(_follow(http, url, experiment_id, connected, counter, clients))
            for _ in range(clients)
        ]
        await asyncio.wait_for(connected.wait(), timeout=60)
        print("READY", flush=True)
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
    results = asyncio.run(_clients_main(args.url, args.experiment, args.clients, args.timeout))
    Path(args.out).write_text(json.dumps(results))


# --- the trainer and the report (this process) ------------------------------------------


def main_role(args: argparse.Namespace) -> None:
    import keras

    from app.client import WorkerClient
    from app.spec import ExperimentSpec
    from worker.streaming import MetricSender, StreamingCallback
    from worker.training import train

    print(f"machine: {machine()}")
    if args.model == "seed":
        spec = seed_spec(args.epochs, "bench-live-seed")
    else:
        spec = tiny_spec(args.epochs, "bench-live-tiny", batch_size=args.batch_size)
    print(
        f"{args.clients} SSE clients, {args.epochs} epochs of the {args.model} model, "
        f"Keras {keras.__version__} ({keras.backend.backend()})"
    )
    out = Path(tempfile.mkdtemp(prefix="reglab-live-", dir="/tmp")) / "clients.json"
    with Server(env={"REGLAB_LEASE_SECONDS": "3600"}) as server:
        experiment_id, token = claim_run(server.url, spec)
        clients = subprocess.Popen(
            [
                sys.executable, __file__, "--role", "clients", "--url", server.url,
                "--experiment", str(experiment_id), "--clients", str(args.clients),
                "--out", str(out), "--timeout", str(args.timeout),
            ],
            cwd=ROOT,
            env=quiet_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert clients.stdout is not None
            line = clients.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"SSE clients did not connect: {line!r}")
            print(f"{args.clients} SSE clients connected; training", flush=True)

            worker = WorkerClient(server.url)
            acked: list[tuple[int, float, int]] = []  # (epoch, ack - epoch end, batch size)

            def upload(points: list[dict[str, Any]]) -> object:
                answer = worker.upload_metrics(experiment_id, token, points)
                now = time.time()
                acked.extend((p["epoch"], now - p["time"], len(points)) for p in points)
                return answer

            sender = MetricSender(upload=upload).start()
            streaming = StreamingCallback(sender)
            began = time.perf_counter()
            result = train(ExperimentSpec.model_validate(spec), [streaming])
            trained = time.perf_counter() - began
            if not sender.close(timeout=60):
                raise RuntimeError("not every epoch reached the server")
            worker.finish(experiment_id, token, status="succeeded", best_epoch=result.best_epoch)
            worker.close()
            clients.wait(timeout=args.timeout + 30)
        finally:
            stop_process(clients)
    results = json.loads(out.read_text())
    report(args, results, acked, streaming.hold_seconds, trained)


def report(
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    acked: list[tuple[int, float, int]],
    holds: list[float],
    trained: float,
) -> None:
    delays = [delay for client in results for _, delay in client["arrivals"]]
    last_by_epoch: dict[int, float] = {}
    for client in results:
        for epoch, delay in client["arrivals"]:
            last_by_epoch[epoch] = max(delay, last_by_epoch.get(epoch, 0.0))
    slowest = list(last_by_epoch.values())
    counts = [len(client["arrivals"]) for client in results]
    complete = [
        sorted(epoch for epoch, _ in client["arrivals"]) == list(range(args.epochs))
        for client in results
    ]
    errors = [client.get("error") for client in results if client.get("error")]
    to_ack = [delay for _, delay, _ in acked]
    batch_sizes = [size for _, _, size in acked]
    p99 = percentile(delays, 99)

    print(
        f"trained {args.epochs} epochs in {trained:.1f} s "
        f"({trained / args.epochs * 1000:.0f} ms per epoch, the pace of the events)"
    )
    print_table(
        "Delay from an epoch's end in the trainer",
        ["", "p50", "p90", "p99", "max"],
        [
            ["to each SSE client (all client x epoch pairs)", fmt_ms(median(delays), 1),
             fmt_ms(percentile(delays, 90), 1), fmt_ms(p99, 1), fmt_ms(max(delays, default=0), 1)],
            ["to the last of the clients, per epoch", fmt_ms(median(slowest), 1),
             fmt_ms(percentile(slowest, 90), 1), fmt_ms(percentile(slowest, 99), 1),
             fmt_ms(max(slowest, default=0), 1)],
            ["to the server's answer to the upload (trainer)", fmt_ms(median(to_ack), 1),
             fmt_ms(percentile(to_ack, 90), 1), fmt_ms(percentile(to_ack, 99), 1),
             fmt_ms(max(to_ack, default=0), 1)],
            ["callback hold of the training thread", fmt_ms(median(holds), 3),
             fmt_ms(percentile(holds, 90), 3), fmt_ms(percentile(holds, 99), 3),
             fmt_ms(max(holds, default=0), 3)],
        ],
    )
    print_table(
        "Results",
        ["figure", "measured", "target", ""],
        [
            ["p50 delay, epoch end -> SSE client", fmt_ms(median(delays), 1), "", ""],
            [f"p99 delay with {args.clients} clients", fmt_ms(p99, 1),
             f"<= {TARGET_P99_S * 1000:.0f} ms", "met" if p99 <= TARGET_P99_S else "MISSED"],
            ["metrics events per client (min / max)", f"{min(counts, default=0)} / "
             f"{max(counts, default=0)}", f"{args.epochs} each",
             "met" if all(complete) and not errors and len(results) == args.clients else "MISSED"],
            ["clients that got every epoch", f"{sum(complete)} of {len(results)}", "all", ""],
            ["points per upload request (median / max)",
             f"{median(batch_sizes):.0f} / {max(batch_sizes, default=0)}", "", ""],
        ],
    )
    if errors:
        print(f"client errors: {errors[:5]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="SSE clients (default 50)")
    parser.add_argument("--epochs", type=int, default=200, help="epochs to stream (default 200)")
    parser.add_argument(
        "--model", choices=("tiny", "seed"), default="tiny",
        help="tiny: Dense 16 on two moons (quick epochs); seed: the seed's MLP on digits",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="batch size of the tiny model")
    parser.add_argument("--timeout", type=float, default=150.0, help="clients give up after (s)")
    parser.add_argument("--role", choices=("main", "clients"), default="main", help=argparse.SUPPRESS)
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
