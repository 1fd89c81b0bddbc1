"""The `reglab` command: serve, worker, up, submit, sweep, ls, tag, show, watch, cancel.

Importing it loads the client only: `serve` and `up` import the server (app/) inside the
command, `worker` the worker (worker/), so a machine that only submits and watches needs
neither's packages. `python -m reglab.cli` runs it too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reglab.client import ReglabClient, ReglabError, server_url
from reglab.frames import flatten_run, to_csv
from reglab.sweep_view import print_summary, watch_sweep

cli = typer.Typer(
    help="reglab: a self-hosted lab for regularizing neural networks.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

ServerOption = Annotated[
    str | None, typer.Option("--server", help="Server URL [env REGLAB_SERVER_URL]")
]


def _server(url: str | None) -> str:
    return server_url(url)


def _env_number(name: str, default: float, low: float, high: float, what: str) -> float:
    """A number from the environment, or `default`; out of [low, high] is an error."""
    text = os.environ.get(name, "").strip() or str(default)
    try:
        value = float(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        _fail(ValueError(f"{name} must be {what} {low:g} to {high:g}: {text}"))
    return value


def _claim_wait() -> float:
    """REGLAB_CLAIM_WAIT_SECONDS (0 to 60, default 20): how long a claim long-polls."""
    return _env_number("REGLAB_CLAIM_WAIT_SECONDS", 20, 0, 60, "a number of seconds")


def _fail(error: Exception) -> NoReturn:
    """Say what went wrong in plain words (a 422 as `field: message`, e.g. `filter: at
    27: expected a value after '>'`) and exit 1."""
    if isinstance(error, ReglabError) and isinstance(error.detail, list):
        for item in error.detail:
            field = item.get("field") or ".".join(map(str, item.get("loc", [])))
            message = str(item.get("msg", "")).removeprefix("Value error, ")
            err.print(f"[red]{escape(field)}:[/red] {escape(message)}", highlight=False)
    else:
        err.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
    raise typer.Exit(1)


class _QuietWorkerCalls(logging.Filter):
    """Leave successful worker calls (one per epoch and heartbeat) out of the access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            path, status = str(args[2]), args[4]
            return not (
                path.startswith("/api/worker/") and isinstance(status, int) and status < 400
            )
        return True


def _uvicorn_config(host: str, port: int) -> Any:
    import uvicorn

    from app.settings import get_settings

    settings = get_settings()
    config = uvicorn.Config(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
        log_level="info",
    )
    logging.getLogger("uvicorn.access").addFilter(_QuietWorkerCalls())
    return config


def _refuse_open_bind(host: str) -> None:
    """Without an access token the server trusts everyone who reaches it: loopback only."""
    from app.settings import get_settings, is_loopback

    if not is_loopback(host) and get_settings().token is None:
        err.print(
            f"[red]refusing to listen on {host} without an access token.[/red] Anyone who "
            "reaches this address could run and delete experiments. Set one, e.g.\n"
            "  export REGLAB_TOKEN=$(openssl rand -hex 24)\n"
            "  export REGLAB_WORKER_TOKEN=$(openssl rand -hex 24)\n"
            "and give REGLAB_WORKER_TOKEN to your workers (see README, Running it for a team)."
        )
        raise typer.Exit(2)


def _migrate() -> None:
    from app.migrate import upgrade

    upgrade()


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
) -> None:
    """Apply the migrations, then serve the API and the dashboard."""
    import uvicorn

    _refuse_open_bind(host)
    _migrate()
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once it is done
        uvicorn.Server(_uvicorn_config(host, port)).run()


@cli.command()
def worker(
    server: ServerOption = None,
    gpus: Annotated[str, typer.Option(help="all, none, or GPU indices or UUIDs like 0,1")] = "all",
    slots_per_gpu: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Training slots on each GPU, for small models (their children grow "
            "their GPU memory as they need it)",
        ),
    ] = 1,
) -> None:
    """Claim runs from a server and train them, one child process per GPU slot.

    A GPU slot claims only while its GPU has REGLAB_GPU_MIN_FREE_MB free (default 2048)
    and no other process computes on it (unless REGLAB_GPU_SHARE=1)."""
    from worker.devices import detect_gpus, plan_slots
    from worker.supervisor import Supervisor

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s worker %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        slots = plan_slots(detect_gpus(), gpus, slots_per_gpu)
    except ValueError as error:
        _fail(error)
    share = os.environ.get("REGLAB_GPU_SHARE", "").strip().lower()
    if share not in ("", "0", "1", "false", "true", "no", "yes"):
        _fail(ValueError(f"REGLAB_GPU_SHARE must be 1 or 0: {share}"))
    # A warm child trains up to REGLAB_RUNS_PER_CHILD jobs (Keras' session cleared
    # between them) before it is recycled, sooner once its memory has grown by
    # REGLAB_CHILD_MEMORY_GROWTH_MB.
    supervisor = Supervisor(
        _server(server),
        slots,
        claim_wait=_claim_wait(),
        runs_per_child=int(_env_number("REGLAB_RUNS_PER_CHILD", 20, 1, 10_000, "a count")),
        memory_growth_mb=_env_number(
            "REGLAB_CHILD_MEMORY_GROWTH_MB", 2048, 64, 1_000_000, "a size in MiB"
        ),
        min_free_mb=_env_number("REGLAB_GPU_MIN_FREE_MB", 2048, 0, 10_000_000, "a size in MiB"),
        share_gpus=share in ("1", "true", "yes"),
        # How often a slot whose GPU is busy looks again, and the worker reports its slots.
        gpu_poll=_env_number("REGLAB_GPU_POLL_SECONDS", 5, 0.05, 600, "a number of seconds"),
        report_every=_env_number(
            "REGLAB_WORKER_REPORT_SECONDS", 5, 0.05, 600, "a number of seconds"
        ),
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: supervisor.stop())
    try:
        supervisor.run()
    finally:
        supervisor.close()


