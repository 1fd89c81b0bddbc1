"""A training child: imports the framework at once (a warm slot), then trains one run.

Protocol with the supervisor: the child writes JSON lines on its stdout ("ready",
"started", "finished") and reads one job line from stdin. Everything else the child or
TensorFlow prints goes to stderr. One child per run: a crash or out-of-memory error ends
this process only, and its GPU memory goes back with it. A child whose supervisor is gone
(killed) exits at once rather than train on unsupervised: the server requeues its run when
the lease runs out.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import httpx

if TYPE_CHECKING:
    from app.spec import ExperimentSpec
    from reglab.client import WorkerClient

T = TypeVar("T")
log = logging.getLogger("reglab.child")


def _protocol_stream() -> IO[str]:
    """Keep the real stdout for protocol lines; send every other print to stderr."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


def describe_device() -> str:
    """The device the framework trains on, as it sees it (e.g. 'GPU:0 NVIDIA H100')."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"GPU:0 {details.get('device_name', 'GPU')} (tensorflow)"
        return "CPU (tensorflow)"
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform.upper()}:{device.id} {device.device_kind} (jax)"
    return f"CPU ({backend})"


def _warm_up() -> None:
    """Import and initialise the framework before any run arrives."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    import reglab.callback  # noqa: F401
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


def describe_error(error: BaseException) -> str:
    """A run's `error` for an exception: its type and message, said plainly when the
    device ran out of memory (TensorFlow's ResourceExhaustedError, JAX's
    RESOURCE_EXHAUSTED, Python's MemoryError)."""
    text = f"{type(error).__name__}: {error}".strip()
    if (
        isinstance(error, MemoryError)
        or type(error).__name__ == "ResourceExhaustedError"
        or "RESOURCE_EXHAUSTED" in str(error)
    ):
        text = f"out of memory: {text}"
    return text[:10_000]


def _retry(call: Callable[[], T], *, deadline_seconds: float = 300.0) -> T:
    """Retry a call while the server is unreachable (it may be restarting)."""
    deadline = time.monotonic() + deadline_seconds
    delay = 0.2
    while True:
        try:
            return call()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def run_job(job: dict[str, Any], emit: Callable[..., None]) -> None:
    """Train one claimed run and report it to the server."""
    from app.spec import ExperimentSpec
    from reglab.client import ReglabError, WorkerClient

    experiment_id: int = job["experiment_id"]
    token: str = job["lease_token"]
    spec = ExperimentSpec.model_validate(job["spec"])
    client = WorkerClient(job["server_url"])
    device = describe_device()
    _retry(lambda: client.started(experiment_id, token, device))
    emit("started", device=device)
    with tempfile.TemporaryDirectory(prefix="reglab-data-") as folder:
        try:
            _fetch_upload(client, spec, Path(folder))
        except ReglabError as error:  # e.g. the upload was deleted after the submit
            outcome = {"status": "failed", "error": f"cannot fetch the dataset: {error}"}
            _retry(lambda: client.finish(experiment_id, token, **outcome, error_epoch=0))
            emit("finished", **outcome)
            return
        _train_and_report(client, spec, experiment_id, token, emit)


def _fetch_upload(client: WorkerClient, spec: ExperimentSpec, folder: Path) -> None:
    """Download the run's uploaded dataset, if it has one, for worker.datasets to read."""
    from worker.datasets import use_upload_file

    upload = spec.dataset.upload
    if upload is None:
        return
    path = folder / f"dataset-{upload.id}.npz"
    _retry(lambda: client.download_dataset(upload.id, path))
    use_upload_file(upload.id, path)


def _train_and_report(
    client: WorkerClient,
    spec: ExperimentSpec,
    experiment_id: int,
    token: str,
    emit: Callable[..., None],
) -> None:
    from reglab.callback import ReglabCallback
    from reglab.channels import ClaimedRunChannel
    from reglab.client import LeaseLostError
    from reglab.sender import Sender
    from worker.training import Diverged, train

    # The one sender and callback of reglab/, configured for this claimed run: the
    # histogram cadence comes from the params `train` passes, and a lost lease stops it.
    channel = ClaimedRunChannel(client, experiment_id, token)
    sender = Sender(channel).start()
    callback = ReglabCallback(sender=sender)
    outcome: dict[str, Any]
    try:
        result = train(spec, [callback])
    except Diverged as error:
        outcome = {"status": "failed", "error": str(error), "error_epoch": error.epoch}
    except Exception as error:
        log.exception("experiment %s failed", experiment_id)
        outcome = {
            "status": "failed",
            "error": describe_error(error),
            "error_epoch": callback.last_epoch + 1,
        }
    else:
        outcome = {
            "status": "succeeded",
            "test_metrics": {
                name: value for name, value in result.test_metrics.items() if math.isfinite(value)
            },
            "best_epoch": result.best_epoch,
        }
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.keras"
            result.model.save(path)
            content = path.read_bytes()
        sender.flush(timeout=300)
        _retry(lambda: client.upload_model(experiment_id, token, content))
    if not sender.close(timeout=300):
        log.error("experiment %s: not every epoch reached the server", experiment_id)
    try:
        _retry(lambda: channel.finish(outcome))
    except LeaseLostError as error:
        log.warning("experiment %s: lease lost before finish: %s", experiment_id, error)
        outcome = {"status": "lease_lost", "error": str(error)}
    emit("finished", **outcome)


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
    emit("ready", pid=os.getpid())
    line = sys.stdin.readline()
    if not line.strip():
        return  # the supervisor is stopping
    run_job(json.loads(line), emit)


if __name__ == "__main__":
    main()
