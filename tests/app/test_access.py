"""Access: tokens and roles on every route, the login cookie, cross-site refusal, Host
checks, security headers, and no open bind without a token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.db import reset_engines
from app.settings import get_settings
from tests.conftest import free_port

USER, WORKER = "user-secret-token", "worker-secret-token"
PUBLIC = {"/login", "/api/login", "/api/logout", "/api/health"}


@pytest.fixture
def secured(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("REGLAB_TOKEN", USER)
    monkeypatch.setenv("REGLAB_WORKER_TOKEN", WORKER)
    get_settings.cache_clear()
    reset_engines()
    from app.main import create_app

    with TestClient(create_app()) as client:
        yield client
    get_settings.cache_clear()


PAGES = ["/", "/new", "/runs/1", "/compare?ids=1,2"]


def every_route(client: TestClient) -> list[tuple[str, str]]:
    """(method, concrete path) for every route the app serves: each operation of the
    OpenAPI document, path parameters filled, plus the pages (hidden from the schema)."""
    routes = [("GET", page) for page in PAGES] + [("GET", "/openapi.json"), ("GET", "/docs")]
    for path, operations in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if path in PUBLIC:
            continue
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        routes.extend((method.upper(), concrete) for method in operations)
    return routes


def test_every_route_needs_credentials_and_the_right_role(secured: TestClient) -> None:
    routes = every_route(secured)
    assert len(routes) >= 20
    paths = {path for _, path in routes}
    # The stream and the downloads are among them.
    assert {
        "/api/experiments/1/events",
        "/api/experiments/1/model",
        "/api/experiments/1/metrics",
        "/api/worker/claim",
        "/",
    } <= paths
    for method, path in routes:
        anonymous = secured.request(method, path)
        assert anonymous.status_code == 401, (method, path, anonymous.status_code)
        worker_route = path.startswith("/api/worker/")
        wrong = WORKER if not worker_route else USER
        refused = secured.request(method, path, headers={"Authorization": f"Bearer {wrong}"})
        assert refused.status_code == 403, (method, path, refused.status_code)
        right = USER if not worker_route else WORKER
        allowed = secured.request(
            method, path, headers={"Authorization": f"Bearer {right}"}, params={"wait": 0}
        )
        assert allowed.status_code not in (401, 403), (method, path, allowed.status_code)
        bogus = secured.request(method, path, headers={"Authorization": "Bearer nope"})
        assert bogus.status_code == 401, (method, path)


def test_pages_without_a_session_show_the_login_page(secured: TestClient) -> None:
    response = secured.get("/runs/1")
    assert response.status_code == 401
    assert 'id="login-form"' in response.text
    assert secured.get("/api/experiments").json()["detail"].startswith("authentication required")
    assert secured.get("/api/health").status_code == 200
    assert secured.get("/static/style.css").status_code == 200


def test_login_sets_a_session_cookie_that_opens_the_api_and_pages(secured: TestClient) -> None:
    assert secured.post("/api/login", json={"token": "wrong"}).status_code == 401
    response = secured.post("/api/login", json={"token": USER})
    assert response.status_code == 204
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert secured.get("/").status_code == 200
    assert secured.get("/api/experiments").status_code == 200
    # The user's session cannot act as a worker.
    assert secured.post("/api/worker/claim", json={}).status_code == 403
    secured.post("/api/logout")
    secured.cookies.clear()
    assert secured.get("/api/experiments").status_code == 401


def test_a_forged_or_expired_cookie_is_no_session(secured: TestClient) -> None:
    for value in ("1.abc", "9999999999.deadbeef", "garbage", "1700000000." + "0" * 64):
        secured.cookies.set("reglab_session", value)
        assert secured.get("/api/experiments").status_code == 401, value
    secured.cookies.clear()


def test_a_foreign_origin_may_not_change_anything(secured: TestClient) -> None:
    secured.post("/api/login", json={"token": USER})
    spec = {
        "name": "x",
        "dataset": {"name": "moons"},
        "model": {"layers": [{"type": "dense", "units": 2}]},
    }
    foreign = secured.post(
        "/api/experiments", json=spec, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    same = secured.post("/api/experiments", json=spec, headers={"Origin": "http://testserver"})
    assert same.status_code == 201
    assert secured.get("/api/experiments").json()["total"] == 1
    # No CORS grant for anyone else.
    answer = secured.get("/api/experiments", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in answer.headers


def test_security_headers_on_every_answer(client: TestClient) -> None:
    for path in ("/", "/api/health", "/api/experiments", "/static/style.css", "/nope"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert "script-src 'self';" in headers["content-security-policy"], path


def test_a_foreign_host_header_is_refused(client: TestClient) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 still says its Host."""
    assert client.get("/api/experiments", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/api/experiments", headers={"Host": "localhost:8000"}).status_code == 200


def test_no_open_bind_without_a_token(tmp_path: object) -> None:
    env = {key: value for key, value in os.environ.items() if key != "REGLAB_TOKEN"}
    env["REGLAB_DATABASE_URL"] = f"sqlite:///{tmp_path}/x.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reglab.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "REGLAB_TOKEN" in result.stderr
    assert "refusing to listen on 0.0.0.0" in result.stderr
