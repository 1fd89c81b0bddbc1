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
from worker.devices import Slot
from worker.plugins import plugin_names

log = logging.getLogger("reglab.worker")
RUNS_PER_CHILD = 20
MEMORY_GROWTH_MB = 2048.0
# How long a child that has ended its run on the server may take to say so.
_FINISH_GRACE_SECONDS = 15.0


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
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.slots = slots
        self.claim_wait = claim_wait
        self.runs_per_child = max(1, runs_per_child)
        self.memory_growth_mb = memory_growth_mb
        self.host = socket.gethostname()
        self.plugins = plugin_names()  # told to the server with every claim
        self.worker_id = worker_id or f"{self.host}-{os.getpid()}-{secrets.token_hex(3)}"
        self.stopping = threading.Event()
        self._transport = transport
        self._threads: list[threading.Thread] = []
        self._clients: list[WorkerClient] = []
        self._claim_clients: list[WorkerClient] = []

    def run(self) -> None:
        """Start every slot and block until stopped."""
        log.info(
            "worker %s: %d slot(s): %s; server %s",
            self.worker_id,
            len(self.slots),
            ", ".join(slot.name for slot in self.slots),
            self.server_url,
        )
        for slot in self.slots:
            thread = threading.Thread(target=self._slot_loop, args=(slot,), name=slot.name)
            thread.start()
            self._threads.append(thread)
        for thread in self._threads:
            while thread.is_alive():
                thread.join(0.5)

    def stop(self) -> None:
        """Finish gracefully: hand running runs back to the queue, end the children."""
        if not self.stopping.is_set():
            log.info("worker %s: stopping", self.worker_id)
        self.stopping.set()
        # Break off long-polling claims now rather than when their wait runs out.
        for client in list(self._claim_clients):
            with contextlib.suppress(Exception):
                client.close()

    def _client(self) -> WorkerClient:
        client = WorkerClient(self.server_url, transport=self._transport)
        self._clients.append(client)
        return client

    def _slot_loop(self, slot: Slot) -> None:
        client = self._client()
        claim_client = self._client()
        self._claim_clients.append(claim_client)
        child: Child | None = None
        spare: Child | None = None  # the next child, warming while the last job trains
        try:
            while not self.stopping.is_set():
                if child is None or not child.alive:
                    if child is not None:
                        log.warning(
                            "warm child on %s exited (%s); starting another",
                            slot.name,
                            describe_exit(child.process.returncode),
                        )
                    child, spare = (spare if spare is not None else Child.spawn(slot)), None
                claim = self._claim(claim_client, slot)
                if claim is None:
                    continue
                if self.stopping.is_set():
                    self._release(client, claim)
                    break
                if not child.alive:  # died while waiting: a fresh one takes the job
                    child, spare = (spare if spare is not None else Child.spawn(slot)), None
                last = child.jobs + 1 >= self.runs_per_child
                if last and spare is None:
                    spare = Child.spawn(slot)
                if not self._train(client, slot, child, claim):
                    child = None  # stopped or dead: the spare (or a new one) goes on
                elif last or child.memory_growth_mb() > self.memory_growth_mb:
                    log.info(
                        "recycling child %s after %d jobs (memory +%.0f MiB)",
                        child.pid,
                        child.jobs,
                        child.memory_growth_mb(),
                    )
                    threading.Thread(target=child.close_idle, daemon=True).start()
                    child = None
        finally:
            for idle in (child, spare):
                if idle is not None:
                    idle.close_idle()
            client.close()
            claim_client.close()

    def _claim(self, client: WorkerClient, slot: Slot) -> dict[str, Any] | None:
        try:
            return client.claim(
                worker_id=self.worker_id,
                host=self.host,
                devices=[s.name for s in self.slots],
                slot=slot.name,
                wait=self.claim_wait,
                plugins=self.plugins,
            )
        except (httpx.TransportError, ReglabError, RuntimeError) as error:
            if self.stopping.is_set():
                return None
            log.warning("claim failed (%s); retrying", error)
            self.stopping.wait(2.0)
            return None

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
        for experiment_id in _job_runs(claim):
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
        runs = _job_runs(claim)
        what = _describe_job(claim)
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


def _job_runs(claim: dict[str, Any]) -> list[int]:
    """The experiments a claim holds: its members for a pack, else its one run."""
    pack = claim.get("pack")
    if pack is not None:
        return [int(member["experiment_id"]) for member in pack["members"]]
    return [int(claim["experiment_id"])]


def _describe_job(claim: dict[str, Any]) -> str:
    pack = claim.get("pack")
    if pack is not None:
        runs = ", ".join(str(run) for run in _job_runs(claim))
        return f"pack {pack['id']} (experiments {runs})"
    return f"experiment {claim['experiment_id']} ({claim['spec']['name']})"
