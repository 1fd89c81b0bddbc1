"""`WorkerClient`: the calls a worker makes about the runs it holds (claim, report,
started, heartbeat, metric and model uploads, a pack's calls, finish, release), each with
its lease token. `reglab.client` re-exports it.

The token comes from `REGLAB_WORKER_TOKEN`, else `REGLAB_TOKEN`, and the server's address
from `REGLAB_SERVER_URL` (reglab/connection.py reads them); a 409 raises LeaseLostError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from reglab.connection import auth_headers, env_token, raise_for_error, server_url, tls_context

__all__ = ["WorkerClient"]


class WorkerClient:
    """The calls a worker makes about the runs it holds (lease token on each)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`base_url`: by default `REGLAB_SERVER_URL`. `token`: by default
        `REGLAB_WORKER_TOKEN`, else `REGLAB_TOKEN`, if set."""
        if token is None:
            token = env_token("REGLAB_WORKER_TOKEN") or env_token("REGLAB_TOKEN")
        self.base_url = server_url(base_url)
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers=auth_headers(token),
            verify=tls_context(),
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        raise_for_error(response)
        return response

    def claim(
        self,
        *,
        worker_id: str,
        host: str,
        devices: list[str],
        slot: str,
        wait: float,
        plugins: list[str] | None = None,
    ) -> dict[str, Any] | None:
        response = self._call(
            "POST",
            "/api/worker/claim",
            json={
                "worker_id": worker_id,
                "host": host,
                "devices": devices,
                "slot": slot,
                "wait": wait,
                "plugins": plugins or [],
            },
            timeout=httpx.Timeout(10.0, read=wait + 30.0),
        )
        return None if response.status_code == 204 else response.json()

    def report(
        self,
        *,
        worker_id: str,
        host: str,
        devices: list[str],
        slots: list[dict[str, Any]],
        plugins: list[str] | None = None,
    ) -> None:
        """Tell the server what each of this worker's slots is doing (the workers page)."""
        self._call(
            "POST",
            "/api/worker/report",
            json={
                "worker_id": worker_id,
                "host": host,
                "devices": devices,
                "plugins": plugins or [],
                "slots": slots,
            },
        )

    def download_dataset(self, dataset_id: int, destination: Path) -> None:
        """Stream an uploaded dataset's stored arrays (an NPZ without pickles) to a file."""
        partial = destination.with_name(destination.name + ".part")
        with self._http.stream("GET", f"/api/worker/datasets/{dataset_id}") as response:
            if response.status_code >= 400:
                response.read()
                raise_for_error(response)
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        partial.replace(destination)

    def heartbeat(self, experiment_id: int, lease_token: str) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/api/worker/experiments/{experiment_id}/heartbeat",
            json={"lease_token": lease_token},
        ).json()

    def started(self, experiment_id: int, lease_token: str, device: str) -> None:
        self._call(
            "POST",
            f"/api/worker/experiments/{experiment_id}/started",
            json={"lease_token": lease_token, "device": device},
        )

    def upload_metrics(
        self, experiment_id: int, lease_token: str, points: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/api/worker/experiments/{experiment_id}/metrics",
            json={"lease_token": lease_token, "points": points},
        ).json()

    def upload_points(self, lease_token: str, points: list[dict[str, Any]]) -> dict[str, Any]:
        """Store epochs of several runs held by one lease (a pack's members) in one
        request; the answer names the runs the server has stopped (`stopped`)."""
        return self._call(
            "POST", "/api/worker/metrics", json={"lease_token": lease_token, "points": points}
        ).json()

    def pack_started(self, pack_id: int, lease_token: str, device: str) -> None:
        self._call(
            "POST",
            f"/api/worker/packs/{pack_id}/started",
            json={"lease_token": lease_token, "device": device},
        )

    def pack_heartbeat(self, pack_id: int, lease_token: str) -> dict[str, Any]:
        """Renew the lease of every running member; `stopped` names the members cancelled
        or pruned, and `cancel` says every member has stopped."""
        return self._call(
            "POST",
            f"/api/worker/packs/{pack_id}/heartbeat",
            json={"lease_token": lease_token},
        ).json()

    def upload_histograms(
        self, experiment_id: int, lease_token: str, epoch: int, layers: dict[str, Any]
    ) -> dict[str, Any]:
        return self._call(
            "POST",
            f"/api/worker/experiments/{experiment_id}/histograms",
            json={"lease_token": lease_token, "epoch": epoch, "layers": layers},
        ).json()

    def upload_model(self, experiment_id: int, lease_token: str, content: bytes) -> None:
        self._call(
            "PUT",
            f"/api/worker/experiments/{experiment_id}/model",
            params={"lease_token": lease_token},
            content=content,
            headers={"Content-Type": "application/octet-stream"},
        )

    def finish(self, experiment_id: int, lease_token: str, **fields: Any) -> None:
        self._call(
            "POST",
            f"/api/worker/experiments/{experiment_id}/finish",
            json={"lease_token": lease_token, **fields},
        )

    def release(self, experiment_id: int, lease_token: str) -> None:
        self._call(
            "POST",
            f"/api/worker/experiments/{experiment_id}/release",
            json={"lease_token": lease_token},
        )
