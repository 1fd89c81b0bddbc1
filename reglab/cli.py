"""The `reglab` command: serve, worker, up, submit, sweep, ls, tag, show, watch, cancel.

This module holds the app, the commands that run the server and the worker (serve,
worker, up) and `main`; the commands over runs live in reglab/cli_runs.py and are
registered here, in the order `reglab --help` lists them.

Importing it loads the client only: `serve` and `up` import the server (app/) inside the
command, `worker` the worker (worker/), so a machine that only submits and watches needs
neither's packages. `python -m reglab.cli` runs it too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Annotated, Any

import typer

from reglab.cli_common import ServerOption, err, fail
from reglab.cli_runs import cancel, list_runs, show, submit, sweep, tag, watch
from reglab.connection import server_url

cli = typer.Typer(
    help="reglab: a self-hosted lab for regularizing neural networks.",
    no_args_is_help=True,
    add_completion=False,
)


def _env_number(name: str, default: float, low: float, high: float, what: str) -> float:
    """A number from the environment, or `default`; out of [low, high] is an error."""
    text = os.environ.get(name, "").strip() or str(default)
    try:
        value = float(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        fail(ValueError(f"{name} must be {what} {low:g} to {high:g}: {text}"))
    return value


def _claim_wait() -> float:
    """REGLAB_CLAIM_WAIT_SECONDS (0 to 60, default 20): how long a claim long-polls."""
    return _env_number("REGLAB_CLAIM_WAIT_SECONDS", 20, 0, 60, "a number of seconds")


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
        fail(error)
    share = os.environ.get("REGLAB_GPU_SHARE", "").strip().lower()
    if share not in ("", "0", "1", "false", "true", "no", "yes"):
        fail(ValueError(f"REGLAB_GPU_SHARE must be 1 or 0: {share}"))
    # A warm child trains up to REGLAB_RUNS_PER_CHILD jobs (Keras' session cleared
    # between them) before it is recycled, sooner once its memory has grown by
    # REGLAB_CHILD_MEMORY_GROWTH_MB.
    supervisor = Supervisor(
        server_url(server),
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


# The commands over runs (reglab/cli_runs.py), after the server's in `reglab --help`.
cli.command()(submit)
cli.command()(watch)
cli.command("ls")(list_runs)
cli.command()(tag)
cli.command()(sweep)
cli.command()(show)
cli.command()(cancel)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
