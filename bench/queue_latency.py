"""From submitting an experiment to its first epoch on a live page, with a warm slot.

Starts a real server (`python -m reglab.cli serve`, temp SQLite) and a real worker
(`python -m reglab.cli worker --server URL --gpus none`, one CPU slot) as subprocesses.
A warm-up run is submitted and followed to its end first; then the benchmark waits until
the slot's next training child is warm (TensorFlow imported: its CPU time stops growing).
Then, N times (`--runs`, default 5): take the clock, POST a tiny experiment (a small dense
network on two moons), open its SSE stream, and stop the clock at the first `metrics`
event; follow the run to its end and wait for the next child to be warm again.

Printed: p50 and max of submit -> first epoch streamed (target <= 1.5 s), and where the
time went, per run: submit -> claimed (the run's `started_at`), claimed -> first epoch
began (the child gets the job, loads the data, builds the model), the first epoch itself
(`epoch_seconds`, graph tracing included), and the epoch's end -> its SSE arrival.

    .venv/bin/python bench/queue_latency.py --runs 5
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    Server,
    Worker,
    fmt_ms,
    loadavg,
    machine,
    median,
    print_table,
    tiny_spec,
    verdict,
    wait_warm_child,  # bench/sweep_throughput.py imports it from here
)

TARGET_S = 1.5
# timed_run's figures: the per-run table's columns, and the parts of the time.
RUN_COLUMNS = (
    "post",
    "to_claim",
    "started",
    "first_epoch",
    "claim_to_epoch_begin",
    "epoch_seconds",
    "to_client",
)
PARTS = {
    "to_claim": "submit -> claimed",
    "claim_to_epoch_begin": "claimed -> first epoch began",
    "epoch_seconds": "the first epoch",
    "to_client": "epoch end -> SSE client",
}


# --- one timed run ----------------------------------------------------------------------


def timed_run(url: str, spec: dict[str, Any]) -> dict[str, float]:
    """Submit `spec`, follow its events to the end: the seconds from just before the POST
    to each mark (answered, device reported, first epoch streamed) and the first epoch's
    own figures."""
    from reglab.client import ReglabClient

    figures: dict[str, float] = {}
    with ReglabClient(url) as client:
        wall0 = time.time()
        t0 = time.perf_counter()
        run = client.submit(spec)
        figures["post"] = time.perf_counter() - t0
        status = None
        # events() ends after the final status.
        for event in client.events(run["id"], reconnect=False):
            now = time.perf_counter()
            if event.kind == "status":
                status = event.data.get("status")
                if status == "running" and event.data.get("device") and "started" not in figures:
                    figures["started"] = now - t0
            elif event.kind == "metrics" and "first_epoch" not in figures:
                figures["first_epoch"] = now - t0
                arrival_wall = time.time()
                epoch_end = float(event.data["time"])
                epoch_seconds = float(event.data["values"].get("epoch_seconds", float("nan")))
                figures["epoch_seconds"] = epoch_seconds
                figures["to_client"] = arrival_wall - epoch_end
                figures["_epoch_end_wall"] = epoch_end
        final = client.get(run["id"])
    if status != "succeeded":
        raise RuntimeError(f"run {run['id']} ended {status}: {final.get('error')}")
    if "first_epoch" not in figures:
        raise RuntimeError(f"run {run['id']}: no metrics event")
    claimed = datetime.fromisoformat(final["started_at"]).timestamp()
    figures["to_claim"] = claimed - wall0
    figures["claim_to_epoch_begin"] = (
        figures["_epoch_end_wall"] - figures["epoch_seconds"] - claimed
    )
    return figures


def measure(args: argparse.Namespace) -> tuple[list[dict[str, float]], str]:
    """A warm-up run, then `args.runs` timed ones, each once the slot's child is warm:
    their figures, and the server log's errors."""
    rows: list[dict[str, float]] = []
    with Server() as server, Worker(server) as worker:
        print(f"server {server.url}, worker pid {worker.pid}; warm-up run", flush=True)
        began = time.perf_counter()
        timed_run(server.url, tiny_spec(args.epochs, "bench-queue-warmup"))
        print(
            f"warm-up run (cold child) took {time.perf_counter() - began:.1f} s to finish",
            flush=True,
        )
        for index in range(args.runs):
            waited = time.perf_counter()
            cpu = wait_warm_child(worker.pid, quiet_for=args.quiet_for)
            waited = time.perf_counter() - waited
            figures = timed_run(server.url, tiny_spec(args.epochs, f"bench-queue-{index}"))
            rows.append(figures)
            print(
                f"run {index + 1}/{args.runs}: first epoch streamed after "
                f"{figures['first_epoch']:.3f} s (child warm: {cpu:.1f} s CPU, "
                f"waited {waited:.1f} s)",
                flush=True,
            )
            if worker.exited() is not None:
                raise RuntimeError(f"worker exited ({worker.exited()})")
        return rows, server.error_summary()


def print_report(rows: list[dict[str, float]]) -> None:
    """The per-run table and the results against the target."""
    print_table(
        "Per run (seconds from just before the POST unless said)",
        [
            "run",
            "POST answered",
            "claimed",
            "device reported",
            "first epoch streamed",
            "claim -> epoch began",
            "first epoch",
            "epoch end -> client",
        ],
        [
            [index + 1, *(fmt_ms(r.get(key, float("nan")), 0) for key in RUN_COLUMNS)]
            for index, r in enumerate(rows)
        ],
    )
    firsts = [r["first_epoch"] for r in rows]
    p50, worst = median(firsts), max(firsts)
    print_table(
        "Results",
        ["figure", "measured", "target", ""],
        [
            [
                "submit -> first epoch streamed, p50",
                f"{p50:.3f} s",
                f"<= {TARGET_S} s",
                verdict(p50 <= TARGET_S),
            ],
            [
                "submit -> first epoch streamed, max",
                f"{worst:.3f} s",
                f"<= {TARGET_S} s",
                verdict(worst <= TARGET_S),
            ],
            *(
                [f"  of which {label} (median)", fmt_ms(median([r[key] for r in rows]), 0), "", ""]
                for key, label in PARTS.items()
            ),
            ["runs", str(len(rows)), "", ""],
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed submissions (default 5)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each tiny run")
    parser.add_argument(
        "--quiet-for",
        type=float,
        default=1.5,
        help="a child is warm once its CPU time stood still this long (s)",
    )
    args = parser.parse_args()

    print(f"machine: {machine()}; {loadavg()}")
    rows, errors = measure(args)
    print(f"at the end: {loadavg()}")
    if errors:
        print("server log, errors:")
        print(errors)
    print_report(rows)


if __name__ == "__main__":
    main()
