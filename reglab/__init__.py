"""reglab's client side: what a training script or a terminal imports.

`ReglabClient` (REST and event streams, httpx) and the `reglab` command need neither
Keras nor the server's packages; `ReglabCallback` imports Keras, so it is loaded on
first use only.

Example:
    >>> from reglab import ReglabCallback, ReglabClient
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reglab.client import LeaseLostError, ReglabClient, ReglabError, ServerEvent, WorkerClient

if TYPE_CHECKING:
    from reglab.callback import ReglabCallback

__all__ = [
    "LeaseLostError",
    "ReglabCallback",
    "ReglabClient",
    "ReglabError",
    "ServerEvent",
    "WorkerClient",
]


def __getattr__(name: str) -> Any:
    """`from reglab import ReglabCallback` imports Keras then, and only then."""
    if name == "ReglabCallback":
        from reglab.callback import ReglabCallback

        return ReglabCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
