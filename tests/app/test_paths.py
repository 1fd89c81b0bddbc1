"""Path traversal on every route that serves or stores a file.

Requests go over a real socket to uvicorn, byte for byte as written here (an HTTP client
would tidy `../` away), so the server sees what an attacker sends. Each answer is a 4xx,
or a 200 whose body is a file the route may serve; and the storage resolver never hands
out a path outside the data folder.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from app.api.routes.pages import plotly_version
from app.db import session_scope
from app.domain.storage import model_relpath, remove_artifacts, resolve_artifact
from app.models import Experiment
from app.settings import Settings, get_settings
from tests.factories import make_spec

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "static"
MODEL_BYTES = b"the one legitimate model file"
# Bits of what lies outside: this module's server code, the project file, the database.
SECRETS = (b"def create_app", b"[build-system]", b"SQLite format 3", b"root:x:0:0")

# Where a traversal would like to land: outside static/, outside the data folder.
TRAVERSALS = [
    "../../app/main.py",
    "..%2f..%2fapp%2fmain.py",
    "%2e%2e%2f%2e%2e%2fapp%2fmain.py",
    "%2e%2e/%2e%2e/app/main.py",
    "%252e%252e%252f%252e%252e%252fapp%252fmain.py",
    "..%252f..%252fapp%252fmain.py",
    "..\\..\\app\\main.py",
    "..%5c..%5capp%5cmain.py",
    "....//....//app/main.py",
    "%c0%ae%c0%ae/%c0%ae%c0%ae/app/main.py",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "file:///etc/passwd",
    "file:%2f%2f%2fetc%2fpasswd",
    "http:///#/../../app/main.py",
    "http:%2f%2f%2f%23%2f..%2f..%2fapp%2fmain.py",
    "js/api.js;/../../../app/main.py",
    ";/../../app/main.py",
    "..;/..;/app/main.py",
    "js/api.js%00.png",
    "%00../../app/main.py",
    "..%00/..%00/app/main.py",
    "../../pyproject.toml",
    "../../data/reglab.db",
]


def raw_request(url: str, method: str, target: str) -> tuple[int, bytes]:
    """Send a request line exactly as given; (status, body). Status 0: the server closed
    the connection without an answer (it refused to parse the request)."""
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n".encode("latin-1")
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return status, body


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


def static_files() -> set[bytes]:
    return {path.read_bytes() for path in STATIC.rglob("*") if path.is_file()}


@pytest.fixture
def served(live_server: str) -> Iterator[tuple[str, int]]:
    """The live server with one finished run whose model was uploaded; (url, run id)."""
    with httpx.Client(base_url=live_server) as client:
        client.post("/api/experiments", json=make_spec(name="../../model")).raise_for_status()
        claim = client.post(
            "/api/worker/claim", json={"worker_id": "w", "host": "h", "slot": "CPU", "wait": 0}
        ).json()
        run_id, token = claim["experiment_id"], claim["lease_token"]
        client.post(
            f"/api/worker/experiments/{run_id}/metrics",
            json={"lease_token": token, "points": [{"epoch": 0, "values": {"loss": 1.0}}]},
        ).raise_for_status()
        client.put(
            f"/api/worker/experiments/{run_id}/model",
            params={"lease_token": token},
            content=MODEL_BYTES,
        ).raise_for_status()
        client.post(
            f"/api/worker/experiments/{run_id}/finish",
            json={"lease_token": token, "status": "succeeded"},
        ).raise_for_status()
    yield live_server, run_id


def refusals_or_legitimate(
    url: str, requests: list[tuple[str, str]], legitimate: set[bytes]
) -> list[tuple[str, str, int, bytes]]:
    """The requests whose answer is neither a refusal (4xx, or a closed connection) nor one
    of the legitimate files; empty when all is well."""
    wrong = []
    for method, target in requests:
        status, body = raw_request(url, method, target)
        refused = status == 0 or 400 <= status < 500
        if not (refused or (status == 200 and body in legitimate)) or any(
            secret in body for secret in SECRETS
        ):
            wrong.append((method, target, status, body[:120]))
    return wrong


def test_static_files_stay_in_the_static_folder(served: tuple[str, int]) -> None:
    url, _ = served
    requests = [
        ("GET", target)
        for traversal in TRAVERSALS
        for target in (f"/static/{traversal}", f"/static/js/{traversal}", f"/static//{traversal}")
    ]
    assert refusals_or_legitimate(url, requests, static_files()) == []


def test_a_path_that_normalizes_inside_static_serves_that_file(served: tuple[str, int]) -> None:
    url, _ = served
    api_js = (STATIC / "js" / "api.js").read_bytes()
    for target in ("/static/js/../js/api.js", "/static/./js/api.js", "/static/js/api.js?../../x"):
        assert raw_request(url, "GET", target) == (200, api_js)


def test_pages_and_plotly_serve_only_their_own_files(served: tuple[str, int]) -> None:
    url, _ = served
    own = ("/", "/new", "/compare", "/runs/1", f"/vendor/plotly-{plotly_version()}.min.js")
    legitimate = {raw_request(url, "GET", target)[1] for target in own}
    requests = [
        ("GET", target)
        for traversal in TRAVERSALS
        for target in (
            f"/runs/{traversal}",
            f"/runs/1/{traversal}",
            f"/{traversal}",
            f"/vendor/plotly-{traversal}.min.js",
            f"/vendor/plotly-{plotly_version()}.min.js/{traversal}",
            f"/vendor/{traversal}",
            f"/new/{traversal}",
        )
    ]
    assert refusals_or_legitimate(url, requests, legitimate) == []


def test_model_and_metrics_routes_take_no_path_from_the_request(served: tuple[str, int]) -> None:
    url, run_id = served
    csv = httpx.get(f"{url}/api/experiments/{run_id}/metrics", params={"format": "csv"}).content
    requests = [
        request
        for traversal in TRAVERSALS
        for request in (
            ("GET", f"/api/experiments/{traversal}/model"),
            ("GET", f"/api/experiments/{run_id}/{traversal}/model"),
            ("GET", f"/api/experiments/{run_id}/model/{traversal}"),
            ("GET", f"/api/experiments/{run_id}/model?path={traversal}"),
            ("GET", f"/api/experiments/{traversal}/metrics?format=csv"),
            ("GET", f"/api/experiments/{run_id}/metrics?format={traversal}"),
            ("PUT", f"/api/worker/experiments/{traversal}/model?lease_token=x"),
            ("PUT", f"/api/worker/experiments/{run_id}/model?lease_token={traversal}"),
            ("PUT", f"/api/worker/experiments/{run_id}/{traversal}/model?lease_token=x"),
        )
    ]
    assert refusals_or_legitimate(url, requests, {MODEL_BYTES, csv}) == []
    # and the legitimate ones still answer
    assert raw_request(url, "GET", f"/api/experiments/{run_id}/model") == (200, MODEL_BYTES)


def test_uploads_land_only_where_the_server_chooses(served: tuple[str, int]) -> None:
    url, run_id = served
    data_dir = get_settings().data_dir.resolve()
    before = sorted(data_dir.parent.rglob("*"))
    for traversal in TRAVERSALS:
        raw_request(url, "PUT", f"/api/worker/experiments/{traversal}/model?lease_token=x")
    assert sorted(data_dir.parent.rglob("*")) == before
    stored = [path for path in data_dir.rglob("*") if path.is_file()]
    assert stored == [data_dir / model_relpath(run_id)]
    assert stored[0].read_bytes() == MODEL_BYTES


def test_dataset_routes_take_no_path_from_the_request(served: tuple[str, int]) -> None:
    url, _ = served
    upload = httpx.post(
        f"{url}/api/datasets",
        params={"name": "../../etc/passwd"},
        content=b"a,b,y\n" + b"".join(f"{i},{i % 3},{i % 2}\n".encode() for i in range(20)),
    )
    assert upload.status_code == 201, upload.text
    dataset_id = upload.json()["id"]
    arrays = httpx.get(f"{url}/api/datasets/{dataset_id}/file").content
    data_dir = get_settings().data_dir.resolve()
    before = sorted(data_dir.parent.rglob("*"))
    requests = [
        request
        for traversal in TRAVERSALS
        for request in (
            ("GET", f"/api/datasets/{traversal}/file"),
            ("GET", f"/api/datasets/{dataset_id}/{traversal}"),
            ("GET", f"/api/datasets/{dataset_id}/file/{traversal}"),
            ("GET", f"/api/datasets/{dataset_id}/file?path={traversal}"),
            ("GET", f"/api/worker/datasets/{traversal}"),
            ("GET", f"/api/worker/datasets/{dataset_id}/{traversal}"),
            ("DELETE", f"/api/datasets/{traversal}"),
            ("POST", f"/api/datasets?name={traversal}&format={traversal}"),
            ("POST", f"/api/datasets/{traversal}"),
        )
    ]
    assert refusals_or_legitimate(url, requests, {arrays}) == []
    assert sorted(data_dir.parent.rglob("*")) == before
    stored = sorted(path.relative_to(data_dir) for path in (data_dir / "datasets").iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".npz"
    assert httpx.get(f"{url}/api/datasets/{dataset_id}/file").content == arrays


def test_a_tampered_model_path_is_never_served(served: tuple[str, int], tmp_path: Path) -> None:
    """Even a row pointing outside the data folder (it never comes from a request) serves
    nothing: the resolver refuses it."""
    url, run_id = served
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    for model_path in (str(secret), f"../{secret.name}", f"artifacts/../../{secret.name}"):
        with session_scope() as session:
            row = session.get(Experiment, run_id)
            assert row is not None
            row.model_path = model_path
            session.add(row)
            session.commit()
        response = httpx.get(f"{url}/api/experiments/{run_id}/model")
        assert response.status_code == 404
        assert b"not yours" not in response.content


# --- the resolver itself -----------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data_dir = tmp_path / "data"
    (data_dir / "artifacts" / "1").mkdir(parents=True)
    (data_dir / "artifacts" / "1" / "model.keras").write_bytes(b"model")
    (tmp_path / "outside.txt").write_text("outside")
    return Settings(data_dir=data_dir)


RESOLVER_INPUTS = [
    *TRAVERSALS,
    "..",
    ".",
    "",
    "/",
    "artifacts/../../outside.txt",
    "artifacts/1/../../../outside.txt",
    "artifacts/1/model.keras/../../../../outside.txt",
    "a\x00b",
    "artifacts/1/model.keras\x00.png",
    "\\..\\..\\outside.txt",
    "~/outside.txt",
    "C:\\Windows\\win.ini",
    "//outside.txt",
]


@pytest.mark.parametrize("relpath", RESOLVER_INPUTS)
def test_the_resolver_never_leaves_the_data_folder(settings: Settings, relpath: str) -> None:
    root = settings.data_dir.resolve()
    path = resolve_artifact(settings, relpath)
    assert path is None or (path.is_relative_to(root) and path != root), path


def test_the_resolver_finds_stored_files(settings: Settings) -> None:
    root = settings.data_dir.resolve()
    assert resolve_artifact(settings, model_relpath(1)) == root / "artifacts/1/model.keras"
    assert resolve_artifact(settings, "artifacts/1/./model.keras") == (
        root / "artifacts/1/model.keras"
    )


def test_the_resolver_follows_symbolic_links_before_it_judges(settings: Settings) -> None:
    root = settings.data_dir.resolve()
    (root / "artifacts" / "2").symlink_to(root.parent)  # a link out of the data folder
    (root / "artifacts" / "loop").symlink_to(root / "artifacts" / "loop")
    assert resolve_artifact(settings, "artifacts/2/outside.txt") is None
    assert resolve_artifact(settings, "artifacts/loop/x") is None


def test_removing_a_runs_files_stays_in_its_folder(settings: Settings) -> None:
    root = settings.data_dir.resolve()
    remove_artifacts(settings, 1)
    assert not (root / "artifacts" / "1").exists()
    assert (root.parent / "outside.txt").exists()
    assert model_relpath(12) == "artifacts/12/model.keras"
    with pytest.raises(ValueError):
        model_relpath("../1")  # type: ignore[arg-type]
