"""What a training child does with a claimed job: train one run, or a pack of members,
and report every epoch, model and final status to the server.

A single run streams through the one `ReglabCallback` of reglab/, configured for the
claimed run. A pack (the points of a sweep that differ only in penalty strengths and
dropout rates) trains as one packed model (worker/packing.py): each epoch of all its
members travels as one upload, and each member finishes on its own (test metrics, its
`.keras` file, its final status) as soon as it stops.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from worker.devices import describe_gpu_memory

if TYPE_CHECKING:
    import keras

    from app.spec import ExperimentSpec
    from reglab.client import WorkerClient
    from reglab.sender import Sender
    from worker.packing import MemberResult

T = TypeVar("T")
log = logging.getLogger("reglab.child")
Emit = Callable[..., None]


def _slot_gpu() -> tuple[int | None, str]:
    """The host index and UUID of the GPU the supervisor gave this child (worker.children)."""
    index = os.environ.get("REGLAB_GPU_INDEX", "")
    return (int(index) if index.isdigit() else None), os.environ.get("REGLAB_GPU_UUID", "")


def describe_device() -> str:
    """The device the framework trains on, as it sees it, with the host's index and UUID
    of its GPU (e.g. 'GPU:1 NVIDIA H100 80GB HBM3 GPU-0f1c… (tensorflow)'), so that a run
    says which of several cards of one model trained it."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return gpu_device(details.get("device_name", "GPU"), "tensorflow")
        return "CPU (tensorflow)"
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform == "gpu":
            return gpu_device(device.device_kind, "jax")
        return f"{device.platform.upper()}:{device.id} {device.device_kind} (jax)"
    return f"CPU ({backend})"


def gpu_device(name: str, framework: str) -> str:
    """A run's device on the GPU its slot gave it: the host's index and the card's UUID
    (the framework numbers the one GPU it sees 0)."""
    index, uuid = _slot_gpu()
    if index is None:
        return f"GPU:0 {name} ({framework})"
    return " ".join(part for part in (f"GPU:{index}", name, uuid, f"({framework})") if part)


def out_of_memory(error: BaseException) -> bool:
    """Whether the device ran out of memory (TensorFlow's ResourceExhaustedError, JAX's
    RESOURCE_EXHAUSTED, Python's MemoryError)."""
    return (
        isinstance(error, MemoryError)
        or type(error).__name__ == "ResourceExhaustedError"
        or "RESOURCE_EXHAUSTED" in str(error)
    )


def describe_error(error: BaseException) -> str:
    """A run's `error` for an exception: its type and message, said plainly when the
    device ran out of memory, and then on a GPU slot which GPU it was and how much of its
    memory was free (read from nvidia-smi as the error is reported)."""
    text = f"{type(error).__name__}: {error}".strip()
    if out_of_memory(error):
        index, uuid = _slot_gpu()
        gpu = describe_gpu_memory(index, uuid) if index is not None else None
        if gpu is None and index is not None:
            gpu = f"GPU {index} ({uuid}): free memory unknown"
        text = f"out of memory on {gpu}: {text}" if gpu else f"out of memory: {text}"
    return text[:10_000]


def failure(error: BaseException, epoch: int) -> dict[str, Any]:
    """The end of an attempt that raised `error` at `epoch`. Out of memory on a GPU is
    retryable (the server requeues the run while it has attempts left): the GPU may have
    been full of another job's memory, and another slot, or this one once the GPU frees
    up, may fit it. On the CPU it is the run's own failure."""
    outcome: dict[str, Any] = {
        "status": "failed",
        "error": describe_error(error),
        "error_epoch": epoch,
    }
    if out_of_memory(error) and _slot_gpu()[0] is not None:
        outcome["retryable"] = True
    return outcome


def retry(call: Callable[[], T], *, deadline_seconds: float = 300.0) -> T:
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


