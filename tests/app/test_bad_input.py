"""Bad input never makes a 500: NUL bytes, integers past 32 and 64 bits, NaN and
infinities, JSON nested past the parser's depth and bodies past the size limit are each
answered with a 4xx, on SQLite and on PostgreSQL.

(Uploaded datasets, CSV and NPZ, are not built yet: their parsing is not covered here.)
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from app.db import session_scope
from app.models import Experiment
from app.settings import get_settings
from tests.conftest import run_async
from tests.factories import make_spec

MIB = 1024 * 1024
BIG_INTS = [-1, 2**31, 2**63, 2**64]


# Every route that reads a JSON body, with a valid body for it.
JSON_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/experiments", make_spec()),
    ("POST", "/api/worker/claim", {"worker_id": "w", "host": "h", "slot": "CPU", "wait": 0}),
    ("POST", "/api/worker/experiments/{experiment_id}/heartbeat", {"lease_token": "t"}),
    (
        "POST",
        "/api/worker/experiments/{experiment_id}/started",
        {"lease_token": "t", "device": "d"},
    ),
    (
        "POST",
        "/api/worker/experiments/{experiment_id}/metrics",
        {"lease_token": "t", "points": [{"epoch": 0, "values": {"loss": 1.0}}]},
    ),
    (
        "POST",
        "/api/worker/experiments/{experiment_id}/finish",
        {"lease_token": "t", "status": "succeeded"},
    ),
    ("POST", "/api/worker/experiments/{experiment_id}/release", {"lease_token": "t"}),
    ("POST", "/api/login", {"token": "t"}),
]
ID_ROUTES = [
    ("GET", "/api/experiments/{id}"),
    ("GET", "/api/experiments/{id}/metrics"),
    ("GET", "/api/experiments/{id}/model"),
    ("GET", "/api/experiments/{id}/events"),
    ("POST", "/api/experiments/{id}/cancel"),
    ("DELETE", "/api/experiments/{id}"),
    ("POST", "/api/worker/experiments/{id}/heartbeat"),
    ("POST", "/api/worker/experiments/{id}/started"),
    ("POST", "/api/worker/experiments/{id}/metrics"),
    ("PUT", "/api/worker/experiments/{id}/model"),
    ("POST", "/api/worker/experiments/{id}/finish"),
    ("POST", "/api/worker/experiments/{id}/release"),
]
WORKER_BODY = {
    "lease_token": "t",
    "device": "d",
    "status": "failed",
    "points": [{"epoch": 0, "values": {"loss": 1.0}}],
}


@pytest.fixture
def db_client(any_db: str) -> Iterator[TestClient]:
    """The app on SQLite, then on PostgreSQL (which refuses NUL and 64-bit ids itself)."""
    from app.main import create_app

    with TestClient(create_app()) as client:
        yield client


def claim(client: TestClient) -> tuple[int, str]:
    client.post("/api/experiments", json=make_spec()).raise_for_status()
    body = client.post(
        "/api/worker/claim", json={"worker_id": "w", "host": "h", "slot": "CPU", "wait": 0}
    ).json()
    return body["experiment_id"], body["lease_token"]


def post_text(client: TestClient, path: str, text: str) -> Any:
    return client.post(path, content=text, headers={"Content-Type": "application/json"})


def raw_points(token: str, point: str) -> str:
    """A metrics upload with one point written as raw JSON text (NaN and all)."""
    return f'{{"lease_token": "{token}", "points": [{point}]}}'


def strict_json(text: str) -> Any:
    """Parse as a browser would: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a JSON answer")

    return json.loads(text, parse_constant=refuse)


def fields(response: Any) -> list[str]:
    assert response.status_code == 422, (response.status_code, response.text[:300])
    return [error["field"] for error in strict_json(response.text)["detail"]]


# --- NUL bytes ----------------------------------------------------------------------------


def test_nul_in_spec_strings_is_422_naming_the_field(db_client: TestClient) -> None:
    for changes, field in (
        ({"name": "bad\x00name"}, "name"),
        ({"name": "\x00"}, "name"),
        ({"notes": "a note\x00"}, "notes"),
        ({"dataset": {"name": "moons\x00"}}, "dataset.name"),
    ):
        response = db_client.post("/api/experiments", json=make_spec(**changes))
        assert fields(response) == [field], changes
    assert db_client.get("/api/experiments").json()["total"] == 0


