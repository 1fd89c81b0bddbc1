"""The worker supervisor: claims runs over HTTP and trains each in a child process.

It never imports TensorFlow. Each slot (one per GPU, or one CPU slot) keeps its next
child started and warm while it long-polls the server for work, hands the claimed run
to that child, heartbeats the lease, and stops the child when the run is cancelled.
A child that dies without reporting (killed, crashed) is reported as a retryable
failure with its exit status: the server requeues the run while it has attempts left and
fails it after the last one. The slot goes on with the next run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

import httpx

from reglab.client import LeaseLostError, ReglabError, WorkerClient
from worker.devices import Slot
from worker.plugins import plugin_names

log = logging.getLogger("reglab.worker")


@dataclass
class Child:
    """A training child process and what it has said on its protocol pipe."""

    process: subprocess.Popen[str]
    notices: subprocess.Popen[bytes] | None = None  # the filter on its stderr, if any
    ready: threading.Event = field(default_factory=threading.Event)
    started: dict[str, Any] | None = None
    finished: dict[str, Any] | None = None

    @classmethod
    def spawn(cls, slot: Slot) -> Child:
        # Quiet by default; a level the worker's environment sets wins.
        level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")
        env = {
            **os.environ,
            **slot.env,
            "TF_CPP_MIN_LOG_LEVEL": level,
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
            # The child watches this pid and exits when it is gone (see worker.child).
            "REGLAB_SUPERVISOR_PID": str(os.getpid()),
        }
        notices = None if level == "0" else quiet_start_up_notices(slot)
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=notices.stdin if notices is not None else None,
            text=True,
            env=env,
            # Keep Ctrl-C for the supervisor, which stops children in order.
            start_new_session=True,
        )
        if notices is not None and notices.stdin is not None:
            notices.stdin.close()  # the child holds the only writing end: EOF when it ends
        child = cls(process, notices)
        threading.Thread(target=child._read, daemon=True, name=f"child-{process.pid}").start()
        return child

    def _read(self) -> None:
        stream: IO[str] | None = self.process.stdout
        assert stream is not None
        for line in stream:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            event = message.pop("event", None)
            if event == "ready":
                self.ready.set()
            elif event == "started":
                self.started = message
            elif event == "finished":
                self.finished = message
        if self.notices is not None:  # reap the filter once the child's stderr closes
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.notices.wait(30)

    def send(self, job: dict[str, Any]) -> bool:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps(job) + "\n")
            stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def stop(self, grace: float = 3.0) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def close_idle(self) -> None:
        """End a warm child that never got a job (EOF on its stdin)."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.stop()


def quiet_start_up_notices(slot: Slot) -> subprocess.Popen[bytes]:
    """A filter process (worker/notices.py) for a child's stderr, writing to ours: it
    leaves out TensorFlow's known harmless start-up lines and passes everything else.
    A process of its own, not a thread here, so that what a child says after its
    supervisor died (it stops, and says why) still reaches the worker's log."""
    return subprocess.Popen(
        [sys.executable, "-m", "worker.notices", *(["--gpu"] if slot.gpu else [])],
        stdin=subprocess.PIPE,
        stdout=2,  # the supervisor's stderr, where the child's would have gone
        start_new_session=True,  # Ctrl-C is the supervisor's; this ends at EOF
    )


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class Supervisor:
    """Runs one claim loop per slot until `stop()`."""

    def __init__(
        self,
        server_url: str,
        slots: list[Slot],
        *,
        claim_wait: float = 20.0,
        worker_id: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.slots = slots
        self.claim_wait = claim_wait
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
        try:
            while not self.stopping.is_set():
                if child is None or child.process.poll() is not None:
                    child = Child.spawn(slot)
                claim = self._claim(claim_client, slot)
                if claim is None:
                    continue
                if self.stopping.is_set():
                    self._call(client.release, claim["experiment_id"], claim["lease_token"])
                    break
                if child.process.poll() is not None:  # died while waiting: start afresh
                    log.warning(
                        "warm child on %s exited (%s); starting another",
                        slot.name,
                        describe_exit(child.process.returncode),
                    )
                    child = Child.spawn(slot)
                self._train(client, slot, child, claim)
                child = None  # one child per run: the next one warms up now
        finally:
            if child is not None:
                child.close_idle()
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

    def _train(self, client: WorkerClient, slot: Slot, child: Child, claim: dict[str, Any]) -> None:
        experiment_id, token = claim["experiment_id"], claim["lease_token"]
        name = claim["spec"]["name"]
        log.info(
            "claimed experiment %s (%s), attempt %s, slot %s, child pid %s",
            experiment_id,
            name,
            claim["attempt"],
            slot.name,
            child.process.pid,
        )
        began = time.monotonic()
        job = {
            "experiment_id": experiment_id,
            "lease_token": token,
            "spec": claim["spec"],
            "server_url": self.server_url,
        }
        child.send(job)
        interval = float(claim.get("heartbeat_seconds", 2.0))
        stopped_by: str | None = None
        announced = False
        while child.process.poll() is None:
            try:
                child.process.wait(timeout=interval)
                break
            except subprocess.TimeoutExpired:
                pass
            if child.started and not announced:
                log.info(
                    "started experiment %s on %s (pid %s)",
                    experiment_id,
                    child.started["device"],
                    child.process.pid,
                )
                announced = True
            if child.finished is not None:
                # The child has reported the end of the run: no more heartbeats (the run
                # is no longer running), just let the process exit.
                try:
                    child.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    log.warning("experiment %s: its child hangs after the end", experiment_id)
                    child.stop()
                break
            if self.stopping.is_set():
                stopped_by = "worker stopping"
                child.stop()
                self._call(client.release, experiment_id, token)
                break
            try:
                beat = client.heartbeat(experiment_id, token)
            except LeaseLostError as error:
                stopped_by = f"lease lost ({error.detail})"
                child.stop()
                break
            except (httpx.TransportError, ReglabError) as error:
                # The server may be restarting: keep training, the child buffers its points;
                # the server gives leases a grace period after it starts again.
                log.warning("heartbeat for experiment %s failed: %s", experiment_id, error)
                continue
            if beat.get("cancel"):
                stopped_by = "cancelled"
                child.stop()
                break
        returncode = child.process.wait()
        seconds = time.monotonic() - began
        if stopped_by is not None:
            log.info("stopped experiment %s: %s", experiment_id, stopped_by)
        elif child.finished is not None:  # it reported the end itself, whatever its exit
            status = child.finished.get("status")
            if status == "succeeded":
                log.info("finished experiment %s: succeeded in %.1f s", experiment_id, seconds)
            elif status == "lease_lost":
                log.info("stopped experiment %s: %s", experiment_id, child.finished.get("error"))
            else:
                log.info("failed experiment %s: %s", experiment_id, child.finished.get("error"))
        else:
            # Not the run's own failure: the server requeues it or, after its last
            # attempt, fails it (its rule, not ours).
            reason = f"training process died ({describe_exit(returncode)})"
            log.error("experiment %s: %s", experiment_id, reason)
            self._call(
                client.finish, experiment_id, token, status="failed", error=reason, retryable=True
            )

    def close(self) -> None:
        for client in self._clients:
            client.close()
