"""A sweep in the terminal (`reglab sweep`): a progress bar per run while it trains, then
the summary as the sweep page words it: the best point by its mean best validation data
loss over seeds, the runner-up, and whether seed noise could explain the difference."""

from __future__ import annotations

import time
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reglab.client import ReglabClient

SWEEP_POLL_SECONDS = 1.0  # a sweep has no event stream of its own: its runs are polled
JUDGEMENTS = {
    "one_seed": "no judgement possible: one seed per point",
    "within_noise": "within seed noise",
    "real_difference": "a real difference",
    "too_early": "too early to judge",
}
AGAINST = {"runner_up": "vs the runner-up", "unregularized": "vs no regularization"}


def _run_state(run: dict[str, Any]) -> str:
    """A run's status and best validation data loss, or its error, in a few words."""
    state = run["status"]
    if run["best_val_data_loss"] is not None:
        state += f"  best val_data_loss {run['best_val_data_loss']:.4f}"
    if run["error"]:
        state += f": {run['error'][:60]}"
    return escape(state)


def watch_sweep(client: ReglabClient, detail: dict[str, Any], console: Console) -> dict[str, Any]:
    """Show each run's epochs until every run of the sweep has ended; the sweep then."""
    from app.spec import FINAL_STATUSES

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        overall = progress.add_task(
            f"[bold]sweep #{detail['id']}[/bold] {escape(detail['name'])}: runs ended",
            total=len(detail["runs"]),
            state="",
        )
        tasks: dict[int, Any] = {}
        while True:
            for run in detail["runs"]:
                if run["id"] not in tasks:
                    tasks[run["id"]] = progress.add_task(
                        f"  #{run['id']} {escape(run['name'])}", total=1, state=""
                    )
                progress.update(
                    tasks[run["id"]],
                    completed=run["epochs_done"],
                    total=max(run["epochs_total"], run["epochs_done"], 1),
                    state=_run_state(run),
                )
            ended = sum(run["status"] in FINAL_STATUSES for run in detail["runs"])
            counts = ", ".join(f"{count} {status}" for status, count in detail["counts"].items())
            progress.update(overall, completed=ended, total=len(detail["runs"]), state=counts)
            if ended == len(detail["runs"]):
                return detail
            time.sleep(SWEEP_POLL_SECONDS)
            try:
                detail = client.sweep(detail["id"])
            except httpx.TransportError:
                progress.update(overall, state="server unreachable, trying again")


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _spread(point: dict[str, Any]) -> str:
    """'0.399 ± 0.02 over 2 seeds', as the sweep page writes a point."""
    std = f" ± {_loss(point['std'])}" if point["std"] is not None else ""
    return f"{_loss(point['mean'])}{std} over {point['n']} seed{'' if point['n'] == 1 else 's'}"


def print_summary(detail: dict[str, Any], console: Console) -> None:
    """The sweep's points by their mean best validation data loss over seeds, the best
    and the runner-up, and whether seed noise could explain the difference."""
    summary = detail["summary"]
    counts = ", ".join(f"{count} {status}" for status, count in detail["counts"].items())
    table = Table(
        "point",
        "mean best val_data_loss",
        "side",
        "runs",
        title=f"sweep #{detail['id']} {escape(detail['name'])}: {counts}",
    )
    for point in summary["points"]:
        table.add_row(
            escape(point["label"]),
            _spread(point) if point["n"] else "no finished run",
            point["side"] or "",
            ", ".join(f"#{run_id}" for run_id in point["all_run_ids"]),
        )
    console.print(table)
    best, runner_up = summary["best"], summary["runner_up"]
    if best is None:
        console.print("No finished run yet: the best point comes with the first results.")
    else:
        runs = ", ".join(f"#{run_id}" for run_id in best["run_ids"])
        line = f"Best mean: [bold]{escape(best['label'])}[/bold] {_spread(best)} (runs {runs})"
        if runner_up is not None:
            line += f" · runner-up {escape(runner_up['label'])} {_spread(runner_up)}"
        console.print(line, highlight=False)
    judgement = JUDGEMENTS.get(summary["judgement"], summary["judgement"])
    console.print(f"[bold]{judgement}[/bold] · {escape(summary['text'])}", highlight=False)
    for comparison in summary["comparisons"]:
        numbers = [f"difference {_loss(comparison['difference'])}"]
        if comparison["std_error"] is not None:
            numbers.append(f"standard error {_loss(comparison['std_error'])}")
        if comparison["p_value"] is not None:
            numbers.append(f"p = {comparison['p_value']:.2g}")
        numbers.append(f"n = {' and '.join(map(str, comparison['n']))} seeds")
        if comparison["p_value"] is None:
            verdict = "no test with one seed"
        elif comparison["distinguishable"]:
            verdict = "told apart from seed noise"
        else:
            verdict = "within seed noise"
        against = AGAINST.get(comparison["against"], comparison["against"])
        console.print(
            f"  {against} {escape(comparison['label'])}: {', '.join(numbers)}: {verdict}",
            highlight=False,
        )