def test_nul_in_query_parameters_is_422(db_client: TestClient) -> None:
    run_id, token = claim(db_client)
    for path, params, field in (
        ("/api/experiments", {"name": "a\x00b"}, "name"),
        ("/api/experiments", {"status": "queued\x00"}, "status"),
        ("/api/experiments", {"ids": "1\x00"}, "ids"),
        ("/api/experiments", {"limit": "1\x00"}, "limit"),
        ("/api/metrics", {"ids": "1", "names": "loss\x00"}, "names"),
        (f"/api/experiments/{run_id}/metrics", {"format": "csv\x00"}, "format"),
    ):
        assert fields(db_client.get(path, params=params)) == [field], params
    response = db_client.put(
        f"/api/worker/experiments/{run_id}/model", params={"lease_token": "\x00"}, content=b"m"
    )
    assert fields(response) == ["lease_token"]
    assert token  # the real lease is untouched


def test_nul_in_headers_is_harmless(db_client: TestClient) -> None:
    run_id, token = claim(db_client)
    db_client.post(
        f"/api/worker/experiments/{run_id}/finish", json={"lease_token": token, "status": "failed"}
    ).raise_for_status()
    full = db_client.get(f"/api/experiments/{run_id}/events")
    assert full.status_code == 200
    for value in ("\x00", "1\x00", "\x001", "1\x00" * 13):
        # A Last-Event-ID that is not a number replays from the start.
        response = db_client.get(
            f"/api/experiments/{run_id}/events", headers={"Last-Event-ID": value}
        )
        assert (response.status_code, response.text) == (200, full.text)
    for name in ("Cookie", "Authorization", "Origin", "Accept-Encoding", "Content-Type"):
        response = db_client.get("/api/experiments", headers={name: "x\x00y"})
        assert response.status_code < 500, name
    response = db_client.post(
        "/api/experiments", json=make_spec(), headers={"Content-Type": "application/json\x00"}
    )
    assert 400 <= response.status_code < 500


def test_nul_from_a_worker_is_refused_or_kept_as_text(db_client: TestClient) -> None:
    run_id, token = claim(db_client)
    worker = f"/api/worker/experiments/{run_id}"
    bad_claim = {"worker_id": "w", "host": "h\x00", "slot": "CPU", "wait": 0}
    assert fields(db_client.post("/api/worker/claim", json=bad_claim)) == ["host"]
    started = {"lease_token": token, "device": "CPU\x00"}
    assert fields(db_client.post(f"{worker}/started", json=started)) == ["device"]
    points = [{"epoch": 0, "values": {"lo\x00ss": 1.0}}]
    response = db_client.post(f"{worker}/metrics", json={"lease_token": token, "points": points})
    assert response.status_code == 422
    # A failed run's error text is the worker's traceback: kept, with NUL made visible.
    finish = {"lease_token": token, "status": "failed", "error": "boom\x00trace"}
    assert db_client.post(f"{worker}/finish", json=finish).status_code == 204
    assert db_client.get(f"/api/experiments/{run_id}").json()["error"] == "boom\ufffdtrace"


# --- integers past 32 and 64 bits ---------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 2**31 - 1, 2**31, 2**62, 2**63, 2**64, "1e3", "0x1"])
def test_out_of_range_ids_in_paths_are_4xx(
    db_client: TestClient, any_db: str, value: Any, request: pytest.FixtureRequest
) -> None:
    for method, template in ID_ROUTES:
        path = template.format(id=value)
        body = None if method in ("GET", "DELETE") else WORKER_BODY
        if method == "PUT":
            response = db_client.put(path, params={"lease_token": "t"}, content=b"m")
        else:
            response = db_client.request(method, path, json=body)
        assert response.status_code in (404, 409, 422), (method, path, response.text[:200])
    page = db_client.get(f"/runs/{value}")
    assert page.status_code in (200, 404, 422)


