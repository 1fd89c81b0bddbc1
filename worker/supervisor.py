"""The worker supervisor: claims runs over HTTP and trains them in child processes.

It never imports TensorFlow. Each slot (one per GPU, or one CPU slot) has a warm child
(TensorFlow imported) that trains one claimed job after another: a run, or a pack of
sweep members that train as one model. The slot claims its next job as soon as the child
reports the current one finished, heartbeats the lease meanwhile, and stops the child
when its run (every member of its pack) is cancelled. A child is recycled after
`runs_per_child` jobs or once its memory has grown by `memory_growth_mb`; the next one
starts importing while the last job of the old one trains. A child that dies without
reporting (killed, crashed) is reported as a retryable failure of its job with its exit
status: the server requeues it (a pack as a pack) while it has attempts left and fails it
after the last one. A crash ends only the child it happened in.

A GPU slot claims only while its GPU is available (worker.devices.availability: enough
free memory, no foreign compute process), read from nvidia-smi before every claim and
again when a claim arrives (a run claimed meanwhile is handed back); a busy GPU's slot
waits and claims as soon as it frees up. A run that ran out of GPU memory is requeued by
the server (the child reports it retryable); its slot starts a fresh child and waits
until the GPU has more memory free than the run had, or `oom_backoff` seconds, so that
another slot may take it first. Every few seconds, and whenever a slot changes what it
does, the worker reports its slots to the server (the workers page). A slot's state,
its GPU's availability and the report are worker/slot_state.py's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

import httpx

from reglab.client import LeaseLostError, ReglabError, WorkerClient
from worker.children import Child, describe_exit
from worker.devices import Availability, GpuMonitor, Slot
from worker.plugins import plugin_names
from worker.slot_state import (
    SlotState,
    describe_job,
    job_runs,
    next_child,
    out_of_memory,
    send_report,
)

log = logging.getLogger("reglab.worker")
RUNS_PER_CHILD = 20
MEMORY_GROWTH_MB = 2048.0
# How long a child that has ended its run on the server may take to say so.
_FINISH_GRACE_SECONDS = 15.0
MIN_FREE_MB = 2048.0
GPU_POLL_SECONDS = 5.0
REPORT_SECONDS = 5.0
OOM_BACKOFF_SECONDS = 60.0
# A report is not worth holding up a stopping worker (the server may be down or paused).
REPORT_TIMEOUT_SECONDS = 5.0
# Moved to worker/slot_state.py; tests/worker/test_gpu_slots.py imports it from here.
_out_of_memory = out_of_memory


class Supervisor:
    """Runs one claim loop per slot until `stop()`."""

    def __init__(
        self,
        server_url: str,
        slots: list[Slot],
        *,
        claim_wait: float = 20.0,
        runs_per_child: int = RUNS_PER_CHILD,
        memory_growth_mb: float = MEMORY_GROWTH_MB,
        worker_id: str | None = None,
        transport: httpx.BaseTransport | None = None,
        min_free_mb: float = MIN_FREE_MB,
        share_gpus: bool = False,
        gpu_poll: float = GPU_POLL_SECONDS,
        report_every: float = REPORT_SECONDS,
        oom_backoff: float = OOM_BACKOFF_SECONDS,
        monitor: GpuMonitor | None = None,
    ) -> None:
        """`min_free_mb`, `share_gpus`: when a GPU is available (worker.devices);
        `gpu_poll`: how often a slot whose GPU is busy looks again; `report_every`: how
        often the worker reports its slots to the server."""
        self.server_url = server_url.rstrip("/")
        self.slots = slots
        self.claim_wait = claim_wait
        self.runs_per_child = max(1, runs_per_child)
        self.memory_growth_mb = memory_growth_mb
        self.min_free_mb = min_free_mb
        self.share_gpus = share_gpus
        self.gpu_poll = gpu_poll
        self.report_every = report_every
        self.oom_backoff = oom_backoff
        self.monitor = monitor or GpuMonitor(enabled=any(slot.gpu for slot in slots))
        self.states = {slot.name: SlotState(slot) for slot in slots}
        self._report_due = threading.Event()
        self.host = socket.gethostname()
        self.plugins = plugin_names()  # told to the server with every claim
        self.worker_id = worker_id or f"{self.host}-{os.getpid()}-{secrets.token_hex(3)}"
        self.stopping = threading.Event()
        self._transport = transport
        self._threads: list[threading.Thread] = []
        self._clients: list[WorkerClient] = []

    def run(self) -> None:
        """Start every slot and block until stopped."""
        log.info(
            "worker %s: %d slot(s): %s; server %s",
            self.worker_id,
            len(self.slots),
            ", ".join(slot.name for slot in self.slots),
            self.server_url,
        )
        reporter = threading.Thread(target=self._report_loop, name="report", daemon=True)
        reporter.start()
        for slot in self.slots:
            thread = threading.Thread(target=self._slot_loop, args=(slot,), name=slot.name)
            thread.start()
            self._threads.append(thread)
        for thread in self._threads:
            while thread.is_alive():
                thread.join(0.5)
        reporter.join(5.0)
        for state in self.states.values():
            self._set(state, "stopped")
        with contextlib.closing(self._client(timeout=REPORT_TIMEOUT_SECONDS)) as client:
            self._report(client)  # the page says stopped, not silent

    def stop(self) -> None:
        """Finish gracefully: hand running runs back to the queue, end the children."""
        if not self.stopping.is_set():
            log.info("worker %s: stopping", self.worker_id)
        self.stopping.set()
        self._report_due.set()

    def _client(self, timeout: float = 30.0) -> WorkerClient:
        client = WorkerClient(self.server_url, transport=self._transport, timeout=timeout)
        self._clients.append(client)
        return client

    def _slot_loop(self, slot: Slot) -> None:
        state = self.states[slot.name]
        client = self._client()
        claim_client = self._client()
        try:
            while not self.stopping.is_set():
                if state.child is None or not state.child.alive:
                    if state.child is not None:
                        log.warning(
                            "warm child on %s exited (%s); starting another",
                            slot.name,
                            describe_exit(state.child.process.returncode),
                        )
                    state.child, state.spare = next_child(state), None
                verdict = self._availability(state)
                if not verdict.available:
                    self._wait_for_gpu(state, verdict)
                    continue
                self._set(state, "waiting", "no work")
                claim = self._claim(claim_client, slot)
                if claim is None:
                    continue
                if self.stopping.is_set():
                    self._release(client, claim)
                    break
                verdict = self._availability(state, max_age=0)  # filled meanwhile?
                if not verdict.available:
                    log.info("handing %s back: %s", describe_job(claim), verdict.reason)
                    self._release(client, claim)
                    self._wait_for_gpu(state, verdict)
                    continue
                state.claimed_free_mb = verdict.free_mb
                if not state.child.alive:  # died while waiting: a fresh one takes the job
                    state.child, state.spare = next_child(state), None
                child = state.child
                last = child.jobs + 1 >= self.runs_per_child
                if last and state.spare is None:
                    state.spare = Child.spawn(slot)
                pack = claim.get("pack")
                self._set(state, "training", runs=job_runs(claim), pack_id=pack and pack["id"])
                trained = self._train(client, slot, child, claim)
                if not trained:
                    state.child = None  # stopped or dead: the spare (or a new one) goes on
                elif slot.gpu and out_of_memory(child.finished):
                    # Its memory goes back with it; the server has requeued the run.
                    log.info("%s ran out of memory: a fresh child will take the next", slot.name)
                    state.oom = (state.claimed_free_mb, time.monotonic())
                    state.child = None
                    child.close_idle()
                elif last or child.memory_growth_mb() > self.memory_growth_mb:
                    log.info(
                        "recycling child %s after %d jobs (memory +%.0f MiB)",
                        child.pid,
                        child.jobs,
                        child.memory_growth_mb(),
                    )
                    threading.Thread(target=child.close_idle, daemon=True).start()
                    state.child = None
        finally:
            for idle in (state.child, state.spare):
                if idle is not None:
                    idle.close_idle()
            client.close()
            claim_client.close()

    def _set(
        self,
        state: SlotState,
        what: str,
        reason: str | None = None,
        *,
        runs: list[int] | None = None,
        pack_id: int | None = None,
    ) -> None:
        """Change what a slot does; a change is reported to the server at once."""
        runs = runs or []
        if (state.state, state.reason, state.experiment_ids) != (what, reason, runs):
            state.state, state.reason, state.experiment_ids, state.pack_id = (
                what,
                reason,
                runs,
                pack_id,
            )
            self._report_due.set()

    def _own_pids(self) -> set[int]:
        return {pid for state in self.states.values() for pid in state.pids()}

    def _availability(self, state: SlotState, max_age: float = 0.5) -> Availability:
        """Whether the slot's GPU can take a run now (always, for a CPU slot), by a
        reading at most `max_age` seconds old (SlotState.availability: the out-of-memory
        back-off included)."""
        if not state.slot.gpu:
            return Availability(True)
        return state.availability(
            self.monitor.snapshot(max_age),
            own_pids=self._own_pids(),
            min_free_mb=self.min_free_mb,
            share=self.share_gpus,
            oom_backoff=self.oom_backoff,
        )

    def _wait_for_gpu(self, state: SlotState, verdict: Availability) -> None:
        """Say why the slot waits, and look again in `gpu_poll` seconds. A child that has
        trained may hold GPU memory that nvidia-smi does not tie to it (in a container it
        shows no processes): where memory is short, it is replaced first."""
        if state.state != "waiting" or state.reason != verdict.reason:
            log.info("%s waits: %s", state.slot.name, verdict.reason)
        self._set(state, "waiting", verdict.reason)
        child = state.child
        if verdict.cause == "memory" and child is not None and child.jobs > 0:
            log.info("%s: replacing child %s to free its GPU memory", state.slot.name, child.pid)
            state.child = None
            child.close_idle()
            return
        self.stopping.wait(self.gpu_poll)

    def _report_loop(self) -> None:
        """Report the slots every `report_every` seconds, and at once when one changes."""
        client = self._client(timeout=REPORT_TIMEOUT_SECONDS)
        while not self.stopping.is_set():
            self._report_due.clear()
            if not self._report(client):
                return
            self._report_due.wait(self.report_every)

    def _report(self, client: WorkerClient) -> bool:
        """Send the report; False when the server has no report call (an older one)."""
        return send_report(
            client,
            self.states.values(),
            self.monitor.snapshot(max_age=self.report_every / 2),
            worker_id=self.worker_id,
            host=self.host,
            devices=[slot.name for slot in self.slots],
            plugins=self.plugins,
        )

    def _claim(self, client: WorkerClient, slot: Slot) -> dict[str, Any] | None:
        """A long-poll claim, given up as soon as the worker stops. Closing its client
        does not break off a request under way, so the call runs in a thread of its own
        that a stopping worker leaves behind: its connection closes as the process ends,
        and the server lets go of a claimer that has gone. A run it claims after it was
        left behind goes back to the queue."""
        answer: list[dict[str, Any] | None] = []
        failure: list[BaseException] = []
        done = threading.Event()
        lock = threading.Lock()
        left_behind = False

        def call() -> None:
            try:
                claim = client.claim(
                    worker_id=self.worker_id,
                    host=self.host,
                    devices=[s.name for s in self.slots],
                    slot=slot.name,
                    wait=self.claim_wait,
                    plugins=self.plugins,
                )
            except (httpx.TransportError, ReglabError, RuntimeError) as error:
                failure.append(error)
                done.set()
                return
            with lock:
                answer.append(claim)
                done.set()
                if not left_behind or claim is None:
                    return
            with contextlib.closing(self._client(timeout=REPORT_TIMEOUT_SECONDS)) as releaser:
                self._release(releaser, claim)

        threading.Thread(target=call, name=f"claim {slot.name}", daemon=True).start()
        while not done.wait(0.2):
            if self.stopping.is_set():
                with lock:
                    if not done.is_set():
                        left_behind = True
                        return None
        if failure:
            if self.stopping.is_set():
                return None
            log.warning("claim failed (%s); retrying", failure[0])
            self.stopping.wait(2.0)
            return None
        return answer[0]

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except LeaseLostError as error:
            log.info("%s: %s", getattr(method, "__name__", "call"), error)
        except (httpx.TransportError, ReglabError) as error:
            log.warning("%s failed: %s", getattr(method, "__name__", "call"), error)
        return None

    def _release(self, client: WorkerClient, claim: dict[str, Any]) -> None:
        """Hand a claimed job back to the queue (the worker is stopping)."""
        for experiment_id in job_runs(claim):
            self._call(client.release, experiment_id, claim["lease_token"])

    def _heartbeat(self, client: WorkerClient, claim: dict[str, Any]) -> bool:
        """Renew the job's lease; True when the server says to stop it (cancelled, and for
        a pack every member stopped). Raises LeaseLostError."""
        pack = claim.get("pack")
        if pack is not None:
            return bool(client.pack_heartbeat(pack["id"], claim["lease_token"]).get("cancel"))
        beat = client.heartbeat(claim["experiment_id"], claim["lease_token"])
        return bool(beat.get("cancel"))

    def _train(self, client: WorkerClient, slot: Slot, child: Child, claim: dict[str, Any]) -> bool:
        """Hand a claimed job to `child` and look after it until the child reports it
        finished (True: the child is ready for the next) or is stopped or dies (False)."""
        token = claim["lease_token"]
        runs = job_runs(claim)
        what = describe_job(claim)
        log.info(
            "claimed %s, attempt %s, slot %s, child pid %s (job %d)",
            what,
            claim["attempt"],
            slot.name,
            child.pid,
            child.jobs + 1,
        )
        began = time.monotonic()
        child.send({**claim, "server_url": self.server_url})
        interval = float(claim.get("heartbeat_seconds", 2.0))
        stopped_by: str | None = None
        announced = False
        while not child.done.wait(interval):
            if not child.alive:
                child.done.wait(1.0)  # a "finished" line may still be in the pipe
                break
            if child.started and not announced:
                log.info("started %s on %s (pid %s)", what, child.started["device"], child.pid)
                announced = True
            if self.stopping.is_set():
                stopped_by = "worker stopping"
                child.stop()
                self._release(client, claim)
                break
            try:
                cancel = self._heartbeat(client, claim)
            except LeaseLostError as error:
                # A child that has begun reporting the end (it said "finishing") ended
                # the run itself: then this is the end of the job, not a lost lease.
                if child.finishing and child.done.wait(_FINISH_GRACE_SECONDS):
                    break
                stopped_by = f"lease lost ({error.detail})"
                child.stop()
                break
            except (httpx.TransportError, ReglabError) as error:
                # The server may be restarting: keep training, the child buffers its points;
                # the server gives leases a grace period after it starts again.
                log.warning("heartbeat for %s failed: %s", what, error)
                continue
            if cancel:
                stopped_by = "cancelled"
                child.stop()
                break
        seconds = time.monotonic() - began
        if stopped_by is not None:
            log.info("stopped %s: %s", what, stopped_by)
            return False
        if child.done.is_set() and child.finished is not None:
            status = child.finished.get("status")
            detail = child.finished.get("error") or child.finished.get("members") or ""
            log.info("finished %s: %s in %.1f s %s", what, status, seconds, detail)
            return True
        # Not the job's own failure: the server requeues it (a pack as a pack) or, after
        # its last attempt, fails it (its rule, not ours).
        reason = f"training process died ({describe_exit(child.process.wait())})"
        log.error("%s: %s", what, reason)
        for experiment_id in runs:
            self._call(
                client.finish, experiment_id, token, status="failed", error=reason, retryable=True
            )
        return False

    def close(self) -> None:
        for client in self._clients:
            client.close()
