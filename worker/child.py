"""A training child: imports the framework at once (a warm slot), then trains the jobs
its supervisor hands it, one after another.

Protocol with the supervisor: the child writes JSON lines on its stdout ("ready",
"started", "finished", the last with its resident memory) and reads one job line from
stdin per job; EOF ends it. Everything else the child or TensorFlow prints goes to
stderr. Between jobs it clears Keras' session; its supervisor recycles it after a number
of jobs or when its memory has grown (Keras leaks a little per model). A crash or an
out-of-memory error ends this process only, and its GPU memory goes back with it. A child
whose supervisor is gone (killed) exits at once rather than train on unsupervised: the
server requeues its run when the lease runs out.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("reglab.child")


def _protocol_stream() -> IO[str]:
    """Keep the real stdout for protocol lines; send every other print to stderr."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


def _warm_up() -> None:
    """Import and initialise the framework before any run arrives."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    import reglab.callback  # noqa: F401
    import worker.packing
    import worker.training  # noqa: F401


def watch_supervisor(pid: int, interval: float = 0.5) -> threading.Thread:
    """Exit this process as soon as the supervisor `pid` is no longer its parent.

    An orphan is re-parented (to init or a subreaper), so `getppid()` changes; polling it
    works on every POSIX system and needs no signal set up in the parent.
    """

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(interval)
        log.error("the worker supervisor (pid %d) is gone: stopping", pid)
        logging.shutdown()
        os._exit(70)

    thread = threading.Thread(target=watch, name="supervisor-watch", daemon=True)
    thread.start()
    return thread


def _memory_mb() -> float:
    """This process's resident memory now, in MiB (0 where /proc is not there)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset() -> None:
    """Forget the last job's models and graphs before the next one. Keras' own reset, less
    its full garbage collection (a quarter of a second, which the next job would wait
    for): Python's collector comes round by itself, and a child whose memory grows is
    recycled (worker/supervisor.py)."""
    import keras

    keras.backend.clear_session(free_memory=False)


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s child %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    protocol = _protocol_stream()
    supervisor = os.environ.get("REGLAB_SUPERVISOR_PID")
    if supervisor and supervisor.isdigit():
        watch_supervisor(int(supervisor))

    def emit(event: str, **fields: Any) -> None:
        protocol.write(json.dumps({"event": event, **fields}) + "\n")
        protocol.flush()

    _warm_up()
    from worker.jobs import run_job

    emit("ready", pid=os.getpid(), memory_mb=_memory_mb())
    while True:
        line = sys.stdin.readline()
        if not line.strip():
            return  # EOF: the supervisor is done with this child
        outcome = run_job(json.loads(line), emit)
        # Said first, so that the supervisor claims the next job while this one is cleared.
        emit("finished", **outcome, memory_mb=_memory_mb())
        _reset()


if __name__ == "__main__":
    main()
