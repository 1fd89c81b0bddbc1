"""In-memory channels for tests of the sender and the callback (no server, no network).

They store what they are sent keyed as the server keys it, (run, epoch) and (run, step),
so a resend overwrites itself, and count every call. `fail_next` makes the next calls
raise what a real channel lets out (an `httpx.ConnectError`, a `ReglabError`...), and
`max_points` answers 413 to a larger batch, as a server with a body limit does.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from reglab.channels import EpochPoint, Histograms, StepPoint
from reglab.client import ReglabError


class _Memory:
    url = "memory://reglab"
    token_hint = "a test token"

    def __init__(self, run_id: int = 1, *, max_points: int | None = None) -> None:
        self.run_id: int | None = run_id
        self.max_points = max_points
        self.epochs: dict[tuple[int, int], dict[str, float]] = {}
        self.times: dict[tuple[int, int], float | None] = {}
        self.finished: list[dict[str, Any]] = []
        # Every call: what it sent ("open", "epochs", "steps", "histograms", "heartbeat",
        # "finish") and the epochs or steps in it, stored or not.
        self.calls: list[tuple[str, list[int]]] = []
        self._failures: list[tuple[str | None, BaseException]] = []
        self._lock = threading.Lock()

    def fail_next(self, count: int, error: BaseException, *, what: str | None = None) -> None:
        """Make the next `count` calls (of `what` only, if given) raise `error`, before
        they store anything."""
        with self._lock:
            self._failures.extend([(what, error)] * count)

    def _enter(self, what: str, keys: list[int]) -> None:
        with self._lock:
            self.calls.append((what, keys))
            for index, (only, error) in enumerate(self._failures):
                if only in (None, what):
                    del self._failures[index]
                    raise error
        if self.max_points is not None and len(keys) > self.max_points:
            raise ReglabError(413, f"{len(keys)} points: at most {self.max_points} per request")

    def _run(self, point: EpochPoint | StepPoint | Histograms) -> int:
        run = point.run if point.run is not None else self.run_id
        assert run is not None
        return run

    def open(self) -> None:
        self._enter("open", [])

    def upload_epochs(self, points: Sequence[EpochPoint]) -> None:
        self._enter("epochs", [point.epoch for point in points])
        for point in points:
            self.epochs[self._run(point), point.epoch] = point.values
            self.times[self._run(point), point.epoch] = point.time

    def finish(self, outcome: Mapping[str, Any]) -> None:
        self._enter("finish", [])
        self.finished.append(dict(outcome))

    def uploads(self, what: str) -> list[list[int]]:
        """The epochs (or steps) of each call that uploaded `what`, in order."""
        return [keys for kind, keys in self.calls if kind == what]


class MemoryScriptChannel(_Memory):
    """Stands for a script's run: epochs, per-batch steps and heartbeats."""

    def __init__(
        self,
        run_id: int = 1,
        *,
        max_points: int | None = None,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        super().__init__(run_id, max_points=max_points)
        self.heartbeat_seconds = heartbeat_seconds
        self.steps: dict[tuple[int, int], dict[str, float]] = {}
        self.status: str | None = None  # set to a final status: the run ended on the server

    def upload_steps(self, points: Sequence[StepPoint]) -> None:
        self._enter("steps", [point.step for point in points])
        for point in points:
            self.steps[self._run(point), point.step] = point.values

    def heartbeat(self) -> str | None:
        self._enter("heartbeat", [])
        return self.status


class MemoryClaimedChannel(_Memory):
    """Stands for a claimed run of a worker: epochs and kernel histograms."""

    def __init__(self, run_id: int = 1, *, max_points: int | None = None) -> None:
        super().__init__(run_id, max_points=max_points)
        self.histograms: dict[tuple[int, int], dict[str, dict[str, list[float]]]] = {}

    def upload_histograms(self, batch: Sequence[Histograms]) -> None:
        self._enter("histograms", [item.epoch for item in batch])
        for item in batch:
            self.histograms[self._run(item), item.epoch] = item.layers
