"""Channels: where the background sender's uploads go.

A channel turns a batch of points into requests. Each point says which run it belongs
to (`run`; None means the channel's own run), so a channel may send one batch that spans
several runs in one request: a packed sweep's epoch of all its members, say. The sender
(reglab/sender.py) does the buffering, the retries and the bookkeeping; a channel only
calls the server and lets its errors out: `httpx.HTTPError` when there was no answer,
`ReglabError` (409: `LeaseLostError`) when the server said no.

Two channels ship: `ScriptRunChannel` for a user's own training script (it creates its
run, heartbeats while quiet, uploads epochs and per-batch steps, and finishes), and
`ClaimedRunChannel` for a run a worker has claimed (the lease token on every call; no
create and no heartbeat, which the supervisor sends). reglab/testing.py has in-memory
ones for tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from reglab.client import LeaseLostError, ReglabClient, ReglabError, WorkerClient

log = logging.getLogger("reglab.channels")


@dataclass(frozen=True)
class EpochPoint:
    """One epoch's values of one run, as uploaded."""

    epoch: int
    values: dict[str, float]
    time: float | None = None  # Unix time of the epoch's end
    run: int | None = None

    def body(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "values": self.values, "time": self.time}


@dataclass(frozen=True)
class StepPoint:
    """One training step's (batch's) values of one run."""

    step: int
    values: dict[str, float]
    run: int | None = None

    def body(self) -> dict[str, Any]:
        return {"step": self.step, "values": self.values}


@dataclass(frozen=True)
class Histograms:
    """One epoch's kernel histograms of one run: {layer: {"edges": [...], "counts": [...]}}."""

    epoch: int
    layers: dict[str, dict[str, list[float]]]
    run: int | None = None


class Channel(Protocol):
    """What every channel does: make sure its run exists, upload epochs, finish."""

    @property
    def run_id(self) -> int | None:
        """The channel's own run (None until a script's run is created)."""
        ...

    @property
    def url(self) -> str:
        """The server, for messages."""
        ...

    @property
    def token_hint(self) -> str:
        """What to do when the server refuses the token."""
        ...

    def open(self) -> None:
        """Make sure the run exists; called again after a failure, so idempotent."""
        ...

    def upload_epochs(self, points: Sequence[EpochPoint]) -> None: ...

    def finish(self, outcome: Mapping[str, Any]) -> None:
        """End the run: `status`, and `error`, `error_epoch`... as the server takes them."""
        ...


@runtime_checkable
class StepChannel(Channel, Protocol):
    """A channel that also takes per-batch points."""

    def upload_steps(self, points: Sequence[StepPoint]) -> None: ...


@runtime_checkable
class HistogramChannel(Channel, Protocol):
    """A channel that also takes kernel histograms."""

    def upload_histograms(self, batch: Sequence[Histograms]) -> None: ...


@runtime_checkable
class HeartbeatChannel(Channel, Protocol):
    """A channel that keeps its run alive itself while there is nothing to upload."""

    @property
    def heartbeat_seconds(self) -> float:
        """The longest silence before a heartbeat is due."""
        ...

    def heartbeat(self) -> str | None:
        """Renew the run; the run's status when it has ended on the server, else None."""
        ...


