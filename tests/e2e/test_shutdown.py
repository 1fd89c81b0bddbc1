"""Ctrl-C on a server whose worker has just left: `reglab serve` stops within its graceful
shutdown and says nothing alarming. A long-poll claim whose claimer closed it ends
when the claimer goes, not when its wait (or the 5 s look at the queue) runs out, which
the server's shutdown would otherwise cut short with a CancelledError traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port, wait_for
from tests.faults.conftest import Lab


def test_a_claim_whose_worker_left_does_not_hold_up_the_shutdown(tmp_path: Path) -> None:
    # A second of graceful shutdown, well before the server's next look at the queue (5 s).
    with Lab.open(tmp_path, claim_wait_seconds=60, graceful_shutdown_seconds=1) as lab:
        # A worker's long poll on an empty queue, whose connection then closes (as when a
        # stopping worker's process ends) before the server is stopped.
        body = json.dumps(
            {"worker_id": "w", "host": "h", "devices": ["CPU"], "slot": "CPU", "wait": 60}
        ).encode()
        with socket.create_connection(("127.0.0.1", lab.port), timeout=10) as claimer:
            claimer.sendall(
                b"POST /api/worker/claim HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.5)  # the claim waits on the server
        time.sleep(1.0)  # past the server's look at the claimer (every 0.5 s)
        lab.stop_server(signal.SIGINT, timeout=15)
        text = (lab.folder / "server.log").read_text(errors="replace")
    # Past its graceful shutdown, uvicorn cancels what still runs, with a traceback.
    assert "Traceback" not in text and "graceful shutdown exceeded" not in text, text


def test_ctrl_c_on_reglab_up_stops_the_worker_and_the_server_at_once(tmp_path: Path) -> None:
    """`make run`'s Ctrl-C, while the worker's slot waits on a minute-long claim: the
    worker leaves its long poll at once (its client's close cannot break the request off),
    and the server stops without waiting out the claim."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REGLAB_DATABASE_URL": f"sqlite:///{tmp_path / 'reglab.db'}",
        "REGLAB_DATA_DIR": str(tmp_path / "data"),
        "REGLAB_CLAIM_WAIT_SECONDS": "60",
        "REGLAB_WORKER_REPORT_SECONDS": "0.5",
    }
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "reglab.cli", "up", "--port", str(port), "--gpus", "none"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _slot_states(url) == ["waiting"], timeout=90)
        time.sleep(1.0)  # the slot's claim is on the server
        began = time.monotonic()
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
        stopped_in = time.monotonic() - began
    finally:
        if up.poll() is None:
            up.kill()
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text and "graceful shutdown exceeded" not in text, text
    # Not the claim's 60 s, nor the 15 s `reglab up` gives its worker before killing it.
    assert stopped_in < 10, f"stopped in {stopped_in:.1f} s:\n{text}"


def _slot_states(url: str) -> list[str]:
    try:
        workers = httpx.get(f"{url}/api/workers", timeout=5).json()
    except httpx.HTTPError:
        return []
    return [slot["state"] for worker in workers for slot in worker["slots"]]
