"""The REST contract, through the real app on a real SQLite file."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import make_spec


def claim(client: TestClient, worker_id: str = "w1") -> dict[str, Any]:
    response = client.post(
        "/api/worker/claim", json={"worker_id": worker_id, "host": "h", "slot": "CPU", "wait": 0}
    )
    assert response.status_code == 200, response.text
    return response.json()


def upload(client: TestClient, run: dict[str, Any], epoch: int, **values: float) -> Any:
    return client.post(
        f"/api/worker/experiments/{run['experiment_id']}/metrics",
        json={"lease_token": run["lease_token"], "points": [{"epoch": epoch, "values": values}]},
    )


def test_submit_returns_the_experiment(client: TestClient) -> None:
    response = client.post("/api/experiments", json=make_spec(name="first"))
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued"
    assert body["name"] == "first"
    assert body["spec"]["training"]["epochs"] == 3
    assert body["regularization"] == "L2 0.01 · dropout 0.1"
    assert body["created_at"].endswith("Z") or "+00:00" in body["created_at"]
    assert client.get(f"/api/experiments/{body['id']}").json()["id"] == body["id"]


def test_list_is_newest_first_with_filters_and_paging(client: TestClient) -> None:
    ids = [
        client.post("/api/experiments", json=make_spec(name=f"run-{i}")).json()["id"]
        for i in range(5)
    ]
    client.post(f"/api/experiments/{ids[1]}/cancel")
    page = client.get("/api/experiments", params={"limit": 2}).json()
    assert page["total"] == 5
    assert [item["id"] for item in page["items"]] == [ids[4], ids[3]]
    page = client.get("/api/experiments", params={"limit": 2, "offset": 4}).json()
    assert [item["id"] for item in page["items"]] == [ids[0]]
    cancelled = client.get("/api/experiments", params={"status": "cancelled"}).json()
    assert [item["id"] for item in cancelled["items"]] == [ids[1]]
    named = client.get("/api/experiments", params={"name": "RUN-3"}).json()
    assert [item["id"] for item in named["items"]] == [ids[3]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "sleeping"}, "status"),
    ],
)
def test_bad_list_parameters_are_422(
    client: TestClient, params: dict[str, Any], field: str
) -> None:
    response = client.get("/api/experiments", params=params)
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["detail"]] == [field]


def test_invalid_spec_is_422_with_the_field_path(client: TestClient) -> None:
    spec = make_spec(model={"layers": [{"type": "dense", "units": 8, "dropout": 1.5}]})
    response = client.post("/api/experiments", json=spec)
    assert response.status_code == 422
    fields = [error["field"] for error in response.json()["detail"]]
    assert fields == ["model.layers.0.dropout"]
    assert client.get("/api/experiments").json()["total"] == 0


@pytest.mark.parametrize("bad_id", ["0", "-1", str(2**63), "abc"])
def test_bad_ids_are_422_not_500(client: TestClient, bad_id: str) -> None:
    assert client.get(f"/api/experiments/{bad_id}").status_code == 422


def test_unknown_experiment_is_404(client: TestClient) -> None:
    for path in ("", "/metrics", "/model", "/events"):
        response = client.get(f"/api/experiments/12345{path}")
        assert response.status_code == 404, path
        assert response.json()["detail"] == "experiment 12345 not found"
    assert client.post("/api/experiments/12345/cancel").status_code == 404


def test_metrics_as_columns_and_csv(client: TestClient) -> None:
    client.post("/api/experiments", json=make_spec())
    run = claim(client)
    for epoch in range(3):
        assert upload(client, run, epoch, loss=1.0 / (epoch + 1), val_loss=2.0).status_code == 200
    upload(client, run, 3, loss=0.2)  # a value missing at an epoch is null, not shifted
    body = client.get(f"/api/experiments/{run['experiment_id']}/metrics").json()
    assert body == {
        "epochs": [0, 1, 2, 3],
        "series": {"loss": [1.0, 0.5, 1.0 / 3, 0.2], "val_loss": [2.0, 2.0, 2.0, None]},
    }
    csv = client.get(f"/api/experiments/{run['experiment_id']}/metrics?format=csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines() == [
        "epoch,loss,val_loss",
        "0,1.0,2.0",
        "1,0.5,2.0",
        f"2,{1.0 / 3!r},2.0",
        "3,0.2,",
    ]


def test_resending_an_epoch_stores_it_once(client: TestClient) -> None:
    client.post("/api/experiments", json=make_spec())
    run = claim(client)
    first = upload(client, run, 0, loss=1.0).json()
    again = upload(client, run, 0, loss=1.0).json()
    assert first["new_epochs"] == [0]
    assert again["new_epochs"] == []
    assert client.get(f"/api/experiments/{run['experiment_id']}/metrics").json()["epochs"] == [0]
    assert client.get(f"/api/experiments/{run['experiment_id']}").json()["epochs_done"] == 1


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", 1e309])
def test_non_finite_metric_values_are_refused(client: TestClient, value: Any) -> None:
    client.post("/api/experiments", json=make_spec())
    run = claim(client)
    response = client.post(
        f"/api/worker/experiments/{run['experiment_id']}/metrics",
        content=(
            f'{{"lease_token": "{run["lease_token"]}", '
            f'"points": [{{"epoch": 0, "values": {{"loss": {value}}}}}]}}'
        ),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422


def test_summary_tracks_latest_and_best(client: TestClient) -> None:
    client.post("/api/experiments", json=make_spec())
    run = claim(client)
    for epoch, value in enumerate([0.9, 0.5, 0.7]):
        upload(client, run, epoch, val_data_loss=value, loss=value)
    body = client.get(f"/api/experiments/{run['experiment_id']}").json()
    assert body["epochs_done"] == 3
    assert body["last_metrics"] == {"val_data_loss": 0.7, "loss": 0.7}
    assert (body["best_epoch"], body["best_val_data_loss"]) == (1, 0.5)


def test_cancel_a_queued_run_then_again_is_409(client: TestClient) -> None:
    run_id = client.post("/api/experiments", json=make_spec()).json()["id"]
    response = client.post(f"/api/experiments/{run_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    again = client.post(f"/api/experiments/{run_id}/cancel")
    assert again.status_code == 409
    # A cancelled run is never claimed.
    assert (
        client.post(
            "/api/worker/claim", json={"worker_id": "w", "host": "h", "slot": "CPU", "wait": 0}
        ).status_code
        == 204
    )


def test_model_upload_and_download(client: TestClient) -> None:
    client.post("/api/experiments", json=make_spec(name="my model/../x"))
    run = claim(client)
    run_id, token = run["experiment_id"], run["lease_token"]
    assert client.get(f"/api/experiments/{run_id}/model").status_code == 404
    put = client.put(
        f"/api/worker/experiments/{run_id}/model",
        params={"lease_token": token},
        content=b"PK\x03\x04 fake keras zip",
    )
    assert put.status_code == 204
    assert (
        client.put(
            f"/api/worker/experiments/{run_id}/model",
            params={"lease_token": "stolen"},
            content=b"x",
        ).status_code
        == 409
    )
    download = client.get(f"/api/experiments/{run_id}/model")
    assert download.status_code == 200
    assert download.content == b"PK\x03\x04 fake keras zip"
    assert 'filename="my-model-..-x-1.keras"' in download.headers["content-disposition"]
    assert client.get(f"/api/experiments/{run_id}").json()["has_model"] is True


def test_health_and_workers(client: TestClient) -> None:
    assert client.get("/api/health").json()["status"] == "ok"
    client.post("/api/experiments", json=make_spec())
    run = claim(client, worker_id="gpu-box-1")
    client.post(
        f"/api/worker/experiments/{run['experiment_id']}/started",
        json={"lease_token": run["lease_token"], "device": "GPU:0 NVIDIA H100"},
    )
    workers = client.get("/api/workers").json()
    assert [(w["id"], w["host"]) for w in workers] == [("gpu-box-1", "h")]
    assert workers[0]["running"] == [{"id": run["experiment_id"], "device": "GPU:0 NVIDIA H100"}]
    assert client.get(f"/api/experiments/{run['experiment_id']}").json()["device"] == (
        "GPU:0 NVIDIA H100"
    )


def test_openapi_documents_the_worker_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/worker/claim",
        "/api/worker/experiments/{experiment_id}/heartbeat",
        "/api/worker/experiments/{experiment_id}/metrics",
        "/api/worker/experiments/{experiment_id}/finish",
        "/api/experiments/{experiment_id}/events",
    ):
        assert path in paths


def test_index_page_is_served(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "reglab" in response.text


def test_metrics_of_several_runs_in_one_request(client: TestClient) -> None:
    for _ in range(3):
        client.post("/api/experiments", json=make_spec())
    first, second = claim(client), claim(client)
    upload(client, first, 0, loss=1.0, val_loss=2.0)
    upload(client, second, 0, loss=3.0)
    upload(client, second, 1, loss=2.5)
    ids = f"{second['experiment_id']},{first['experiment_id']},3,999"
    body = client.get("/api/metrics", params={"ids": ids}).json()
    assert list(body["runs"]) == [str(second["experiment_id"]), str(first["experiment_id"]), "3"]
    assert body["runs"][str(second["experiment_id"])] == {
        "epochs": [0, 1],
        "series": {"loss": [3.0, 2.5]},
    }
    assert body["runs"]["3"] == {"epochs": [], "series": {}}
    assert body["missing"] == [999]
    only = client.get("/api/metrics", params={"ids": ids, "names": "val_loss"}).json()
    assert only["runs"][str(first["experiment_id"])]["series"] == {"val_loss": [2.0]}
    listed = client.get("/api/experiments", params={"ids": "1,3"}).json()
    assert [item["id"] for item in listed["items"]] == [3, 1]


@pytest.mark.parametrize("ids", ["", "a", "1,,2", ",".join(["1"] * 101), "-1"])
def test_bad_id_lists_are_422(client: TestClient, ids: str) -> None:
    assert client.get("/api/metrics", params={"ids": ids}).status_code == 422
    assert client.get("/api/experiments", params={"ids": ids}).status_code == 422


def test_delete_removes_a_finished_run_but_not_a_running_one(client: TestClient) -> None:
    client.post("/api/experiments", json=make_spec())
    run = claim(client)
    run_id = run["experiment_id"]
    upload(client, run, 0, loss=1.0)
    client.put(
        f"/api/worker/experiments/{run_id}/model",
        params={"lease_token": run["lease_token"]},
        content=b"model",
    )
    assert client.delete(f"/api/experiments/{run_id}").status_code == 409
    client.post(
        f"/api/worker/experiments/{run_id}/finish",
        json={"lease_token": run["lease_token"], "status": "succeeded"},
    )
    assert client.delete(f"/api/experiments/{run_id}").status_code == 204
    assert client.get(f"/api/experiments/{run_id}").status_code == 404
    assert client.get("/api/metrics", params={"ids": str(run_id)}).json()["missing"] == [run_id]
    assert client.delete(f"/api/experiments/{run_id}").status_code == 404


def test_pages_and_the_versioned_compressed_plotly(client: TestClient) -> None:
    for path in ("/", "/new", "/runs/1", "/compare?ids=1,2"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
    run_page = client.get("/runs/1").text
    assert "__PLOTLY_URL__" not in run_page
    url = run_page.split('<script src="')[1].split('"')[0]
    assert url.startswith("/vendor/plotly-") and url.endswith(".min.js")
    js = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert js.status_code == 200
    assert js.headers["content-encoding"] == "gzip"
    assert "immutable" in js.headers["cache-control"]
    assert int(js.headers["content-length"]) < 2_000_000  # 4.8 MB raw
    assert client.get("/vendor/plotly-0.0.1.min.js").status_code == 404
