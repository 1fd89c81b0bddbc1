"""The `reglab` commands over runs: submit, watch, ls, tag, sweep, show and cancel, and
what they print (a run's progress and summary, the runs table, a run's tags).

They are plain functions; reglab/cli.py registers them on the `reglab` command, after
serve, worker and up, so the command's list and order are written in one place.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reglab.cli_common import ServerOption, fail
from reglab.client import ReglabClient, ReglabError, server_url
from reglab.frames import flatten_run, to_csv
from reglab.sweep_view import print_summary, watch_sweep

__all__ = ["cancel", "list_runs", "show", "submit", "sweep", "tag", "watch"]

console = Console()


def submit(
    file: Annotated[
        Path, typer.Argument(help="Experiment spec (JSON)", exists=True, dir_okay=False)
    ],
    watch: Annotated[bool, typer.Option("--watch", help="Follow it until it ends")] = False,
    server: ServerOption = None,
) -> None:
    """Queue an experiment from a JSON spec."""
    try:
        spec = json.loads(file.read_text())
    except ValueError as error:
        fail(ValueError(f"{file} is not valid JSON: {error}"))
    with ReglabClient(server_url(server)) as client:
        try:
            run = client.submit(spec)
        except (ReglabError, httpx.HTTPError) as error:
            fail(error)
        console.print(
            f"queued experiment [bold]{run['id']}[/bold] ({run['name']}): {run['regularization']}"
        )
        if watch:
            _watch(client, run["id"])


def _format_values(values: dict[str, float], names: tuple[str, ...]) -> str:
    return "  ".join(f"{name} {values[name]:.4f}" for name in names if name in values)


def _watch(client: ReglabClient, experiment_id: int) -> None:
    run = client.get(experiment_id)
    classification = run["task"] == "classification"
    shown = ("loss", "val_loss", "val_data_loss", "val_accuracy" if classification else "val_mae")
    status = run["status"]
    progress = Progress(
        TextColumn(f"[bold]#{experiment_id}[/bold] {run['name']}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[values]}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("epochs", total=run["epochs_total"], values=status)
        for event in client.events(experiment_id):
            if event.kind == "metrics":
                progress.update(
                    task,
                    completed=event.data["epoch"] + 1,
                    values=_format_values(event.data["values"], shown),
                )
            elif event.kind == "status":
                status = event.data["status"]
                if status in ("queued", "running") and event.data.get("device"):
                    progress.console.print(f"training on {event.data['device']}")
    _summary(client.get(experiment_id))
    if status != "succeeded":
        raise typer.Exit(1)


def _summary(run: dict[str, Any]) -> None:
    style = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(run["status"], "")
    console.print(
        f"experiment {run['id']} [{style}]{run['status']}[/{style}]"
        + (f" on {run['device']}" if run["device"] else "")
    )
    if run["error"]:
        console.print(f"[red]{run['error']}[/red] (epoch {run['error_epoch']})")
    table = Table("metric", "value", title="final metrics")
    for name, value in sorted(run["last_metrics"].items()):
        if "/" not in name:
            table.add_row(name, f"{value:.5g}")
    for name, value in sorted((run["test_metrics"] or {}).items()):
        table.add_row(name, f"{value:.5g}")
    if run["best_epoch"] is not None:
        table.add_row("best_epoch", str(run["best_epoch"]))
    console.print(table)


def watch(experiment_id: int, server: ServerOption = None) -> None:
    """Follow a run live until it ends."""
    with ReglabClient(server_url(server)) as client:
        try:
            _watch(client, experiment_id)
        except (ReglabError, httpx.HTTPError) as error:
            fail(error)


def list_runs(
    filter: Annotated[
        str | None,
        typer.Option(
            "--filter",
            "-f",
            help="Only the runs that match, e.g. \"status = 'succeeded' and "
            'metrics.val_data_loss.best < 0.4" (README: Query runs)',
        ),
    ] = None,
    order_by: Annotated[
        str | None,
        typer.Option(
            "--order-by",
            "-o",
            help="e.g. 'metrics.val_data_loss.best asc, created desc' (newest first by default)",
        ),
    ] = None,
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, ...")] = None,
    name: Annotated[str | None, typer.Option(help="Part of the name")] = None,
    limit: Annotated[int, typer.Option(min=0, help="At most this many runs; 0: every match")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the runs as JSON, as the API gives them")
    ] = False,
    as_csv: Annotated[
        bool,
        typer.Option(
            "--csv",
            help="Print one CSV row per run, with the columns of ReglabClient.runs_frame",
        ),
    ] = False,
    server: ServerOption = None,
) -> None:
    """List the runs that match a filter, in the order asked, as a table, JSON or CSV."""
    if as_json and as_csv:
        fail(ValueError("--json and --csv: choose one"))
    with ReglabClient(server_url(server)) as client:
        try:
            if as_json or as_csv:
                runs = list(
                    client.runs(
                        filter,
                        order_by,
                        limit or None,
                        metrics="*" if as_csv else None,
                        status=status,
                        name=name,
                    )
                )
                if as_csv:
                    judged = client.verdicts(run["id"] for run in runs)
                    rows = [
                        flatten_run(run, (judged.get(run["id"]) or {}).get("verdict"))
                        for run in runs
                    ]
                    sys.stdout.write(to_csv(rows))
                else:
                    sys.stdout.write(json.dumps(runs, indent=2) + "\n")
                return
            page = client.list(
                filter=filter,
                order_by=order_by,
                status=status,
                name=name,
                limit=limit or 500,
            )
        except (ReglabError, httpx.HTTPError) as error:
            fail(error)
    tagged = any(run["tags"] for run in page["items"])  # a tags column only when needed
    table = Table(title=f"{len(page['items'])} of {page['total']} experiment(s)")
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("status", no_wrap=True)
    table.add_column("epoch", no_wrap=True)
    table.add_column("regularization")
    table.add_column("best val_data_loss")
    if tagged:
        table.add_column("tags")
    table.add_column("device")
    for run in page["items"]:
        best = run["best_val_data_loss"]
        cells = [
            str(run["id"]),
            escape(run["name"]),
            run["status"],
            f"{run['epochs_done']}/{run['epochs_total']}",
            escape(run["regularization"]),
            "" if best is None else f"{best:.4f}",
            escape(_tags_text(run["tags"])),
            escape(run["device"] or ""),
        ]
        table.add_row(*(cells if tagged else cells[:6] + cells[7:]))
    console.print(table)


def _tags_text(tags: dict[str, str | None]) -> str:
    """Tags as `reglab tag` takes them: key=value, or a bare label."""
    return " ".join(key if value is None else f"{key}={value}" for key, value in tags.items())


def tag(
    experiment_id: Annotated[int, typer.Argument(help="The run's id")],
    tags: Annotated[
        list[str] | None,
        typer.Argument(help="key=value to set a tag, or a bare label", show_default=False),
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", "-r", help="A tag's key to remove")
    ] = None,
    notes: Annotated[
        str | None, typer.Option("--notes", help="Replace the run's notes ('' clears them)")
    ] = None,
    server: ServerOption = None,
) -> None:
    """Tag a run (key=value, or a bare label) and change its notes, at any time."""
    wanted: dict[str, str | None] = {}
    for item in tags or []:
        key, equals, value = item.partition("=")
        wanted[key] = value if equals else None
    if not wanted and not remove and notes is None:
        fail(ValueError("nothing to change: give key=value, a label, --remove or --notes"))
    with ReglabClient(server_url(server)) as client:
        try:
            run = client.edit(
                experiment_id,
                tags=wanted,
                remove_tags=remove or [],
                notes=notes or None,
                set_notes=notes is not None,
            )
        except (ReglabError, httpx.HTTPError) as error:
            fail(error)
    console.print(
        f"experiment {run['id']} tags: {escape(_tags_text(run['tags'])) or '(none)'}",
        highlight=False,
    )
    if run["notes"]:
        console.print(f"notes: {escape(run['notes'])}", highlight=False)


def sweep(
    source: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="A sweep request (JSON: name, base spec, axes, seeds...), or the id of a "
            "sweep already queued",
        ),
    ],
    watch: Annotated[
        bool, typer.Option("--watch", help="Follow every run, then print the summary")
    ] = False,
    server: ServerOption = None,
) -> None:
    """Queue a sweep from a JSON file (or look at a queued one by its id); with --watch,
    follow each of its runs and end with its summary: the best point by its mean over
    seeds and whether it beats the runner-up beyond seed noise. With --watch the exit
    status is 1 when a run failed or was cancelled."""
    path = Path(source)
    with ReglabClient(server_url(server)) as client:
        try:
            if source.isdigit() and not path.exists():
                detail = client.sweep(int(source))
            else:
                try:
                    request = json.loads(path.read_text())
                except OSError as error:
                    fail(ValueError(f"cannot read {source}: {error.strerror}"))
                except ValueError as error:
                    fail(ValueError(f"{source} is not valid JSON: {error}"))
                detail = client.submit_sweep(request)
                runs, seeds = len(detail["experiment_ids"]), detail["seeds"]
                shape = f" ({runs // seeds} points x {seeds} seeds)" if seeds > 1 else ""
                console.print(
                    f"queued sweep [bold]{detail['id']}[/bold] ({escape(detail['name'])}): "
                    f"{runs} runs{shape}",
                    highlight=False,
                )
            if watch:
                detail = watch_sweep(client, detail, console)
        except (ReglabError, httpx.HTTPError) as error:
            fail(error)
    print_summary(detail, console)
    if watch and any(run["status"] in ("failed", "cancelled") for run in detail["runs"]):
        raise typer.Exit(1)


def show(
    experiment_id: int,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON")] = False,
    server: ServerOption = None,
) -> None:
    """Show one experiment."""
    with ReglabClient(server_url(server)) as client:
        try:
            run = client.get(experiment_id)
        except (ReglabError, httpx.HTTPError) as error:
            fail(error)
    if as_json:
        console.print_json(data=run)
        return
    console.print(f"[bold]#{run['id']} {run['name']}[/bold]  {run['regularization']}")
    _summary(run)


def cancel(experiment_id: int, server: ServerOption = None) -> None:
    """Cancel a queued or running experiment."""
    with ReglabClient(server_url(server)) as client:
        try:
            run = client.cancel(experiment_id)
        except (ReglabError, httpx.HTTPError) as error:
            fail(error)
    console.print(f"experiment {run['id']} {run['status']}")
