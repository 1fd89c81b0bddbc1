"""The OpenAPI document's links: which answer feeds which next call.

A submitted run's id reads the run, its metrics, stream and verdict, and cancels or
deletes it; a claim's id and lease token drive the worker's calls for that run; and so
on. Clients and tools (schemathesis' stateful phase among them) follow them. A run's
model is linked from its upload only: it exists once training has ended, not when the
run is submitted.
"""

from __future__ import annotations

from typing import Any

# (method, path, status) of the answer -> link name -> (method, path of the next call,
# its parameters as runtime expressions, fields of its body as runtime expressions).
Target = tuple[str, str, dict[str, str], dict[str, str] | None]

_RUN = {"experiment_id": "$response.body#/id"}
_CLAIMED = {"experiment_id": "$response.body#/experiment_id"}
_LEASE = {"lease_token": "$response.body#/lease_token"}
_WORKER = "/api/worker/experiments/{experiment_id}"
_RUN_PATH = "/api/experiments/{experiment_id}"


def _reads(parameters: dict[str, str]) -> dict[str, Target]:
    """The reads of one run, by the id the answer holds."""
    return {
        "read": ("GET", _RUN_PATH, parameters, None),
        "metrics": ("GET", f"{_RUN_PATH}/metrics", parameters, None),
        "events": ("GET", f"{_RUN_PATH}/events", parameters, None),
        "verdict": ("GET", f"{_RUN_PATH}/verdict", parameters, None),
        "histograms": ("GET", f"{_RUN_PATH}/histograms", parameters, None),
        "batches": ("GET", f"{_RUN_PATH}/batches", parameters, None),
    }


LINKS: dict[tuple[str, str, str], dict[str, Target]] = {
    ("POST", "/api/experiments", "201"): {
        **_reads(_RUN),
        "cancel": ("POST", f"{_RUN_PATH}/cancel", _RUN, None),
        "delete": ("DELETE", _RUN_PATH, _RUN, None),
    },
    ("POST", "/api/runs", "201"): {
        **_reads(_RUN),
        "upload_epochs": ("POST", "/api/runs/{experiment_id}/metrics", _RUN, None),
        "upload_batches": ("POST", "/api/runs/{experiment_id}/batches", _RUN, None),
        "heartbeat": ("POST", "/api/runs/{experiment_id}/heartbeat", _RUN, None),
        "finish": ("POST", "/api/runs/{experiment_id}/finish", _RUN, None),
    },
    ("POST", "/api/worker/claim", "200"): {
        **_reads(_CLAIMED),
        "heartbeat": ("POST", f"{_WORKER}/heartbeat", _CLAIMED, _LEASE),
        "started": ("POST", f"{_WORKER}/started", _CLAIMED, _LEASE),
        "upload_metrics": ("POST", f"{_WORKER}/metrics", _CLAIMED, _LEASE),
        "upload_histograms": ("POST", f"{_WORKER}/histograms", _CLAIMED, _LEASE),
        "upload_model": ("PUT", f"{_WORKER}/model", {**_CLAIMED, **_LEASE}, None),
        "finish": ("POST", f"{_WORKER}/finish", _CLAIMED, _LEASE),
        "release": ("POST", f"{_WORKER}/release", _CLAIMED, _LEASE),
    },
    ("PUT", f"{_WORKER}/model", "204"): {
        "download_model": (
            "GET",
            f"{_RUN_PATH}/model",
            {"experiment_id": "$request.path.experiment_id"},
            None,
        ),
    },
    ("POST", "/api/sweeps", "201"): {
        "read": ("GET", "/api/sweeps/{sweep_id}", {"sweep_id": "$response.body#/id"}, None),
        "cancel": (
            "POST",
            "/api/sweeps/{sweep_id}/cancel",
            {"sweep_id": "$response.body#/id"},
            None,
        ),
        "first_run": (
            "GET",
            _RUN_PATH,
            {"experiment_id": "$response.body#/experiment_ids/0"},
            None,
        ),
    },
    ("POST", "/api/datasets", "201"): {
        name: (method, path, {"dataset_id": "$response.body#/id"}, None)
        for name, method, path in (
            ("read", "GET", "/api/datasets/{dataset_id}"),
            ("download", "GET", "/api/datasets/{dataset_id}/file"),
            ("worker_download", "GET", "/api/worker/datasets/{dataset_id}"),
            ("delete", "DELETE", "/api/datasets/{dataset_id}"),
        )
    },
}


def add_links(document: dict[str, Any]) -> dict[str, Any]:
    """Write LINKS into an OpenAPI document (its operations named by operationId)."""
    paths = document["paths"]
    for (method, path, status), links in LINKS.items():
        response = paths[path][method.lower()]["responses"][status]
        response["links"] = {
            name: {
                "operationId": paths[target][target_method.lower()]["operationId"],
                "parameters": parameters,
                **({"requestBody": body} if body else {}),
            }
            for name, (target_method, target, parameters, body) in links.items()
        }
    return document
