"""A Python client for reglab's REST API and event streams (httpx), and the Keras
callback that streams a user's own training script (`ReglabCallback`, app/callback.py).

Importing this module needs only httpx (the server's settings are read when a client is
made without a token); `ReglabCallback` is loaded on first use, so the CLI and the worker
supervisor that import this module never import Keras.

Example:
    >>> from app.client import ReglabClient
    >>> with ReglabClient("http://127.0.0.1:8000") as client:
    ...     run = client.submit(spec_dict)
    ...     for event in client.events(run["id"]):
    ...         print(event.kind, event.data)
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from pydantic import SecretStr

    from app.callback import ReglabCallback


def __getattr__(name: str) -> Any:
    """`from app.client import ReglabCallback` imports Keras then, and only then."""
    if name == "ReglabCallback":
        from app.callback import ReglabCallback

        return ReglabCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LeaseLostError",
    "ReglabCallback",
    "ReglabClient",
    "ReglabError",
    "ServerEvent",
    "WorkerClient",
    "parse_sse",
]


def get_settings() -> Any:
    """The server's settings (pydantic-settings), read only when a client needs them."""
    from app.settings import get_settings as settings

    return settings()


class ReglabError(Exception):
    """The server answered with an error."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code = status_code
        self.detail = detail
        super().__init__(f"HTTP {status_code}: {detail}")


class LeaseLostError(ReglabError):
    """409 from a worker call: another claim holds the run, or it was cancelled."""


@dataclass(frozen=True)
class ServerEvent:
    id: int | None
    kind: str
    data: dict[str, Any]


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    error = LeaseLostError if response.status_code == 409 else ReglabError
    raise error(response.status_code, detail)


class ReglabClient:
    """Submit, list, read, watch and cancel experiments; the worker's calls too."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`token`: the server's access token; by default `REGLAB_TOKEN` if set."""
        self.base_url = base_url.rstrip("/")
        token = token if token is not None else _secret(get_settings().token)
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport, headers=_auth(token)
        )

    def __enter__(self) -> ReglabClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response

    # --- experiments ----------------------------------------------------------------

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/experiments", json=spec).json()

    def list(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if name:
            params["name"] = name
        return self._call("GET", "/api/experiments", params=params).json()

    def get(self, experiment_id: int) -> dict[str, Any]:
        return self._call("GET", f"/api/experiments/{experiment_id}").json()

    def metrics(self, experiment_id: int) -> dict[str, Any]:
        return self._call("GET", f"/api/experiments/{experiment_id}/metrics").json()

    def metrics_csv(self, experiment_id: int) -> str:
        return self._call(
            "GET", f"/api/experiments/{experiment_id}/metrics", params={"format": "csv"}
        ).text

    def cancel(self, experiment_id: int) -> dict[str, Any]:
        return self._call("POST", f"/api/experiments/{experiment_id}/cancel").json()

    def download_model(self, experiment_id: int) -> bytes:
        return self._call("GET", f"/api/experiments/{experiment_id}/model").content

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/api/health").json()

    def workers(self) -> builtins.list[dict[str, Any]]:
        return self._call("GET", "/api/workers").json()

    def events(
        self, experiment_id: int, *, last_event_id: int | None = None, reconnect: bool = True
    ) -> Iterator[ServerEvent]:
        """Follow a run's event stream until its final status, resuming after drops."""
        last = last_event_id
        while True:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                with self._http.stream(
                    "GET",
                    f"/api/experiments/{experiment_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(10.0, read=60.0),
                ) as response:
                    if response.status_code == 204:
                        return  # the run is over and everything was seen
                    if not response.is_success:
                        response.read()
                        _raise_for(response)
                    for event in parse_sse(response.iter_lines()):
                        if event.id is not None:
                            last = event.id
                        yield event
                        if event.kind == "status" and event.data.get("status") in (
                            "succeeded",
                            "failed",
                            "cancelled",
                            "pruned",
                        ):
                            return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                if not reconnect:
                    raise
            if not reconnect:
                return
            time.sleep(1.0)


def parse_sse(lines: Iterator[str]) -> Iterator[ServerEvent]:
    """Turn event-stream lines into events (comments and pings are skipped)."""
    kind, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                payload = "\n".join(data)
                try:
                    parsed = json.loads(payload)
                except ValueError:
                    parsed = {"raw": payload}
                yield ServerEvent(event_id, kind, parsed)
            kind, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            kind = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = int(value) if value.isdigit() else None


class WorkerClient:
    """The calls a worker makes about the runs it holds (lease token on each)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`token`: by default `REGLAB_WORKER_TOKEN`, else `REGLAB_TOKEN`, if set."""
        if token is None:
            settings = get_settings()
            token = _secret(settings.worker_token) or _secret(settings.token)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            headers=_auth(token),
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        _raise_for(response)
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

    def download_dataset(self, dataset_id: int, destination: Path) -> None:
        """Stream an uploaded dataset's stored arrays (an NPZ without pickles) to a file."""
        partial = destination.with_name(destination.name + ".part")
        with self._http.stream("GET", f"/api/worker/datasets/{dataset_id}") as response:
            if response.status_code >= 400:
                response.read()
                _raise_for(response)
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
