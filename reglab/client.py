"""A Python client for reglab's REST API and event streams (httpx): `ReglabClient` for
people and scripts, `parse_sse` and `ServerEvent` for the streams. `WorkerClient` (the
calls a worker makes about the runs it holds: reglab/worker_client.py), the errors,
`env_token` and `server_url` (reglab/connection.py) are re-exported here, where their
users import them.

It needs httpx, and the contract (`app.spec`, pydantic) once it follows an event stream
(where the final statuses end it): a training script that streams its run loads no more.
The tokens and the server's address come from the environment (`REGLAB_TOKEN`,
`REGLAB_WORKER_TOKEN`, `REGLAB_SERVER_URL`; an empty value means none), never from the
server's settings.

Example:
    >>> from reglab import ReglabClient
    >>> with ReglabClient("http://127.0.0.1:8000") as client:
    ...     run = client.submit(spec_dict)
    ...     for event in client.events(run["id"]):
    ...         print(event.kind, event.data)
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from reglab.connection import (
    DEFAULT_SERVER_URL,
    LeaseLostError,
    ReglabError,
    auth_headers,
    env_token,
    raise_for_error,
    server_url,
    tls_context,
)
from reglab.worker_client import WorkerClient

__all__ = [
    "DEFAULT_SERVER_URL",
    "LeaseLostError",
    "ReglabClient",
    "ReglabError",
    "ServerEvent",
    "WorkerClient",
    "env_token",
    "parse_sse",
    "server_url",
]


@dataclass(frozen=True)
class ServerEvent:
    """One server-sent event: its id (for resuming), its kind and its JSON data."""

    id: int | None
    kind: str
    data: dict[str, Any]


class ReglabClient:
    """Submit, list, read, watch and cancel experiments; stream a script's own run."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`base_url`: by default `REGLAB_SERVER_URL`, else http://127.0.0.1:8000.
        `token`: the server's access token; by default `REGLAB_TOKEN` if set."""
        self.base_url = server_url(base_url)
        token = token if token is not None else env_token("REGLAB_TOKEN")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers=auth_headers(token),
            verify=tls_context(),
        )

    def __enter__(self) -> ReglabClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        raise_for_error(response)
        return response

    # --- experiments ----------------------------------------------------------------

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/experiments", json=spec).json()

    def list(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        ids: Sequence[int] | None = None,
        filter: str | None = None,
        order_by: str | None = None,
        metrics: str | Sequence[str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        """One page of the experiments that match, newest first unless `order_by` says
        otherwise: `{"items": [...], "total": n}`. `filter` and `order_by` are in the
        query language (README, "Query runs"); `metrics` names the metrics whose
        summaries each run carries (`"*"`: every metric). A bad filter is a ReglabError
        (422) whose detail says where and what was expected."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if name:
            params["name"] = name
        if ids:
            params["ids"] = ",".join(str(run_id) for run_id in ids)
        if filter:
            params["filter"] = filter
        if order_by:
            params["order_by"] = order_by
        if metrics:
            params["metrics"] = metrics if isinstance(metrics, str) else ",".join(metrics)
        return self._call("GET", "/api/experiments", params=params).json()

    def runs(
        self,
        filter: str | None = None,
        order_by: str | None = None,
        limit: int | None = None,
        *,
        metrics: str | Sequence[str] | None = "*",
        status: str | None = None,
        name: str | None = None,
        page_size: int = 200,
    ) -> Iterator[dict[str, Any]]:
        """Every run that matches `filter`, in `order_by`'s order (newest first by
        default), page after page, up to `limit` runs; each with the summaries of
        `metrics` (every metric by default; None for none). `status` and `name` (part
        of it) narrow the match as list() does. A run that moves to an
        earlier page while paging (runs created meanwhile) is not yielded twice.

        Example:
            >>> for run in client.runs("status = 'succeeded'", "metrics.val_data_loss.best"):
            ...     print(run["id"], run["metrics"]["val_data_loss"]["best"])
        """
        seen: set[int] = set()
        offset = 0
        size = max(1, min(page_size, 500))
        while limit is None or len(seen) < limit:
            page = self.list(
                filter=filter,
                order_by=order_by,
                metrics=metrics,
                status=status,
                name=name,
                limit=size,
                offset=offset,
            )
            for run in page["items"]:
                if run["id"] in seen:
                    continue
                seen.add(run["id"])
                yield run
                if limit is not None and len(seen) >= limit:
                    return
            offset += len(page["items"])
            if len(page["items"]) < size or offset >= page["total"]:
                return

    def runs_frame(
        self,
        filter: str | None = None,
        order_by: str | None = None,
        limit: int | None = None,
        *,
        metrics: str | Sequence[str] | None = "*",
        verdicts: bool = True,
    ) -> Any:
        """The matching runs as a pandas DataFrame, one row per run: the attributes
        (`id`, `name`, `status`, `created` as datetime64...), `params.<path>`,
        `config.<key>`, `metrics.<name>.<best|last|min|max>`, `tags.<key>` and
        `test.<name>` (reglab/frames.py says each). `verdicts` asks the server for each
        run's verdict (one request per 100 runs). Needs pandas: `pip install
        'reglab[pandas]'`.

        Example:
            >>> frame = client.runs_frame("dataset = 'digits'", "metrics.val_data_loss.best")
            >>> frame[["name", "params.model.layers.0.regularizer.l2"]].head()
        """
        from reglab import frames

        frames.require_pandas()
        found = builtins.list(self.runs(filter, order_by, limit, metrics=metrics))
        judged = self.verdicts([run["id"] for run in found]) if verdicts else {}
        return frames.runs_frame(
            frames.flatten_run(run, (judged.get(run["id"]) or {}).get("verdict")) for run in found
        )

    def verdicts(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Each run's verdict (over-fitting, under-fitting, still improving, healthy, too
        early; its hint and reason), by id: one request per 100 runs."""
        wanted = builtins.list(dict.fromkeys(int(run_id) for run_id in ids))
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(wanted), 100):
            chunk = ",".join(str(run_id) for run_id in wanted[start : start + 100])
            answer = self._call("GET", "/api/verdicts", params={"ids": chunk}).json()
            found.update({int(key): value for key, value in answer["verdicts"].items()})
        return found

    def history_frame(self, ids: Iterable[int], metrics: Sequence[str] | None = None) -> Any:
        """The runs' per-epoch metrics as a long pandas DataFrame (`run`, `epoch`,
        `metric`, `value`), every metric or those named; a missing value is no row. An
        id that names no run is a ReglabError (404). Needs pandas: `pip install
        'reglab[pandas]'`.

        Example:
            >>> history = client.history_frame(frame["id"], ["data_loss", "val_data_loss"])
            >>> history.pivot_table(index="epoch", columns=["run", "metric"], values="value")
        """
        from reglab import frames

        frames.require_pandas()
        wanted = builtins.list(dict.fromkeys(int(run_id) for run_id in ids))
        series: dict[int, dict[str, Any]] = {}
        missing: builtins.list[int] = []
        for start in range(0, len(wanted), 100):
            params = {"ids": ",".join(str(run_id) for run_id in wanted[start : start + 100])}
            if metrics:
                params["names"] = ",".join(metrics)
            answer = self._call("GET", "/api/metrics", params=params).json()
            series.update({int(key): value for key, value in answer["runs"].items()})
            missing += answer["missing"]
        if missing:
            raise ReglabError(404, f"no run with id {', '.join(map(str, missing))}")
        return frames.history_frame(series)

    def edit(
        self,
        experiment_id: int,
        *,
        tags: dict[str, str | None] | None = None,
        remove_tags: Sequence[str] = (),
        notes: str | None = None,
        set_notes: bool = False,
    ) -> dict[str, Any]:
        """Change a run's tags and notes: `remove_tags` go, then each of `tags` is set
        (None makes a bare label); the notes are replaced when `set_notes` (None clears
        them)."""
        body: dict[str, Any] = {"tags": tags or {}, "remove_tags": builtins.list(remove_tags)}
        if set_notes:
            body["notes"] = notes
        return self._call("PATCH", f"/api/experiments/{experiment_id}", json=body).json()

    # --- sweeps ---------------------------------------------------------------------

    def submit_sweep(self, request: dict[str, Any]) -> dict[str, Any]:
        """Queue a sweep (a base spec, axes, seeds...); returns it with its runs."""
        return self._call("POST", "/api/sweeps", json=request).json()

    def sweep(self, sweep_id: int) -> dict[str, Any]:
        """A sweep with its runs and its summary."""
        return self._call("GET", f"/api/sweeps/{sweep_id}").json()

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
        from app.spec import FINAL_STATUSES

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
                        raise_for_error(response)
                    for event in parse_sse(response.iter_lines()):
                        if event.id is not None:
                            last = event.id
                        yield event
                        if event.kind == "status" and event.data.get("status") in FINAL_STATUSES:
                            return
            except (httpx.TransportError, httpx.RemoteProtocolError):
                if not reconnect:
                    raise
            if not reconnect:
                return
            time.sleep(1.0)

    # --- a script's own run (ReglabCallback's calls; each is idempotent) ---------------

    def create_run(
        self, name: str, script: dict[str, Any], device: str | None = None
    ) -> dict[str, Any]:
        """Start a run streamed from this script; it is running at once."""
        body: dict[str, Any] = {"name": name, "script": script}
        if device:
            body["device"] = device
        return self._call("POST", "/api/runs", json=body).json()

    def set_run_device(self, run_id: int, device: str) -> dict[str, Any]:
        """Record the device the script trains on, learned after the run was created."""
        return self._call("POST", f"/api/runs/{run_id}/device", json={"device": device}).json()

    def log_run_test(self, run_id: int, test_metrics: dict[str, float]) -> dict[str, Any]:
        """Store the script's test metrics (also after its run has ended)."""
        body = {"test_metrics": test_metrics}
        return self._call("POST", f"/api/runs/{run_id}/test-metrics", json=body).json()

    def upload_run_epochs(self, run_id: int, points: builtins.list[dict[str, Any]]) -> None:
        self._call("POST", f"/api/runs/{run_id}/metrics", json={"points": points})

    def upload_run_steps(self, run_id: int, points: builtins.list[dict[str, Any]]) -> None:
        self._call("POST", f"/api/runs/{run_id}/batches", json={"points": points})

    def run_heartbeat(self, run_id: int) -> dict[str, Any]:
        """Keep a quiet run alive; the answer says whether it ended (`cancel`)."""
        return self._call("POST", f"/api/runs/{run_id}/heartbeat").json()

    def finish_run(self, run_id: int, **fields: Any) -> dict[str, Any]:
        return self._call("POST", f"/api/runs/{run_id}/finish", json=fields).json()


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