@cli.command()
def up(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    gpus: Annotated[str, typer.Option(help="all, none, or GPU indices like 0,1")] = "all",
) -> None:
    """Serve and run one worker beside the server (what `make run` starts)."""
    import uvicorn

    _refuse_open_bind(host)
    _migrate()
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    worker_process: list[subprocess.Popen[bytes]] = []

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Stop the worker first, so it can hand its runs back while we still answer.
            if worker_process and worker_process[0].poll() is None:
                worker_process[0].send_signal(signal.SIGTERM)

                def then_exit() -> None:
                    try:
                        worker_process[0].wait(15)
                    except subprocess.TimeoutExpired:
                        worker_process[0].kill()
                    super(Server, self).handle_exit(sig, frame)

                threading.Thread(target=then_exit, daemon=True).start()
            else:
                super().handle_exit(sig, frame)

    server = Server(_uvicorn_config(host, port))

    def start_worker() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.should_exit:
            return
        env = {**os.environ, "REGLAB_SERVER_URL": url}
        worker_process.append(
            subprocess.Popen(
                [sys.executable, "-m", "reglab.cli", "worker", "--server", url, "--gpus", gpus],
                env=env,
                start_new_session=True,
            )
        )

    threading.Thread(target=start_worker, daemon=True).start()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.run()
    finally:
        if worker_process and worker_process[0].poll() is None:
            worker_process[0].terminate()
            worker_process[0].wait(15)


@cli.command()
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
        _fail(ValueError(f"{file} is not valid JSON: {error}"))
    with ReglabClient(_server(server)) as client:
        try:
            run = client.submit(spec)
        except (ReglabError, httpx.HTTPError) as error:
            _fail(error)
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


@cli.command()
def watch(experiment_id: int, server: ServerOption = None) -> None:
    """Follow a run live until it ends."""
    with ReglabClient(_server(server)) as client:
        try:
            _watch(client, experiment_id)
        except (ReglabError, httpx.HTTPError) as error:
            _fail(error)


@cli.command("ls")
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
        _fail(ValueError("--json and --csv: choose one"))
    with ReglabClient(_server(server)) as client:
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
            _fail(error)
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


@cli.command()
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
        _fail(ValueError("nothing to change: give key=value, a label, --remove or --notes"))
    with ReglabClient(_server(server)) as client:
        try:
            run = client.edit(
                experiment_id,
                tags=wanted,
                remove_tags=remove or [],
                notes=notes or None,
                set_notes=notes is not None,
            )
        except (ReglabError, httpx.HTTPError) as error:
            _fail(error)
    console.print(
        f"experiment {run['id']} tags: {escape(_tags_text(run['tags'])) or '(none)'}",
        highlight=False,
    )
    if run["notes"]:
        console.print(f"notes: {escape(run['notes'])}", highlight=False)


@cli.command()
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
    with ReglabClient(_server(server)) as client:
        try:
            if source.isdigit() and not path.exists():
                detail = client.sweep(int(source))
            else:
                try:
                    request = json.loads(path.read_text())
                except OSError as error:
                    _fail(ValueError(f"cannot read {source}: {error.strerror}"))
                except ValueError as error:
                    _fail(ValueError(f"{source} is not valid JSON: {error}"))
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
            _fail(error)
    print_summary(detail, console)
    if watch and any(run["status"] in ("failed", "cancelled") for run in detail["runs"]):
        raise typer.Exit(1)


@cli.command()
def show(
    experiment_id: int,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON")] = False,
    server: ServerOption = None,
) -> None:
    """Show one experiment."""
    with ReglabClient(_server(server)) as client:
        try:
            run = client.get(experiment_id)
        except (ReglabError, httpx.HTTPError) as error:
            _fail(error)
    if as_json:
        console.print_json(data=run)
        return
    console.print(f"[bold]#{run['id']} {run['name']}[/bold]  {run['regularization']}")
    _summary(run)


@cli.command()
def cancel(experiment_id: int, server: ServerOption = None) -> None:
    """Cancel a queued or running experiment."""
    with ReglabClient(_server(server)) as client:
        try:
            run = client.cancel(experiment_id)
        except (ReglabError, httpx.HTTPError) as error:
            _fail(error)
    console.print(f"experiment {run['id']} {run['status']}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
