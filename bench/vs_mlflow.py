"""reglab against MLflow's tracking server: per-epoch logging cost and a 20-run fetch.

Starts both servers side by side, each on its own temporary SQLite file: reglab's
(`python -m reglab.cli serve`) and MLflow's (`mlflow server --workers 1`, the `bench`
extra: `pip install -e '.[bench]'`). Then, in this one process:

1. Upload: the same plain Keras script (Dense 16 on random data, 100 epochs, 10 metrics
   per epoch: loss, accuracy, mae, mse, binary_crossentropy and their val_ twins) trains
   once per tool per round, the tools in a rotating order so they share the machine's
   noise. The tools are reglab's `ReglabCallback` and a Keras callback calling
   `MlflowClient().log_batch(run_id, metrics=[10 Metric])` in `on_epoch_end`, plainly
   (synchronous, the client's default) and with `synchronous=False` (MLflow's async
   logging). Measured: the time the training thread spends in each callback's
   `on_epoch_end` (perf_counter around it), and in `on_train_end` (the flush). Every
   epoch is checked on each server afterwards.
2. Fetch: 20 runs x 100 epochs x 10 metrics are created in each server through its API
   (not timed), then a client fetches all 20 full histories: reglab with one
   `GET /api/metrics?ids=...`, MLflow with `GET .../metrics/get-history` per run and
   metric (what `MlflowClient.get_metric_history` sends), and, for reference, MLflow's
   UI call `get-history-bulk-interval` (one request per metric for all runs) and the
   `MlflowClient` itself. p50 over `--fetch-repeats`, the clients alternating.

Goals (issue #5): reglab's per-epoch p99 <= 2 ms and >= 10x faster than MLflow's plain
`log_batch`; the 20-run fetch in one request, <= 100 ms.

The pieces: bench/_mlflow_upload.py (1.) and bench/_mlflow_fetch.py (2.).

    .venv/bin/python bench/vs_mlflow.py            # --rounds 3 --epochs 100 --runs 20
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench._common import (
    MlflowServer,
    Server,
    fmt_ms,
    loadavg,
    machine,
    median,
    percentile,
    print_table,
    verdict,
)
from bench._mlflow_fetch import REGLAB_FETCH, Fetch, fetch_rounds, fill_runs
from bench._mlflow_upload import REGLAB_UPLOAD, Holds, profile_reglab_hold, upload_rounds

GOAL_P99_S = 0.002
GOAL_SPEEDUP = 10.0
GOAL_FETCH_S = 0.100


def _missing_mlflow() -> str | None:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return "MLflow is not installed: `.venv/bin/pip install -e '.[bench]'`"
    return None


# --- report -------------------------------------------------------------------------------


def report_uploads(results: dict[str, list[Holds]]) -> dict[str, tuple[float, float]]:
    """Each tool's time in on_epoch_end and on_train_end; its (p50, p99) by name."""
    rows = []
    figures: dict[str, tuple[float, float]] = {}
    for name, fits in results.items():
        holds = [hold for fit in fits for hold in fit.epochs]
        p50, p99 = median(holds), percentile(holds, 99)
        figures[name] = (p50, p99)
        epochs = sum(len(fit.epochs) for fit in fits)
        rows.append(
            [
                name,
                fmt_ms(p50, 3),
                fmt_ms(p99, 3),
                fmt_ms(max(holds), 2),
                fmt_ms(median([fit.train_end for fit in fits]), 1),
                fmt_ms(median([fit.fit_seconds / len(fit.epochs) for fit in fits]), 1),
                fmt_ms(sum(fit.server_cpu for fit in fits) / epochs, 2),
            ]
        )
    print_table(
        f"Per-epoch upload: time in on_epoch_end, {sum(len(f.epochs) for f in fits)} epochs "
        f"per tool ({len(fits)} rounds)",
        [
            "tool",
            "p50",
            "p99",
            "max",
            "on_train_end p50",
            "epoch p50 (whole fit)",
            "server CPU per epoch",
        ],
        rows,
    )
    return figures


