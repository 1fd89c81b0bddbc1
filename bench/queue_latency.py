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
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    ROOT,
    Server,
    loadavg,
    machine,
    median,
    print_table,
    quiet_env,
    stop_process,
    tiny_spec,
)

TARGET_S = 1.5
FINAL = ("succeeded", "failed", "cancelled")
TICKS = os.sysconf("SC_CLK_TCK")


# --- the worker's training child --------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and "worker.child" in cmdline:
            found.append(int(entry.name))
    return found


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def wait_warm_child(worker_pid: int, *, quiet_for: float = 1.0, timeout: float = 60.0) -> float:
    """Wait until the worker's idle child has imported TensorFlow and gone quiet.

    Returns the child's CPU seconds. Warm = at least 1 s of CPU used, then none for
    `quiet_for` seconds (it blocks on its stdin, waiting for a job).
    """
    deadline = time.monotonic() + timeout
    last: tuple[int, float] | None = None
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        children = _children(worker_pid)
        if len(children) == 1:
            pid = children[0]
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                if last is None or last[0] != pid or cpu != last[1]:
                    last, quiet_since = (pid, cpu), time.monotonic()
                elif cpu >= 1.0 and time.monotonic() - quiet_since >= quiet_for:
                    return cpu
        time.sleep(0.1)
    raise RuntimeError(f"no warm training child under worker {worker_pid} after {timeout:.0f} s")


# --- one timed run ----------------------------------------------------------------------


def timed_run(url: str, spec: dict[str, Any]) -> dict[str, float]:
    import httpx

    from reglab.client import ReglabClient, parse_sse

    figures: dict[str, float] = {}
    with ReglabClient(url) as client, httpx.Client(base_url=url, timeout=30.0) as http:
        wall0 = time.time()
        t0 = time.perf_counter()
        run = client.submit(spec)
        figures["post"] = time.perf_counter() - t0
        status = None
        with http.stream(
            "GET",
            f"/api/experiments/{run['id']}/events",
            timeout=httpx.Timeout(10.0, read=120.0),
        ) as response:
            response.raise_for_status()
            for event in parse_sse(response.iter_lines()):
                now = time.perf_counter()
                if event.kind == "status":
                    status = event.data.get("status")
                    if (
                        status == "running"
                        and event.data.get("device")
                        and "started" not in figures
                    ):
                        figures["started"] = now - t0
                    if status in FINAL:
                        break
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
    rows: list[dict[str, float]] = []
    with Server() as server:
        assert server.folder is not None
        log_path = server.folder / "worker.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reglab.cli",
                    "worker",
                    "--server",
                    server.url,
                    "--gpus",
                    "none",
                ],
                cwd=ROOT,
                env=quiet_env(REGLAB_SERVER_URL=server.url),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
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
                    if worker.poll() is not None:
                        raise RuntimeError(f"worker exited ({worker.returncode})")
            finally:
                stop_process(worker)
        errors = server.error_summary()
    print(f"at the end: {loadavg()}")
    if errors:
        print("server log, errors:")
        print(errors)

    def ms(value: float) -> str:
        return f"{value * 1000:.0f} ms"

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
            [
                index + 1,
                ms(r["post"]),
                ms(r["to_claim"]),
                ms(r.get("started", float("nan"))),
                ms(r["first_epoch"]),
                ms(r["claim_to_epoch_begin"]),
                ms(r["epoch_seconds"]),
                ms(r["to_client"]),
            ]
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
                "met" if p50 <= TARGET_S else "MISSED",
            ],
            [
                "submit -> first epoch streamed, max",
                f"{worst:.3f} s",
                f"<= {TARGET_S} s",
                "met" if worst <= TARGET_S else "MISSED",
            ],
            [
                "  of which submit -> claimed (median)",
                ms(median([r["to_claim"] for r in rows])),
                "",
                "",
            ],
            [
                "  of which claimed -> first epoch began (median)",
                ms(median([r["claim_to_epoch_begin"] for r in rows])),
                "",
                "",
            ],
            [
                "  of which the first epoch (median)",
                ms(median([r["epoch_seconds"] for r in rows])),
                "",
                "",
            ],
            [
                "  of which epoch end -> SSE client (median)",
                ms(median([r["to_client"] for r in rows])),
                "",
                "",
            ],
            ["runs", str(len(rows)), "", ""],
        ],
    )


if __name__ == "__main__":
    main()
