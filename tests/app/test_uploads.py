"""Uploaded datasets: CSV and NPZ checked cell by cell, never unpickled, stored by the server."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.settings import get_settings
from tests.factories import make_spec


def csv_bytes(rows: list[list[Any]]) -> bytes:
    return "".join(",".join(str(cell) for cell in row) + "\n" for row in rows).encode()


def table(n: int = 40, *, labels: list[Any] | None = None) -> list[list[Any]]:
    rng = np.random.default_rng(0)
    header = ["height", "weight", "age", "species"]
    rows: list[list[Any]] = [header]
    for index in range(n):
        label = labels[index % len(labels)] if labels else index % 3
        rows.append([*np.round(rng.normal(size=3), 4), label])
    return rows


def npz_bytes(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def post(client: TestClient, content: bytes, **params: Any) -> Any:
    return client.post("/api/datasets", params=params, content=content)


def error_of(response: Any) -> tuple[str, str]:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return error["field"] or error["loc"][0], error["msg"]


def test_a_csv_becomes_a_classification_dataset(client: TestClient) -> None:
    response = post(client, csv_bytes(table()), name="iris-ish.csv")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "iris-ish.csv"
    assert (body["format"], body["task"], body["classes"]) == ("csv", "classification", 3)
    assert (body["features"], body["samples"], body["image"]) == (3, 40, None)
    assert body["class_names"] == ["0", "1", "2"]
    listed = client.get("/api/datasets").json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == body["id"]
    assert client.get(f"/api/datasets/{body['id']}").json() == body


def test_class_names_a_chosen_target_and_regression(client: TestClient) -> None:
    named = post(client, csv_bytes(table(labels=["setosa", "virginica"])))
    assert named.json()["class_names"] == ["setosa", "virginica"]
    # The target need not be the last column; a float column is a regression target.
    chosen = post(client, csv_bytes(table()), target="height")
    assert chosen.status_code == 201, chosen.text
    assert chosen.json()["task"] == "regression"
    assert chosen.json()["classes"] == 0
    forced = post(client, csv_bytes(table()), task="regression")
    assert forced.json()["task"] == "regression"


def test_the_stored_arrays_are_what_was_uploaded(client: TestClient) -> None:
    rows = table(labels=["b", "a"])
    body = post(client, csv_bytes(rows)).json()
    response = client.get(f"/api/datasets/{body['id']}/file")
    assert response.status_code == 200
    with np.load(io.BytesIO(response.content), allow_pickle=False) as arrays:
        x, y = arrays["x"], arrays["y"]
    assert x.dtype == np.float32 and x.shape == (40, 3)
    np.testing.assert_allclose(x[0], np.asarray(rows[1][:3], dtype=np.float32))
    assert y.dtype == np.int32
    assert [body["class_names"][i] for i in y[:2]] == ["b", "a"]


@pytest.mark.parametrize(
    ("content", "params", "where", "words"),
    [
        (b"", {}, "body", "empty"),
        (b"a,b\n", {}, "body", "no rows"),
        (b"only\n1\n2\n", {}, "body", "two columns"),
        (b"a,b,c\n1,2,0\n3,4\n", {}, "body", "line 3: 2 values"),
        (b"a,b,c\n1,2,0\n1,abc,1\n", {}, "body", "line 3, column 'b': 'abc' is not a number"),
        (b"a,b,c\n1,nan,0\n", {}, "body", "not a finite number"),
        (b"a,a,c\n1,2,0\n", {}, "body", "a name of its own"),
        (b"a,b,c\n1,2,\n", {}, "body", "empty"),
        (b"a,b,c\n" + b"1,2,0\n" * 5, {}, "body", "at least 10"),
        (b"a,b,c\n" + b"1,2,7\n" * 12, {"task": "classification"}, "body", "one class only"),
        (b"\xff\xfe,\x00\n", {}, "body", "UTF-8"),
        (b"a,b,c\n1,2,0\n", {"target": "nope"}, "target", "no column named 'nope'"),
        (b"a,b,c\n" + b"1,2,x\n" * 12, {"task": "regression"}, "task", "must be numbers"),
        (b"a,b,c\n1,2,0\n", {"format": "npz"}, "format", "is not NPZ"),
    ],
)
def test_a_bad_csv_gets_a_422_that_says_where(
    client: TestClient, content: bytes, params: dict[str, str], where: str, words: str
) -> None:
    loc, message = error_of(post(client, content, **params))
    assert loc == where
    assert words in message
    assert client.get("/api/datasets").json()["total"] == 0
    assert not list((get_settings().data_dir / "datasets").glob("*")), "nothing left behind"


def test_an_npz_of_images_is_an_image_dataset(client: TestClient) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((30, 8, 8)).astype(np.float64)
    y = np.arange(30) % 2
    body = post(client, npz_bytes(x=x, y=y), name="tiny images").json()
    assert (body["format"], body["image"], body["features"]) == ("npz", [8, 8, 1], 64)
    assert body["task"] == "classification"


def test_a_pickled_npz_is_refused_unread(client: TestClient) -> None:
    class Payload:
        def __reduce__(self) -> Any:  # what an attacker's pickle would run
            return (Path("/tmp/reglab-pwned").touch, ())

    buffer = io.BytesIO()
    np.savez(buffer, x=np.asarray([Payload()] * 12, dtype=object), y=np.arange(12))
    loc, message = error_of(post(client, buffer.getvalue()))
    assert (loc, "pickled") == ("body", "pickled" if "pickled" in message else message)
    assert not Path("/tmp/reglab-pwned").exists()


def test_npz_bombs_and_impostors_are_refused(client: TestClient, monkeypatch: Any) -> None:
    monkeypatch.setenv("REGLAB_MAX_DATASET_BYTES", "100000")
    get_settings.cache_clear()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", b"\0" * 10_000_000)  # 10 MB of zeros zips to ~10 KB
        archive.writestr("y.npy", b"\0" * 100)
    assert len(buffer.getvalue()) < 100_000
    assert "unzips to" in error_of(post(client, buffer.getvalue()))[1]
    assert "valid NPZ" in error_of(post(client, b"PK\x03\x04 not really a zip"))[1]
    assert "named x and y" in error_of(post(client, npz_bytes(a=np.zeros(3))))[1]
    assert (
        "must hold numbers"
        in error_of(post(client, npz_bytes(x=np.asarray(["a"] * 12), y=np.arange(12))))[1]
    )
    assert (
        "one label per sample"
        in error_of(post(client, npz_bytes(x=np.zeros((12, 2)), y=np.arange(11))))[1]
    )
    assert (
        "NaN"
        in error_of(post(client, npz_bytes(x=np.full((12, 2), np.nan), y=np.arange(12) % 2)))[1]
    )


def test_a_file_over_the_limit_gets_413_and_leaves_nothing(
    client: TestClient, monkeypatch: Any
) -> None:
    monkeypatch.setenv("REGLAB_MAX_DATASET_BYTES", "1000")
    get_settings.cache_clear()
    response = post(client, csv_bytes(table(200)))
    assert response.status_code == 413
    # Without a Content-Length (chunked), the limit holds as the body streams in.
    chunks = iter([csv_bytes(table(200))[i : i + 500] for i in range(0, 6000, 500)])
    response = client.post("/api/datasets", content=chunks)
    assert response.status_code == 413
    assert client.get("/api/datasets").json()["total"] == 0
    assert not list((get_settings().data_dir / "datasets").glob("*"))


def test_storage_paths_are_the_servers_never_the_name(client: TestClient) -> None:
    for name in ("../../etc/passwd", "/abs/x.csv", "..\\..\\win.ini", "a;b", "file:///x"):
        body = post(client, csv_bytes(table()), name=name).json()
        assert body["name"] == name  # a label, nothing more
    root = get_settings().data_dir.resolve()
    stored = sorted(path.name for path in (root / "datasets").iterdir())
    assert len(stored) == 5
    assert all(len(name) == 36 and name.endswith(".npz") for name in stored), stored
    assert post(client, csv_bytes(table()), name="a\x00b").status_code == 422


def test_a_spec_on_an_upload_is_filled_in_by_the_server(client: TestClient) -> None:
    dataset = post(client, csv_bytes(table()), name="mine.csv").json()
    spec = make_spec(dataset={"name": "upload", "n_samples": None, "upload": {"id": dataset["id"]}})
    response = client.post("/api/experiments", json=spec)
    assert response.status_code == 201, response.text
    upload = response.json()["spec"]["dataset"]["upload"]
    assert upload == {
        "id": dataset["id"],
        "name": "mine.csv",
        "task": "classification",
        "classes": 3,
        "features": 3,
        "image": None,
        "samples": 40,
    }
    assert response.json()["task"] == "classification"
    # Whatever a client claims about the upload, the stored one decides.
    lying = make_spec(
        dataset={
            "name": "upload",
            "n_samples": None,
            "upload": {"id": dataset["id"], "task": "regression"},
        }
    )
    assert client.post("/api/experiments", json=lying).json()["task"] == "classification"


def test_a_spec_on_a_missing_or_unfit_upload_is_a_422(client: TestClient) -> None:
    missing = make_spec(dataset={"name": "upload", "n_samples": None, "upload": {"id": 999}})
    assert error_of(client.post("/api/experiments", json=missing)) == (
        "dataset.upload.id",
        "no uploaded dataset with id 999",
    )
    dataset = post(client, csv_bytes(table())).json()
    conv = make_spec(
        dataset={"name": "upload", "n_samples": None, "upload": {"id": dataset["id"]}},
        model={"layers": [{"type": "conv2d", "filters": 2}, {"type": "dense", "units": 4}]},
    )
    _, message = error_of(client.post("/api/experiments", json=conv))
    assert "conv2d needs an image upload" in message
    no_id = make_spec(dataset={"name": "upload"})
    assert "upload" in error_of(client.post("/api/experiments", json=no_id))[1]
    noise = make_spec(dataset={"name": "upload", "upload": {"id": dataset["id"]}, "noise": 0.1})
    assert "generated datasets only" in error_of(client.post("/api/experiments", json=noise))[1]


def test_workers_fetch_the_arrays_and_deleted_uploads_are_gone(client: TestClient) -> None:
    dataset = post(client, csv_bytes(table())).json()
    fetched = client.get(f"/api/worker/datasets/{dataset['id']}")
    assert fetched.status_code == 200
    assert fetched.content == client.get(f"/api/datasets/{dataset['id']}/file").content
    assert client.delete(f"/api/datasets/{dataset['id']}").status_code == 204
    assert client.get(f"/api/worker/datasets/{dataset['id']}").status_code == 404
    assert client.get(f"/api/datasets/{dataset['id']}").status_code == 404
    assert not list((get_settings().data_dir / "datasets").glob("*.npz"))


def test_regularizers_lists_plugins_of_live_workers(client: TestClient) -> None:
    from datetime import timedelta

    from app.db import session_scope
    from app.models import Worker, utcnow

    assert client.get("/api/regularizers").json() == {
        "builtin": ["l1", "l2", "l1l2", "smoothness"],
        "plugins": [],
    }
    for worker_id, plugins in (("a", ["orthogonality", "group_lasso"]), ("b", ["orthogonality"])):
        response = client.post(
            "/api/worker/claim",
            json={
                "worker_id": worker_id,
                "host": "h",
                "slot": "CPU",
                "wait": 0,
                "plugins": plugins,
            },
        )
        assert response.status_code == 204
    assert client.get("/api/regularizers").json()["plugins"] == [
        {"name": "group_lasso", "workers": 1},
        {"name": "orthogonality", "workers": 2},
    ]
    with session_scope() as session:  # worker a went quiet long ago
        row = session.get(Worker, "a")
        assert row is not None
        row.last_seen = utcnow() - timedelta(hours=1)
        session.add(row)
        session.commit()
    assert client.get("/api/regularizers").json()["plugins"] == [
        {"name": "orthogonality", "workers": 1}
    ]
    bad = client.post(
        "/api/worker/claim",
        json={"worker_id": "c", "host": "h", "slot": "CPU", "wait": 0, "plugins": ["../x"]},
    )
    assert error_of(bad)[0] == "plugins.0"
