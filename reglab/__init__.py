"""reglab's client side: what a training script or a terminal imports.

`ReglabClient` (REST and event streams, httpx), `Run` (any training loop streamed as a
run) and the `reglab` command need neither Keras nor the server's packages;
`ReglabCallback` imports Keras, so it is loaded on first use only. `Run` is loaded on
first use too.

Example:
    >>> from reglab import ReglabCallback, ReglabClient, Run
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reglab.client import ReglabClient, ServerEvent
from reglab.connection import LeaseLostError, ReglabError
from reglab.worker_client import WorkerClient

if TYPE_CHECKING:
    from reglab.callback import ReglabCallback
    from reglab.run import Run

__all__ = [
    "LeaseLostError",
    "ReglabCallback",
    "ReglabClient",
    "ReglabError",
    "Run",
    "ServerEvent",
    "WorkerClient",
]


def __getattr__(name: str) -> Any:
    """`from reglab import ReglabCallback` imports Keras then, and only then; `Run` is
    loaded on first use (it imports no framework)."""
    if name == "ReglabCallback":
        from reglab.callback import ReglabCallback

        return ReglabCallback
    if name == "Run":
        from reglab.run import Run

        return Run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