def test_out_of_range_integers_in_queries(db_client: TestClient) -> None:
    run_id, token = claim(db_client)
    for params, field in (
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": 2**31}, "limit"),
        ({"limit": 2**63}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 2**31}, "offset"),
        ({"offset": 2**63}, "offset"),
        ({"ids": str(2**63)}, "ids"),
        ({"ids": "-1"}, "ids"),
    ):
        assert fields(db_client.get("/api/experiments", params=params)) == [field], params
    # An id past what a row can have simply matches nothing.
    for ids in (str(2**31), f"{run_id},{2**31},{10**17}"):
        listed = db_client.get("/api/experiments", params={"ids": ids}).json()
        assert [item["id"] for item in listed["items"]] == ([run_id] if "," in ids else [])
    assert db_client.get("/api/experiments", params={"offset": 10**9}).json()["items"] == []
    both = db_client.get("/api/metrics", params={"ids": f"{run_id},{2**31},{10**17}"})
    assert both.status_code == 200
    assert both.json()["missing"] == [2**31, 10**17]
    assert fields(db_client.get("/api/metrics", params={"ids": str(2**64)})) == ["ids"]
    finish = {"lease_token": token, "status": "failed"}
    db_client.post(f"/api/worker/experiments/{run_id}/finish", json=finish).raise_for_status()
    for value in (str(2**31), str(2**63), "-1", "99999999999999999999999"):
        response = db_client.get(
            f"/api/experiments/{run_id}/events", headers={"Last-Event-ID": value}
        )
        assert response.status_code in (200, 204), value


SPEC_INTS = [
    ("training", "epochs"),
    ("training", "batch_size"),
    ("training", "seed"),
    ("dataset", "n_samples"),
]
LAYER_INTS = ["units", "filters", "kernel_size", "pool_size"]


@pytest.mark.parametrize("value", BIG_INTS)
def test_out_of_range_integers_in_bodies_are_422(client: TestClient, value: int) -> None:
    for section, name in SPEC_INTS:
        spec = make_spec(**{section: {name: value}})
        assert fields(client.post("/api/experiments", json=spec)) == [f"{section}.{name}"]
    for name in LAYER_INTS:
        layer = {"type": "conv2d", "filters": 4, name: value}
        spec = make_spec(dataset={"name": "digits", "n_samples": None}, model={"layers": [layer]})
        assert f"model.layers.0.{name}" in fields(client.post("/api/experiments", json=spec))
    run_id, token = claim(client)
    worker = f"/api/worker/experiments/{run_id}"
    points = [{"epoch": value, "values": {"loss": 1.0}}]
    response = client.post(f"{worker}/metrics", json={"lease_token": token, "points": points})
    assert fields(response) == ["points.0.epoch"]
    for name in ("error_epoch", "best_epoch"):
        finish = {"lease_token": token, "status": "failed", name: value}
        assert fields(client.post(f"{worker}/finish", json=finish)) == [name]
    wait = {"worker_id": "w", "host": "h", "slot": "CPU", "wait": value}
    assert fields(client.post("/api/worker/claim", json=wait)) == ["wait"]


def test_huge_integers_where_floats_go_are_422(client: TestClient) -> None:
    run_id, token = claim(client)
    for text in ("1" + "0" * 400, "-" + "1" * 400):
        body = raw_points(token, f'{{"epoch": 0, "values": {{"loss": {text}}}}}')
        response = post_text(client, f"/api/worker/experiments/{run_id}/metrics", body)
        assert fields(response) == ["points.0.values.loss"]
    # Past Python's 4300-digit limit the body does not even parse.
    body = raw_points(token, f'{{"epoch": {"9" * 5000}, "values": {{}}}}')
    response = post_text(client, f"/api/worker/experiments/{run_id}/metrics", body)
    assert 400 <= response.status_code < 500


# --- NaN, infinities and overflowing floats ----------------------------------------------

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309"]


@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_numbers_in_metric_uploads_are_422(client: TestClient, value: str) -> None:
    run_id, token = claim(client)
    worker = f"/api/worker/experiments/{run_id}"
    for point, field in (
        (f'{{"epoch": 0, "values": {{"loss": {value}}}}}', "points.0.values"),
        (f'{{"epoch": 0, "values": {{"loss": 1.0}}, "time": {value}}}', "points.0.time"),
        (f'{{"epoch": {value}, "values": {{"loss": 1.0}}}}', "points.0.epoch"),
    ):
        body = raw_points(token, point)
        assert fields(post_text(client, f"{worker}/metrics", body)) == [field], point
    body = (
        f'{{"lease_token": "{token}", "status": "succeeded", "test_metrics": {{"acc": {value}}}}}'
    )
    assert fields(post_text(client, f"{worker}/finish", body)) == ["test_metrics"]
    assert client.get(f"/api/experiments/{run_id}/metrics").json()["epochs"] == []
    claim_body = f'{{"worker_id": "w", "host": "h", "slot": "CPU", "wait": {value}}}'
    assert fields(post_text(client, "/api/worker/claim", claim_body)) == ["wait"]


