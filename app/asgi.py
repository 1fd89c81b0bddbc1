"""The ASGI types and the one way this app answers from a plain ASGI middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """A whole response in two messages (the body is already in memory)."""
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
