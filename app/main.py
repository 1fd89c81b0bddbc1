"""The FastAPI application: routers, lifespan (event broker, lease sweeper), static files."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from app.api.links import add_links
from app.api.routes import (
    auth,
    datasets,
    diagnostics,
    experiments,
    health,
    metrics,
    pages,
    scripts,
    stream,
    sweeps,
    worker,
)
from app.db import is_sqlite, normalize_url, session_scope
from app.errors import Conflict, InvalidField, NotFound, TooLarge
from app.events import PgRelay, broker
from app.limits import BodyLimitMiddleware
from app.security import SecurityMiddleware
from app.services import diagnostics as diagnostics_service
from app.services import queue
from app.settings import get_settings
from app.spec import error_location

log = logging.getLogger("reglab.server")
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
DOCS_ASSETS = "/vendor/docs"  # public, like every file under /vendor/ (app/security.py)


def _sweep_once() -> list[int]:
    with session_scope() as session:
        expired = queue.sweep_expired(session=session)
        # Runs that ended before verdicts were stored get theirs, a few each round.
        diagnostics_service.backfill_verdicts(session=session, limit=50)
        return expired


async def _sweep_forever(interval: float, grace: float) -> None:
    """Requeue or fail runs whose worker stopped sending heartbeats.

    No lease can be renewed while no server answers, so the first sweep waits `grace`
    (one lease period) after start-up: a worker that kept training while the server was
    down renews its lease with its next heartbeat before any lease is judged.
    """
    await asyncio.sleep(grace)
    while True:
        await asyncio.sleep(interval)
        try:
            expired = await run_in_threadpool(_sweep_once)
            if expired:
                log.warning("leases expired: %s", expired)
        except Exception:  # keep sweeping whatever one round hit
            log.exception("lease sweep failed")


async def _start_relay(database_url: str, wait: float) -> tuple[PgRelay, asyncio.Task[None]]:
    """On PostgreSQL, listen for every replica's events before serving (up to `wait`
    seconds; past that the relay keeps trying in the background and this replica's own
    events are published directly meanwhile)."""
    relay = PgRelay(broker, database_url)
    broker.relay = relay
    task = asyncio.create_task(relay.run(), name="reglab-event-relay")
    if not await relay.wait_listening(wait):
        log.warning("event relay not listening yet; other replicas' points will not be live")
    return relay, task


async def _stop(task: asyncio.Task[None], timeout: float) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(task, timeout)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    broker.queue_size = settings.sse_queue_size
    broker.bind(asyncio.get_running_loop())
    relay_task = None
    if not is_sqlite(normalize_url(settings.database_url)):
        _, relay_task = await _start_relay(settings.database_url, wait=5.0)
    # What start-up made lives as long as the server: keep it out of every full garbage
    # collection, which otherwise scanned it on every second history request (~60 ms).
    gc.collect()
    gc.freeze()
    sweeper = asyncio.create_task(
        _sweep_forever(settings.sweep_seconds, grace=settings.lease_seconds)
    )
    try:
        yield
    finally:
        await _stop(sweeper, timeout=1.0)
        if relay_task is not None:
            await _stop(relay_task, timeout=1.0)  # closes its connection
            broker.relay = None
        broker.unbind()


def _safe_input(value: Any) -> Any:
    """Echo scalars only: a whole body or a NaN has no place in the error."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value[:200]
    if value is None or isinstance(value, bool | int | float):
        return value
    return None


def _field_errors(errors: list[dict[str, Any]]) -> JSONResponse:
    """422 with each failing field's path, e.g. `model.layers.0.units`: the one shape of
    every refused field, whether the schema or a rule beyond it refused it."""
    detail = []
    for error in errors:
        loc = [str(part) for part in error_location(error.get("loc", ()))]
        field = ".".join(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
        detail.append(
            {
                "type": error.get("type"),
                "loc": loc,
                "field": field,
                "msg": error.get("msg"),
                "input": _safe_input(error.get("input")),
            }
        )
    return JSONResponse(status_code=422, content={"detail": detail})


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _field_errors(list(exc.errors()))


async def _invalid_field(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidField)
    return _field_errors(exc.errors())


def _documented_methods(app: FastAPI, path: str) -> set[str]:
    """The methods that the OpenAPI document gives the path (a template like
    /api/experiments/{experiment_id} matches any one segment in its place)."""
    methods: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        parts = template.split("/")
        pattern = "/".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
        if re.fullmatch(pattern, path):
            methods |= {method.upper() for method in operations if method.upper() in _METHODS}
    return methods


_METHODS = {"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"}


async def _http_error(request: Request, exc: Exception) -> Any:
    """FastAPI's answer, except that a 405's `Allow` lists every documented method of the
    path: the router names only those of the first route it found for it."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        methods = _documented_methods(request.app, request.url.path)
        if methods:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
    return await http_exception_handler(request, exc)


def _answer(status: int) -> Any:
    """A handler that answers `status` with the error's message as `detail`."""

    async def handler(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": str(exc)})

    return handler


def create_app() -> FastAPI:
    # /docs (Swagger UI) and /redoc served from the fastapi-offline package's files under
    # /vendor/docs, never from a CDN: the docs work without internet (security.DOCS_CSP).
    app = FastAPIOffline(
        title="reglab",
        summary="A self-hosted web lab for regularizing neural networks",
        version="0.1.0",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},
    )
    # JSON answers are compressed (a 20-run history is 360 KiB raw). Starlette never
    # compresses text/event-stream; Plotly.js is served pre-compressed.
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=5)
    app.add_middleware(BodyLimitMiddleware)  # 413 before a large body is read
    app.add_middleware(SecurityMiddleware)
    # Outermost: a Host header that is not this server's (DNS rebinding) gets 400.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=get_settings().host_allowlist())
    # The services' errors (app/errors.py), answered here and nowhere else.
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(InvalidField, _invalid_field)
    app.add_exception_handler(NotFound, _answer(404))
    app.add_exception_handler(Conflict, _answer(409))  # LeaseLost among them
    app.add_exception_handler(TooLarge, _answer(413))
    for module in (
        experiments,
        metrics,
        stream,
        worker,
        health,
        datasets,
        sweeps,
        diagnostics,
        scripts,
    ):
        app.include_router(module.router, prefix="/api")
    app.include_router(auth.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    document = app.openapi
    app.openapi = lambda: app.openapi_schema or add_links(document())  # type: ignore[method-assign]
    return app


app = create_app()
