"""What `ReglabClient` and `WorkerClient` share: where the server is and which token to
send (from the environment), and the errors a failed answer raises.

The tokens and the server's address come from the environment (`REGLAB_TOKEN`,
`REGLAB_WORKER_TOKEN`, `REGLAB_SERVER_URL`; an empty value means none), never from the
server's settings. Errors:

    ReglabError         the server answered with an error (its status code and detail)
    └── LeaseLostError  409: another claim holds the run, or the run has ended
"""

from __future__ import annotations

import functools
import os
import ssl
from typing import Any

import httpx

DEFAULT_SERVER_URL = "http://127.0.0.1:8000"

__all__ = [
    "DEFAULT_SERVER_URL",
    "LeaseLostError",
    "ReglabError",
    "auth_headers",
    "env_token",
    "raise_for_error",
    "server_url",
    "tls_context",
]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The certificates every client of this process checks a server's against. httpx
    builds a new context (the CA bundle read and parsed, ~25 ms) for each client it makes
    unless it is given one, and a training child makes a client per run."""
    return httpx.create_ssl_context()


def env_token(name: str) -> str | None:
    """A token from the environment; unset, empty or blank means none (as docker compose
    passes an unset variable), the same rule as the server's settings."""
    value = os.environ.get(name, "").strip()
    return value or None


def server_url(url: str | None = None) -> str:
    """`url`, else `REGLAB_SERVER_URL`, else the local default."""
    return (url or os.environ.get("REGLAB_SERVER_URL", "").strip() or DEFAULT_SERVER_URL).rstrip(
        "/"
    )


class ReglabError(Exception):
    """The server answered with an error."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {detail}")


class LeaseLostError(ReglabError):
    """409: another claim holds the run, or the run has ended (cancelled, finished)."""


def auth_headers(token: str | None) -> dict[str, str]:
    """The bearer header for `token`; none without one."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def raise_for_error(response: httpx.Response) -> None:
    """Raise the server's error for a failed answer (its `detail`, else its text); a 409
    is a LeaseLostError."""
    if response.is_success:
        return
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    error = LeaseLostError if response.status_code == 409 else ReglabError
    raise error(response.status_code, detail)