def dense(**options: Any) -> dict[str, Any]:
    return {"model": {"layers": [{"type": "dense", "units": 8, **options}]}}


# Each float of a spec, its value to be replaced by the raw text "?" stands for.
SPEC_FLOATS: list[tuple[dict[str, Any], str]] = [
    (dense(dropout="?"), "dropout"),
    (dense(regularizer={"kind": "l2", "l2": "?"}), "regularizer.l2"),
    (dense(regularizer={"kind": "l1l2", "l1": "?"}), "regularizer.l1"),
    (dense(regularizer={"kind": "plugin", "plugin": "p", "params": {"a": "?"}}), "params.a"),
    ({"training": {"learning_rate": "?"}}, "training.learning_rate"),
    ({"training": {"weight_decay": "?"}}, "training.weight_decay"),
    ({"dataset": {"noise": "?"}}, "dataset.noise"),
    ({"dataset": {"label_noise": "?"}}, "dataset.label_noise"),
    ({"dataset": {"validation_split": "?"}}, "dataset.validation_split"),
    ({"dataset": {"train_fraction": "?"}}, "dataset.train_fraction"),
]


@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_numbers_in_spec_floats_are_422(client: TestClient, value: str) -> None:
    for changes, field in SPEC_FLOATS:
        text = json.dumps(make_spec(**changes)).replace('"?"', value)
        response = post_text(client, "/api/experiments", text)
        assert any(name.endswith(field) for name in fields(response)), (field, response.text)
    assert client.get("/api/experiments").json()["total"] == 0


# --- JSON nested past the parser's depth --------------------------------------------------


