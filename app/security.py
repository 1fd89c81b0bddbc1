"""Who may call what: the access tokens, the login cookie, Origin checks, and the security
headers on every answer. One middleware covers every route, so none can be forgotten.

Without `REGLAB_TOKEN` the server is a local tool: it listens on loopback only (the CLI
refuses other addresses) and the Host check stops DNS rebinding. With it:

- `/api/worker/...` takes the worker token (or the user token when no worker token is set);
- everything else takes the user token, as `Authorization: Bearer …` or the session cookie
  that `/api/login` sets; a page asked for without one answers 401 with the login page;
- `/api/health`, `/login`, `/api/login`, `/api/logout`, `/static/` and `/vendor/` are public
  (no data in them).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.asgi import ASGIApp, Message, Receive, Scope, Send, send_response
from app.settings import Settings, get_settings

SESSION_COOKIE = "reglab_session"
PUBLIC_PATHS = frozenset({"/login", "/api/login", "/api/logout", "/api/health"})
PUBLIC_PREFIXES = ("/static/", "/vendor/")
WORKER_PREFIX = "/api/worker/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_PAGE = Path(__file__).resolve().parent.parent / "static" / "login.html"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# /docs and /redoc: Swagger UI and ReDoc from this server (app/main.py, /vendor/docs), with
# the inline script that starts each and ReDoc's web worker; nothing from elsewhere.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


def _signature(secret: str, expiry: int) -> str:
    return hmac.new(
        secret.encode(), f"reglab-session:{expiry}".encode(), hashlib.sha256
    ).hexdigest()


def make_session(secret: str, hours: float) -> str:
    """A cookie value that proves a login until it expires (and until the token changes)."""
    expiry = int(time.time() + hours * 3600)
    return f"{expiry}.{_signature(secret, expiry)}"


def session_is_valid(secret: str, value: str) -> bool:
    expiry_text, _, signature = value.partition(".")
    if not expiry_text.isdigit() or len(expiry_text) > 12:
        return False
    expiry = int(expiry_text)
    return expiry > time.time() and hmac.compare_digest(signature, _signature(secret, expiry))


def token_matches(given: str, expected: Any) -> bool:
    return expected is not None and hmac.compare_digest(
        given.encode(), expected.get_secret_value().encode()
    )


def _headers(scope: Scope) -> dict[str, str]:
    return {
        key.decode("latin-1").lower(): value.decode("latin-1")
        for key, value in scope.get("headers", [])
    }


def role_of(settings: Settings, headers: dict[str, str]) -> str | None:
    """'user', 'worker' or None, from a bearer token or the session cookie."""
    authorization = headers.get("authorization", "")
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() == "bearer" and credential:
        if token_matches(credential.strip(), settings.worker_token):
            return "worker"
        if token_matches(credential.strip(), settings.token):
            return "user"
        return None
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is simply no session
        return None
    morsel = cookie.get(SESSION_COOKIE)
    valid = (
        morsel is not None
        and settings.token is not None
        and session_is_valid(settings.token.get_secret_value(), morsel.value)
    )
    return "user" if valid else None


def same_origin(origin: str, headers: dict[str, str]) -> bool:
    parsed = urlsplit(origin)
    return bool(parsed.netloc) and parsed.netloc.lower() == headers.get("host", "").lower()


class SecurityMiddleware:
    """Access control, cross-site refusal and security headers (pure ASGI, streams pass)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        headers = _headers(scope)
        path: str = scope["path"]
        method: str = scope["method"]
        refusal = self._refusal(settings, headers, path, method)
        docs = path in ("/docs", "/redoc", "/docs/oauth2-redirect")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                    (b"content-security-policy", (DOCS_CSP if docs else CSP).encode()),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if refusal is not None:
            await refusal(send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(
        self, settings: Settings, headers: dict[str, str], path: str, method: str
    ) -> Callable[[Send], Awaitable[None]] | None:
        # A browser on another site may not change anything here, token or not.
        origin = headers.get("origin")
        if method not in SAFE_METHODS and origin and not same_origin(origin, headers):
            return _json(403, "cross-site request refused")
        if settings.token is None or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        role = role_of(settings, headers)
        needs = "worker" if path.startswith(WORKER_PREFIX) else "user"
        if role is None:
            if method == "GET" and not path.startswith("/api/") and path != "/openapi.json":
                return _login_page()
            return _json(401, "authentication required: a bearer token or a login session")
        if needs == "worker":
            allowed = role == "worker" or (role == "user" and settings.worker_token is None)
        else:
            allowed = role == "user"
        if not allowed:
            return _json(403, f"this token may not call {path.split('?')[0]}")
        return None


def _json(status: int, detail: str) -> Callable[[Send], Awaitable[None]]:
    body = json.dumps({"detail": detail}).encode()
    extra = [(b"www-authenticate", b'Bearer realm="reglab"')] if status == 401 else []

    async def respond(send: Send) -> None:
        await send_response(send, status, body, b"application/json", extra)

    return respond


def _login_page() -> Callable[[Send], Awaitable[None]]:
    body = LOGIN_PAGE.read_bytes()

    async def respond(send: Send) -> None:
        await send_response(
            send, 401, body, b"text/html; charset=utf-8", [(b"cache-control", b"no-store")]
        )

    return respond
