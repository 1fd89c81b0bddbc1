"""One slot's state as the supervisor keeps it: its children, what it does, whether its
GPU can take a job (the out-of-memory back-off included), and the worker's report of its
slots to the server (the workers page); with the few facts read off a claimed job.

Like the supervisor (worker/supervisor.py), it never imports a framework.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from reglab.client import ReglabError, WorkerClient
from worker.children import Child
from worker.devices import Availability, GpuSnapshot, GpuState, Slot, availability, slot_gpu

log = logging.getLogger("reglab.worker")


@dataclass
class SlotState:
    """One slot's children and what it is doing, as the worker reports it: "starting",
    "waiting" (with why: no work, GPU busy), "training" (its runs), or "stopped"."""

    slot: Slot
    state: str = "starting"
    reason: str | None = None
    experiment_ids: list[int] = field(default_factory=list)
    pack_id: int | None = None
    child: Child | None = None
    spare: Child | None = None  # the next child, warming while the last job trains
    claimed_free_mb: float | None = None  # GPU memory free for the job when it was claimed
    # After a run ran out of memory here: the memory it had, and when (monotonic).
    oom: tuple[float | None, float] | None = None

    def pids(self) -> set[int]:
        return {child.pid for child in (self.child, self.spare) if child is not None}

    def availability(
        self,
        snapshot: GpuSnapshot | None,
        *,
        own_pids: Collection[int],
        min_free_mb: float,
        share: bool,
        oom_backoff: float,
    ) -> Availability:
        """Whether the slot's GPU can take a run by `snapshot` (worker.devices.availability);
        after an out-of-memory failure, only once more memory is free than the run had
        there, or `oom_backoff` seconds later."""
        verdict = availability(
            self.slot,
            snapshot,
            own_pids=own_pids,
            slot_pids=self.pids(),
            min_free_mb=min_free_mb,
            share=share,
        )
        if not verdict.available or self.oom is None:
            return verdict
        had, when = self.oom
        free = verdict.free_mb
        freed = free is not None and had is not None and free >= had + min_free_mb
        if not freed and time.monotonic() - when < oom_backoff:
            now = "" if free is None else f"; {free:.0f} MiB free"
            return Availability(
                False,
                f"GPU busy: waiting for it to free up after a run ran out of memory{now}",
                free,
                "oom",
            )
        self.oom = None
        return verdict

    def describe(self, gpu: GpuState | None) -> dict[str, Any]:
        """This slot in the worker's report (app/schemas/worker.py SlotReport)."""
        return {
            "name": self.slot.name,
            "state": self.state,
            "reason": self.reason,
            "experiment_ids": list(self.experiment_ids),
            "pack_id": self.pack_id,
            "gpu": None
            if gpu is None
            else {
                "index": gpu.index,
                "uuid": gpu.uuid,
                "name": gpu.name,
                "memory_used_mb": gpu.memory_used_mb,
                "memory_total_mb": gpu.memory_total_mb,
                "utilization_percent": gpu.utilization_percent,
            },
        }


def next_child(state: SlotState) -> Child:
    """The slot's spare child if it has one (warm already), else a new one."""
    return state.spare if state.spare is not None else Child.spawn(state.slot)


def send_report(
    client: WorkerClient,
    states: Iterable[SlotState],
    snapshot: GpuSnapshot | None,
    *,
    worker_id: str,
    host: str,
    devices: list[str],
    plugins: list[str],
) -> bool:
    """Report the slots (each with its GPU in `snapshot`); False when the server has no
    report call (an older one)."""
    slots = [
        state.describe(slot_gpu(state.slot, snapshot) if snapshot and state.slot.gpu else None)
        for state in states
    ]
    try:
        client.report(
            worker_id=worker_id,
            host=host,
            devices=devices,
            plugins=plugins,
            slots=slots,
        )
    except ReglabError as error:
        if error.status_code in (404, 405):
            log.info("the server takes no slot reports (%s): not sending them", error)
            return False
        log.warning("report failed: %s", error)
    except httpx.TransportError as error:
        log.debug("report failed: %s", error)
    return True


# --- A claimed job ---------------------------------------------------------------------


def job_runs(claim: dict[str, Any]) -> list[int]:
    """The experiments a claim holds: its members for a pack, else its one run."""
    pack = claim.get("pack")
    if pack is not None:
        return [int(member["experiment_id"]) for member in pack["members"]]
    return [int(claim["experiment_id"])]


def out_of_memory(finished: dict[str, Any] | None) -> bool:
    """Whether a job's outcome (its "finished" line) is an out-of-memory failure."""
    return finished is not None and str(finished.get("error") or "").startswith("out of memory")


def describe_job(claim: dict[str, Any]) -> str:
    pack = claim.get("pack")
    if pack is not None:
        runs = ", ".join(str(run) for run in job_runs(claim))
        return f"pack {pack['id']} (experiments {runs})"
    return f"experiment {claim['experiment_id']} ({claim['spec']['name']})"