def nested(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "array" else '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize(("method", "template", "body"), JSON_ROUTES)
def test_deeply_nested_json_is_a_4xx(
    client: TestClient, method: str, template: str, body: dict[str, Any]
) -> None:
    path = template.format(experiment_id=1)
    for depth in (10_000, 100_000):
        for kind in ("array", "object"):
            for text in (nested(depth, kind), '{"x": ' + nested(depth, kind) + "}"):
                response = client.request(
                    method, path, content=text, headers={"Content-Type": "application/json"}
                )
                assert response.status_code in (400, 422), (depth, kind, response.text[:200])
    # Deep but parseable: refused by validation, not by a recursion error.
    first = next(iter(body))
    text = json.dumps({**body, first: None})[:-1] + ', "extra": ' + nested(500, "array") + "}"
    response = client.request(
        method, path, content=text, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (404, 409, 422), response.text[:200]


@pytest.mark.parametrize(("method", "template", "body"), JSON_ROUTES)
def test_a_body_that_is_not_utf8_json_is_400(
    client: TestClient, method: str, template: str, body: dict[str, Any]
) -> None:
    path = template.format(experiment_id=1)
    for text in (b'{"name": "\xff"}', b"\xc3\x28", nested(10_000, "array").encode()):
        response = client.request(
            method, path, content=text, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text[:200]
        assert response.json() == {"detail": "There was an error parsing the body"}


@pytest.mark.parametrize(
    ("method", "template"),
    [(method, template) for method, template, _ in JSON_ROUTES],
)
def test_400_and_413_are_documented_where_a_body_is_read(
    client: TestClient, method: str, template: str
) -> None:
    openapi = client.app.openapi()  # type: ignore[attr-defined]
    responses = openapi["paths"][template][method.lower()]["responses"]
    assert {"400", "413"} <= set(responses), sorted(responses)


# --- bodies past the size limit -----------------------------------------------------------


@pytest.mark.parametrize(("method", "template", "body"), JSON_ROUTES)
def test_a_declared_10_mb_body_is_413_unread(
    client: TestClient, method: str, template: str, body: dict[str, Any]
) -> None:
    path = template.format(experiment_id=1)
    response = client.request(
        method, path, content=b" " * (10 * MIB), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"detail": f"request body larger than {MIB} bytes"}


def test_the_limit_is_a_setting(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec(notes="n" * 3000)
    assert client.post("/api/experiments", json=spec).status_code == 201
    monkeypatch.setenv("REGLAB_MAX_BODY_BYTES", "2000")
    get_settings.cache_clear()
    assert client.post("/api/experiments", json=spec).status_code == 413
    assert client.post("/api/experiments", json=make_spec()).status_code == 201


async def _asgi_post(
    app: Any, method: str, path: str, chunks: Iterator[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[int, bytes, int]:
    """Drive the app as a server would, a chunk per `receive`; (status, body, bytes read)."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return sent[0]["status"], body, read


def chunks_of(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b" " * size


def test_a_streamed_10_mb_body_is_413_after_at_most_one_chunk_past_the_limit(
    client: TestClient,
) -> None:
    app = client.app
    for method, template, _ in JSON_ROUTES:
        for headers in ([], [(b"content-length", b"10")]):  # none, or one that lies
            status, body, read = run_async(
                _asgi_post(
                    app,
                    method,
                    template.format(experiment_id=1),
                    chunks_of(10 * MIB),
                    [(b"content-type", b"application/json"), *headers],
                )
            )
            assert status == 413, (template, body)
            assert MIB < read <= MIB + 64 * 1024, read


def test_a_body_sent_to_an_event_stream_ends_the_stream_not_the_server(
    client: TestClient,
) -> None:
    """A stream reads on while it sends (to notice a client leaving): past the limit, with
    the 200 already out, the exchange ends as if the client had gone."""
    run_id, _ = claim(client)  # running: its stream would never end by itself
    status, body, read = run_async(
        asyncio.wait_for(
            _asgi_post(
                client.app, "GET", f"/api/experiments/{run_id}/events", chunks_of(10 * MIB), []
            ),
            timeout=10,
        )
    )
    assert status in (200, 413)
    assert read <= MIB + 64 * 1024
    if status == 200:
        assert b"event: status" in body


def test_a_streamed_body_over_the_wire_is_answered_before_it_is_all_sent(
    live_server: str,
) -> None:
    """Over a real socket: the 413 arrives while the client is still sending, after at
    most ~1 MB more than the limit."""
    address = urlsplit(live_server)
    assert address.hostname is not None and address.port is not None
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/experiments HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * (64 * 1024)
        sent = 0
        answered = False
        while sent < 10 * MIB and not answered:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break  # the server stopped reading; its answer is waiting
            sent += len(chunk)
            answered = bool(select.select([sock], [], [], 0.02)[0])
        assert sent < 10 * MIB, "no answer before the whole 10 MB was sent"
        assert sent <= 2 * MIB, sent
        assert sock.recv(65536).startswith(b"HTTP/1.1 413 ")
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        # A declared 10 MB: answered at once, before any byte of the body.
        sock.sendall(
            b"POST /api/experiments HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 413 ")


def test_the_model_upload_has_its_own_larger_limit(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGLAB_MAX_MODEL_BYTES", str(3 * MIB))
    get_settings.cache_clear()
    run_id, token = claim(client)
    upload = f"/api/worker/experiments/{run_id}/model"
    model = b"k" * (2 * MIB)  # over the JSON limit, under the model limit
    assert client.put(upload, params={"lease_token": token}, content=model).status_code == 204
    assert client.get(f"/api/experiments/{run_id}/model").content == model
    too_big = client.put(upload, params={"lease_token": token}, content=b"k" * (4 * MIB))
    assert too_big.status_code == 413
    status, _, read = run_async(
        _asgi_post(client.app, "PUT", f"{upload}?lease_token={token}", chunks_of(10 * MIB), [])
    )
    assert status == 413
    assert 3 * MIB < read <= 3 * MIB + 64 * 1024
    # Neither refusal touched the stored model nor left a partial file.
    assert client.get(f"/api/experiments/{run_id}/model").content == model
    folder = get_settings().data_dir / "artifacts" / str(run_id)
    assert sorted(path.name for path in folder.iterdir()) == ["model.keras"]
    with session_scope() as session:
        row = session.get(Experiment, run_id)
        assert row is not None and row.model_path is not None