class ScriptRunChannel:
    """A user's own training script: creates its run (POST /api/runs) on `open`, uploads
    to /api/runs/{id}/..., heartbeats and finishes with the user token.

    `device` says what the script trains on; it is asked on the sender's thread when the
    run is created and, while it answers None (no framework loaded yet), again before
    each upload of epochs, until the run has its device."""

    token_hint = "set REGLAB_TOKEN or pass token=... to ReglabCallback or reglab.Run"

    def __init__(
        self,
        client: ReglabClient,
        *,
        name: str,
        script: dict[str, Any],
        heartbeat_seconds: float,
        device: Callable[[], str | None] | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.script = script
        self.heartbeat_seconds = heartbeat_seconds
        self.run_id: int | None = None
        self.device: str | None = None  # as the run has it on the server
        self._describe_device = device

    @property
    def url(self) -> str:
        return self.client.base_url

    def _own(self, points: Sequence[EpochPoint] | Sequence[StepPoint]) -> int:
        assert self.run_id is not None, "open() first"
        for point in points:
            if point.run not in (None, self.run_id):
                raise ValueError(f"a point of run {point.run} sent to run {self.run_id}")
        return self.run_id

    def _device_now(self) -> str | None:
        if self._describe_device is None:
            return None
        try:
            return self._describe_device()
        except Exception as error:  # never a reason to lose the run
            log.warning("reglab: the device could not be told (%s)", error)
            self._describe_device = None
            return None

    def open(self) -> None:
        if self.run_id is None:
            device = self._device_now()
            self.run_id = int(self.client.create_run(self.name, self.script, device)["id"])
            self.device = device
            log.info("reglab: streaming to %s/runs/%d", self.url, self.run_id)
            self.heartbeat()  # learns the lease, so that heartbeats come often enough

    def _tell_device(self, run_id: int) -> None:
        """Record the device once it is known, if the run was created without it."""
        if self.device is not None or self._describe_device is None:
            return
        device = self._device_now()
        if device is None:
            return
        try:
            self.client.set_run_device(run_id, device)
        except ReglabError as error:  # refused: the epochs still go; no second try
            log.warning("reglab: the server refused the device %r: %s", device, error)
            self._describe_device = None
            return
        self.device = device

    def upload_epochs(self, points: Sequence[EpochPoint]) -> None:
        run_id = self._own(points)
        self._tell_device(run_id)
        self.client.upload_run_epochs(run_id, [point.body() for point in points])

    def upload_steps(self, points: Sequence[StepPoint]) -> None:
        run_id = self._own(points)
        self.client.upload_run_steps(run_id, [point.body() for point in points])

    def heartbeat(self) -> str | None:
        assert self.run_id is not None, "open() first"
        answer = self.client.run_heartbeat(self.run_id)
        lease = float(answer.get("lease_seconds") or 0)
        if lease > 0:
            self.heartbeat_seconds = min(self.heartbeat_seconds, lease / 3)
        return str(answer.get("status")) if answer.get("cancel") else None

    def finish(self, outcome: Mapping[str, Any]) -> None:
        assert self.run_id is not None, "open() first"
        body = {key: value for key, value in outcome.items() if value is not None}
        if "error" in body:
            body["error"] = str(body["error"])[:10_000]
        self.client.finish_run(self.run_id, **body)

    def close(self) -> None:
        """Close the channel's HTTP client."""
        self.client.close()


class ClaimedRunChannel:
    """A run a worker has claimed: uploads and the finish go to
    /api/worker/experiments/{id}/... with the lease token. The run exists already and
    the supervisor heartbeats it, so this channel does neither."""

    token_hint = "set REGLAB_WORKER_TOKEN to the server's worker token"

    def __init__(self, client: WorkerClient, experiment_id: int, lease_token: str) -> None:
        self.client = client
        self.run_id = experiment_id
        self.lease_token = lease_token

    @property
    def url(self) -> str:
        return self.client.base_url

    def _own(self, points: Sequence[EpochPoint] | Sequence[Histograms]) -> None:
        for point in points:
            if point.run not in (None, self.run_id):
                raise ValueError(f"a point of run {point.run} sent to run {self.run_id}")

    def open(self) -> None:
        """Nothing to create: the claim made the run this worker's."""

    def upload_epochs(self, points: Sequence[EpochPoint]) -> None:
        self._own(points)
        body = [point.body() for point in points]
        self.client.upload_metrics(self.run_id, self.lease_token, body)

    def upload_histograms(self, batch: Sequence[Histograms]) -> None:
        self._own(batch)
        for histograms in batch:  # the worker route takes one epoch per request
            self.client.upload_histograms(
                self.run_id, self.lease_token, histograms.epoch, histograms.layers
            )

    def finish(self, outcome: Mapping[str, Any]) -> None:
        self.client.finish(self.run_id, self.lease_token, **outcome)


class ClaimedPackChannel:
    """The members of a pack a worker has claimed (the points of a sweep that train as
    one packed model): each batch of epochs of every member travels as one request
    (POST /api/worker/metrics), with the pack's one lease token. The server's answer names
    the members it stopped (cancelled, pruned), gathered in `stopped` for the trainer;
    their later points are dropped. Each member finishes on its own (the training child
    calls the server), never through this channel."""

    token_hint = "set REGLAB_WORKER_TOKEN to the server's worker token"
    run_id = None  # every point names its member

    def __init__(self, client: WorkerClient, lease_token: str, members: Sequence[int]) -> None:
        self.client = client
        self.lease_token = lease_token
        self.members = frozenset(members)
        self.stopped: set[int] = set()

    @property
    def url(self) -> str:
        return self.client.base_url

    def open(self) -> None:
        """Nothing to create: the claim made the members this worker's."""

    def upload_epochs(self, points: Sequence[EpochPoint]) -> None:
        body = []
        for point in points:
            if point.run not in self.members:
                raise ValueError(f"a point of run {point.run} is not of this pack")
            if point.run not in self.stopped:
                body.append({"experiment_id": point.run, **point.body()})
        if body:
            answer = self.client.upload_points(self.lease_token, body)
            self.stopped.update(int(run) for run in answer.get("stopped", ()))

    def upload_histograms(self, batch: Sequence[Histograms]) -> None:
        for histograms in batch:
            if histograms.run is None or histograms.run in self.stopped:
                continue
            try:
                self.client.upload_histograms(
                    histograms.run, self.lease_token, histograms.epoch, histograms.layers
                )
            except LeaseLostError:  # this member was stopped meanwhile; the others go on
                self.stopped.add(histograms.run)

    def finish(self, outcome: Mapping[str, Any]) -> None:
        raise RuntimeError("a pack's members finish one by one, not through its channel")
