"""What the `reglab` command's modules share (reglab/cli.py, reglab/cli_runs.py): the
`--server` option, the error console and `fail`, which says what went wrong and exits 1.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from reglab.connection import ReglabError

__all__ = ["ServerOption", "err", "fail"]

err = Console(stderr=True)

ServerOption = Annotated[
    str | None, typer.Option("--server", help="Server URL [env REGLAB_SERVER_URL]")
]


def fail(error: Exception) -> NoReturn:
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
