"""The largest request body the server reads, enforced before any handler reads it.

A JSON route never needs more than `max_body_bytes` (1 MiB by default); the worker's model
upload takes up to `max_model_bytes`, a dataset upload `max_dataset_bytes`. A request
whose Content-Length is over the limit is answered 413 at once, its body unread. A body
sent without a length (chunked) is counted as the handler reads it, and refused as soon as
it passes the limit, so a 10 MB body is never held whole: at most one more chunk than the
limit is read.
"""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException

from app.asgi import ASGIApp, Message, Receive, Scope, Send, send_response
from app.settings import Settings, get_settings

MODEL_UPLOAD = re.compile(r"^/api/worker/experiments/[^/]+/model$")


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a streamed body passes the limit.

    An HTTPException, so that FastAPI's body parsing passes it on and the exception
    handler answers 413 (any other error while reading the body becomes a 400).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body larger than {limit} bytes")


def body_limit(settings: Settings, method: str, path: str) -> int:
    """The most bytes a request to this path may send."""
    if method == "PUT" and MODEL_UPLOAD.match(path):
        return settings.max_model_bytes
    if method == "POST" and path == "/api/datasets":
        return settings.max_dataset_bytes
    return settings.max_body_bytes


def declared_length(scope: Scope) -> int | None:
    """The Content-Length header as a number, or None when absent or not a number."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send_response(send, 413, body, b"application/json", [(b"connection", b"close")])


class BodyLimitMiddleware:
    """413 for a body over the limit of its route (pure ASGI: streams pass untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(get_settings(), scope["method"], scope["path"])
        length = declared_length(scope)
        if length is not None and length > limit:
            await _too_large(send, limit)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and started:
                    # Too late for a 413 (an event stream reads on while it sends): end
                    # the exchange as if the client had gone.
                    return {"type": "http.disconnect"}
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except Exception as error:
            # Read where no exception handler answers (a middleware, a task group): here.
            if started or not _only_too_large(error):
                raise
            await _too_large(send, limit)


def _only_too_large(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return error.split(BodyTooLarge)[1] is None
    return isinstance(error, BodyTooLarge)