def run_job(job: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Train a claimed job (a run, or a pack when `job["pack"]` is set) and report it;
    returns the outcome the child tells its supervisor."""
    from reglab.client import ReglabError, WorkerClient

    client = WorkerClient(job["server_url"])
    try:
        pack = job.get("pack")
        members = pack["members"] if pack else [job]
        specs = [_spec(member["spec"]) for member in members]
        ids = [int(member["experiment_id"]) for member in members]
        token: str = job["lease_token"]
        device = describe_device()
        if pack:
            retry(lambda: client.pack_started(pack["id"], token, device))
        else:
            retry(lambda: client.started(ids[0], token, device))
        emit("started", device=device, experiments=ids)
        with tempfile.TemporaryDirectory(prefix="reglab-data-") as folder:
            try:
                _fetch_upload(client, specs[0], Path(folder))
            except ReglabError as error:  # e.g. the upload was deleted after the submit
                outcome = {"status": "failed", "error": f"cannot fetch the dataset: {error}"}
                for experiment_id in ids:
                    _finish(client, experiment_id, token, {**outcome, "error_epoch": 0}, emit)
                return outcome
            if pack:
                return _train_pack(client, specs, ids, token, emit)
            return _train_single(client, specs[0], ids[0], token, emit)
    finally:
        client.close()


def _spec(data: dict[str, Any]) -> ExperimentSpec:
    from app.spec import ExperimentSpec

    return ExperimentSpec.model_validate(data)


def _fetch_upload(client: WorkerClient, spec: ExperimentSpec, folder: Path) -> None:
    """Download the run's uploaded dataset, if it has one, for worker.datasets to read."""
    from worker.datasets import use_upload_file

    upload = spec.dataset.upload
    if upload is None:
        return
    path = folder / f"dataset-{upload.id}.npz"
    retry(lambda: client.download_dataset(upload.id, path))
    use_upload_file(upload.id, path)


def _model_bytes(model: keras.Model) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()


def _finish(
    client: WorkerClient, experiment_id: int, token: str, outcome: dict[str, Any], emit: Emit
) -> dict[str, Any]:
    """Report a run's end; a lost lease (the run was cancelled or requeued meanwhile)
    turns the outcome into `lease_lost`. The supervisor hears "finishing" first: a
    heartbeat that finds the run ended from now on is this end, not a lost lease."""
    from reglab.client import LeaseLostError

    emit("finishing", experiment_id=experiment_id)
    try:
        retry(lambda: client.finish(experiment_id, token, **outcome))
    except LeaseLostError as error:
        log.warning("experiment %s: lease lost before finish: %s", experiment_id, error)
        return {"status": "lease_lost", "error": str(error)}
    return outcome


def _success(test_metrics: dict[str, float], best_epoch: int | None) -> dict[str, Any]:
    finite = {name: value for name, value in test_metrics.items() if math.isfinite(value)}
    return {"status": "succeeded", "test_metrics": finite, "best_epoch": best_epoch}


def _train_single(
    client: WorkerClient, spec: ExperimentSpec, experiment_id: int, token: str, emit: Emit
) -> dict[str, Any]:
    from reglab.callback import ReglabCallback
    from reglab.channels import ClaimedRunChannel
    from reglab.sender import Sender
    from worker.training import Diverged, train

    # The one sender and callback of reglab/, configured for this claimed run: the
    # histogram cadence comes from the params `train` passes, and a lost lease stops it.
    sender = Sender(ClaimedRunChannel(client, experiment_id, token)).start()
    callback = ReglabCallback(sender=sender)
    outcome: dict[str, Any]
    try:
        result = train(spec, [callback])
    except Diverged as error:
        outcome = {"status": "failed", "error": str(error), "error_epoch": error.epoch}
    except Exception as error:
        log.exception("experiment %s failed", experiment_id)
        outcome = failure(error, callback.last_epoch + 1)
    else:
        outcome = _success(result.test_metrics, result.best_epoch)
        content = _model_bytes(result.model)
        sender.flush(timeout=300)
        retry(lambda: client.upload_model(experiment_id, token, content))
    if not sender.close(timeout=300):
        log.error("experiment %s: not every epoch reached the server", experiment_id)
    return _finish(client, experiment_id, token, outcome, emit)


class PackStream:
    """The pack trainer's observer: streams each member's epochs through one sender (one
    upload per batch of epochs for every member), finishes each member as it ends, and
    says which members the server stopped (cancelled, pruned).

    A member's finish (its points flushed, its `.keras` file written and uploaded, its
    final status) runs on one background thread, in the order members end: the trainer
    goes on to the next member (or epoch) meanwhile, and the server stores one member's
    model while the child writes the next. `wait` joins it."""

    def __init__(
        self,
        client: WorkerClient,
        sender: Sender,
        stopped: set[int],
        ids: list[int],
        token: str,
        specs: list[ExperimentSpec],
        emit: Emit,
    ) -> None:
        self.client = client
        self.emit = emit
        self.sender = sender
        self.stopped = stopped  # filled by the pack channel from the server's answers
        self.ids = ids
        self.token = token
        self.specs = specs
        self.outcomes: dict[int, dict[str, Any]] = {}
        self.error: str | None = None  # the pack's own failure, if it failed
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finish")
        self._finishing: list[Future[None]] = []

    def member_epoch(
        self, index: int, epoch: int, logs: dict[str, float], kernels: list[tuple[str, Any]]
    ) -> None:
        from reglab.sender import EpochRecord
        from reglab.stats import histogram_due

        training = self.specs[index].training
        histogram = histogram_due(epoch, training.epochs, training.histogram_every)
        self.sender.add_epoch(
            EpochRecord(epoch, dict(logs), kernels, histogram=histogram, run=self.ids[index])
        )

    def stop_requested(self, index: int) -> bool:
        return self.ids[index] in self.stopped

    def member_end(self, result: MemberResult) -> None:
        experiment_id = self.ids[result.index]
        if result.stopped_by is not None:
            # Cancelled or pruned on the server: its status is final there already.
            self.outcomes[experiment_id] = {"status": result.stopped_by}
            return
        self._finishing.append(self._finisher.submit(self._finish_member, result))

    def _finish_member(self, result: MemberResult) -> None:
        experiment_id = self.ids[result.index]
        self.sender.flush(timeout=300)  # its points are stored before its final status
        outcome: dict[str, Any]
        if result.error is not None:
            outcome = {
                "status": "failed",
                "error": str(result.error),
                "error_epoch": result.error.epoch,
            }
        else:
            outcome = _success(result.test_metrics, result.best_epoch)
            content = _model_bytes(result.model)
            retry(lambda: self.client.upload_model(experiment_id, self.token, content))
        self.outcomes[experiment_id] = _finish(
            self.client, experiment_id, self.token, outcome, self.emit
        )

    def wait(self) -> None:
        """Join the members' finishes; the first one that failed raises its error (after
        the others are done)."""
        finishing, self._finishing = self._finishing, []
        errors = [future.exception() for future in finishing]
        for error in errors:
            if error is not None:
                raise error

    def close(self) -> None:
        self._finisher.shutdown(wait=True)

    def fail_the_rest(self, error: BaseException, epoch: int) -> None:
        """The pack itself failed: every member that has not ended fails with its error."""
        try:
            self.wait()
        except Exception:
            log.exception("a member of pack %s could not be finished", self.ids)
        outcome = failure(error, epoch)
        self.error = outcome["error"]
        for experiment_id in self.ids:
            if experiment_id not in self.outcomes:
                self.outcomes[experiment_id] = _finish(
                    self.client, experiment_id, self.token, outcome, self.emit
                )


def _train_pack(
    client: WorkerClient, specs: list[ExperimentSpec], ids: list[int], token: str, emit: Emit
) -> dict[str, Any]:
    from reglab.channels import ClaimedPackChannel
    from reglab.sender import Sender
    from worker.packing import PackTrainer

    channel = ClaimedPackChannel(client, token, ids)
    sender = Sender(channel).start()
    stream = PackStream(client, sender, channel.stopped, ids, token, specs, emit)
    trainer: PackTrainer | None = None
    try:
        trainer = PackTrainer(specs, stream)
        trainer.train()
        stream.wait()
    except Exception as error:
        log.exception("pack of experiments %s failed", ids)
        epochs = [len(member.history["loss"]) for member in trainer.members] if trainer else []
        sender.flush(timeout=300)
        stream.fail_the_rest(error, max(epochs, default=0))
    finally:
        stream.close()
    if not sender.close(timeout=300):
        log.error("pack %s: not every epoch reached the server", ids)
    statuses = [stream.outcomes.get(i, {}).get("status") for i in ids]
    status = "succeeded" if all(s == "succeeded" for s in statuses) else "ended"
    members = {str(i): s for i, s in zip(ids, statuses, strict=True)}
    return {"status": status, "members": members, "error": stream.error}
