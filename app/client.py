"""Deprecated: the client moved to the `reglab` package. Write
`from reglab import ReglabCallback, ReglabClient` instead; this module re-exports the old
names for one release and warns when it is imported. The server never imports it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from reglab.client import (
    LeaseLostError,
    ReglabClient,
    ReglabError,
    ServerEvent,
    WorkerClient,
    parse_sse,
)

if TYPE_CHECKING:
    from reglab.callback import ReglabCallback

warnings.warn(
    "app.client is deprecated: use `from reglab import ReglabCallback, ReglabClient` "
    "(reglab.client for the rest)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "LeaseLostError",
    "ReglabCallback",
    "ReglabClient",
    "ReglabError",
    "ServerEvent",
    "WorkerClient",
    "parse_sse",
]


def __getattr__(name: str) -> Any:
    """`ReglabCallback` imports Keras then, and only then (as before)."""
    if name == "ReglabCallback":
        from reglab.callback import ReglabCallback

        return ReglabCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