def report_ratios(upload: dict[str, tuple[float, float]]) -> None:
    """Each MLflow way's per-epoch time ÷ reglab's, p50 and p99."""
    reglab_p50, reglab_p99 = upload[REGLAB_UPLOAD]
    rows = [
        [name, f"{p50 / reglab_p50:.1f}x", f"{p99 / reglab_p99:.1f}x"]
        for name, (p50, p99) in upload.items()
        if name.startswith("MLflow")
    ]
    print_table("MLflow's time ÷ reglab's, per epoch", ["against", "p50", "p99"], rows)


def report_fetches(args: argparse.Namespace, fetches: dict[str, Fetch]) -> float:
    """Every way of fetching the histories, against reglab's; returns reglab's p50."""
    fetch_p50 = {name: median(fetch.seconds) for name, fetch in fetches.items()}
    reglab_fetch = fetch_p50[REGLAB_FETCH]
    rows = [
        [
            name,
            str(fetch.requests),
            fmt_ms(fetch_p50[name], 1),
            fmt_ms(percentile(fetch.seconds, 90), 1),
            fmt_ms(median(fetch.server_cpu), 1),
            fmt_ms(median(fetch.client_cpu), 1),
            f"{fetch_p50[name] / reglab_fetch:.1f}x",
        ]
        for name, fetch in fetches.items()
    ]
    print_table(
        f"Fetch {args.runs} runs x {args.epochs} epochs x 10 metrics, full histories "
        f"({args.fetch_repeats} repeats each)",
        ["way", "requests", "p50", "p90", "server CPU p50", "client CPU p50", "÷ reglab"],
        rows,
    )
    return reglab_fetch


def report_goals(upload: dict[str, tuple[float, float]], reglab_fetch: float) -> None:
    """The three goals of issue #5, met or missed."""
    reglab_p50, reglab_p99 = upload[REGLAB_UPLOAD]
    sync_p50, sync_p99 = upload["MLflow log_batch (synchronous)"]
    speedup = sync_p50 / reglab_p50
    print()
    print("Goals:")
    print(
        f"  reglab per-epoch p99 {fmt_ms(reglab_p99, 3)} <= 2 ms: "
        f"{verdict(reglab_p99 <= GOAL_P99_S)}"
    )
    print(
        f"  reglab >= {GOAL_SPEEDUP:.0f}x faster than MLflow's plain log_batch: p50 "
        f"{speedup:.1f}x, p99 {sync_p99 / reglab_p99:.1f}x: "
        f"{verdict(min(speedup, sync_p99 / reglab_p99) >= GOAL_SPEEDUP)}"
    )
    print(
        f"  20-run fetch in one request, p50 {fmt_ms(reglab_fetch, 1)} <= 100 ms: "
        f"{verdict(reglab_fetch <= GOAL_FETCH_S)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="fits per tool (default 3)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs per fit and per run")
    parser.add_argument("--runs", type=int, default=20, help="runs fetched (default 20)")
    parser.add_argument("--fetch-repeats", type=int, default=7, help="timed fetches per way")
    args = parser.parse_args()
    missing = _missing_mlflow()
    if missing:
        sys.exit(missing)
    import mlflow

    print(f"machine: {machine()}; {loadavg()}; MLflow {mlflow.__version__}", flush=True)
    with Server() as reglab, MlflowServer() as mlflow_server:
        print(f"reglab {reglab.url}, MLflow {mlflow_server.url}", flush=True)
        uploads = upload_rounds(reglab, mlflow_server, args.rounds, args.epochs)
        profile = profile_reglab_hold(reglab.url, args.epochs)
        print("filling the fetch runs (not timed) ...", flush=True)
        reglab_ids, mlflow_ids = fill_runs(reglab, mlflow_server, args.runs, args.epochs)
        fetches = fetch_rounds(
            reglab, mlflow_server, reglab_ids, mlflow_ids, args.epochs, args.fetch_repeats
        )
        errors = reglab.error_summary() + mlflow_server.error_summary()
    print(f"at the end: {loadavg()}")
    if errors:
        print("server logs, errors:\n" + errors)

    upload = report_uploads(uploads)
    print_table(
        "Diagnostic: ReglabCallback.on_epoch_end's steps, timed apart in a loop (not in fit)",
        ["GIL switch interval", "step", "p50", "p99", "max"],
        profile,
    )
    report_ratios(upload)
    report_goals(upload, report_fetches(args, fetches))


if __name__ == "__main__":
    main()
