"""What streaming every epoch to a reglab server costs a training run.

Trains the seed's MLP (examples/l2-dropout-digits.json: digits, Dense 64/32 with L2 0.01
and dropout 0.5) on the same splits two ways, alternating in rounds (A then B, then B
then A, so that drift on this shared machine falls on both):

  A  plain `model.fit` on a model from `worker.builders.build_model(spec)` and the splits
     of `worker.datasets.load_dataset`, with no callback but a tiny epoch clock;
  B  the worker's training path, `worker.training.train(spec, [StreamingCallback(sender),
     clock])`, whose `MetricSender` uploads every epoch to a real reglab server running as
     a subprocess (the run is submitted and claimed first, so the uploads are accepted).

An epoch's time is the interval between two successive epoch ends (so it includes every
callback); each round's first epoch (graph tracing) is dropped. Printed:

  (a) the median over rounds of median(B epoch) / median(A epoch)      target <= 1.03
  (b) how long `StreamingCallback.on_epoch_end` held the training thread, from its
      `hold_seconds` (median and p99 over every timed epoch)            target <= 0.5 ms
      The per-layer weight statistics are computed on the sender's thread, not in the
      hold; their cost there is printed too.

For reference, the peers' callbacks measured earlier on this machine (quoted from
/work/shared/DESIGN.md, not re-measured here): MLflow 3.17 Keras callback 0.9 ms,
TensorBoard 13.5 ms per epoch.

    .venv/bin/python bench/train_overhead.py --rounds 6 --epochs 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench._common import (  # noqa: E402
    REFERENCE_HOLD_MS,
    Server,
    claim_run,
    fmt_ms,
    machine,
    median,
    percentile,
    print_table,
    seed_spec,
)

TARGET_RATIO = 1.03
TARGET_HOLD_S = 0.5e-3


def make_clock() -> Any:
    import keras

    class EpochClock(keras.callbacks.Callback):
        """Marks each epoch's end; epoch i lasts marks[i+1] - marks[i]."""

        def __init__(self) -> None:
            super().__init__()
            self.marks: list[float] = []

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self.marks = [time.perf_counter()]

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.marks.append(time.perf_counter())

        @property
        def epochs(self) -> list[float]:
            return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]

    return EpochClock()


def run_plain(spec_dict: dict[str, Any]) -> list[float]:
    """A: model.fit with only the epoch clock."""
    import keras

    from app.spec import ExperimentSpec
    from worker.builders import build_model, input_layout
    from worker.datasets import load_dataset

    keras.backend.clear_session()
    spec = ExperimentSpec.model_validate(spec_dict)
    splits = load_dataset(spec.dataset, spec.training.seed, input_layout(spec))
    model = build_model(spec)
    clock = make_clock()
    model.fit(
        splits.x_train,
        splits.y_train,
        validation_data=(splits.x_val, splits.y_val),
        epochs=spec.training.epochs,
        batch_size=spec.training.batch_size,
        shuffle=spec.training.shuffle,
        verbose=0,
        callbacks=[clock],
    )
    return clock.epochs


def run_streamed(url: str, spec_dict: dict[str, Any]) -> tuple[list[float], list[float], Any]:
    """B: worker.training.train with the streaming callback uploading to the server."""
    import keras

    from app.client import ReglabClient, WorkerClient
    from app.spec import ExperimentSpec
    from worker.streaming import MetricSender, StreamingCallback
    from worker.training import train

    keras.backend.clear_session()
    experiment_id, token = claim_run(url, spec_dict)
    client = WorkerClient(url)
    try:
        sender = MetricSender(
            upload=lambda points: client.upload_metrics(experiment_id, token, points)
        ).start()
        streaming = StreamingCallback(sender)
        clock = make_clock()
        result = train(ExperimentSpec.model_validate(spec_dict), [streaming, clock])
        if not sender.close(timeout=60):
            raise RuntimeError(f"experiment {experiment_id}: not every epoch was stored")
        client.finish(experiment_id, token, status="succeeded", best_epoch=result.best_epoch)
    finally:
        client.close()
    epochs = spec_dict["training"]["epochs"]
    if sorted(sender.sent_epochs) != list(range(epochs)):
        raise RuntimeError(f"sender stored epochs {sorted(sender.sent_epochs)}")
    with ReglabClient(url) as reader:
        stored = reader.metrics(experiment_id)["epochs"]
    if stored != list(range(epochs)):
        raise RuntimeError(f"server holds epochs {stored}, expected 0..{epochs - 1}")
    return clock.epochs, streaming.hold_seconds, result.model


def statistics_cost(model: Any, repeats: int = 200) -> float:
    """Median seconds of `layer_statistics` on the model's kernels (the sender's work)."""
    import keras

    from worker.streaming import layer_statistics

    kernels = [
        (layer.name, keras.ops.convert_to_numpy(layer.kernel))
        for layer in model.layers
        if getattr(layer, "kernel", None) is not None
    ]
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        layer_statistics(kernels)
        times.append(time.perf_counter() - began)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="A/B rounds (default 6)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per run (default 20)")
    parser.add_argument(
        "--warmup-epochs", type=int, default=3, help="untimed A and B run first (0: none)"
    )
    args = parser.parse_args()

    print(f"machine: {machine()}")
    print(f"{args.rounds} rounds x {args.epochs} epochs of the seed's MLP; first epoch dropped")
    import keras
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, backend {keras.backend.backend()}")

    plain_rounds: list[list[float]] = []
    streamed_rounds: list[list[float]] = []
    holds: list[float] = []
    first_holds: list[float] = []
    last_model = None
    # Lease long enough that this benchmark needs no heartbeats.
    with Server(env={"REGLAB_LEASE_SECONDS": "3600"}) as server:
        print(f"server: {server.url} (pid {server.process.pid if server.process else '?'})")
        if args.warmup_epochs:
            run_plain(seed_spec(args.warmup_epochs, "bench-warmup"))
            run_streamed(server.url, seed_spec(args.warmup_epochs, "bench-warmup"))
        for index in range(args.rounds):
            order = ("A", "B") if index % 2 == 0 else ("B", "A")
            for which in order:
                spec = seed_spec(args.epochs, f"bench-overhead-{index}-{which}")
                if which == "A":
                    plain_rounds.append(run_plain(spec)[1:])
                else:
                    epochs, hold, last_model = run_streamed(server.url, spec)
                    streamed_rounds.append(epochs[1:])
                    holds.extend(hold[1:])
                    first_holds.append(hold[0])
            a, b = median(plain_rounds[-1]), median(streamed_rounds[-1])
            print(
                f"round {index + 1}/{args.rounds} ({''.join(order)}): "
                f"A {a * 1000:.1f} ms  B {b * 1000:.1f} ms  B/A {b / a:.3f}",
                flush=True,
            )

    ratios = [median(b) / median(a) for a, b in zip(plain_rounds, streamed_rounds, strict=True)]
    paired = [
        bi / ai
        for a, b in zip(plain_rounds, streamed_rounds, strict=True)
        for ai, bi in zip(a, b, strict=True)
    ]
    all_a = [t for r in plain_rounds for t in r]
    all_b = [t for r in streamed_rounds for t in r]
    ratio = median(ratios)
    hold_median, hold_p99 = median(holds), percentile(holds, 99)
    stats_seconds = statistics_cost(last_model) if last_model is not None else float("nan")

    print_table(
        "Epoch times (each round's first epoch dropped)",
        ["", "A plain fit", "B worker path + streaming", "B/A"],
        [
            ["median", fmt_ms(median(all_a), 1), fmt_ms(median(all_b), 1),
             f"{median(all_b) / median(all_a):.3f}"],
            ["p90", fmt_ms(percentile(all_a, 90), 1), fmt_ms(percentile(all_b, 90), 1), ""],
            ["epochs timed", len(all_a), len(all_b), ""],
        ],
    )
    verdict_ratio = "met" if ratio <= TARGET_RATIO else "MISSED"
    verdict_hold = "met" if hold_p99 <= TARGET_HOLD_S else "MISSED"
    print_table(
        "Results",
        ["figure", "measured", "target", ""],
        [
            ["(a) epoch time B/A, median of per-round ratios", f"{ratio:.3f}",
             f"<= {TARGET_RATIO}", verdict_ratio],
            ["    per-round ratios", " ".join(f"{r:.3f}" for r in ratios), "", ""],
            ["    median of paired epoch ratios", f"{median(paired):.3f}", "", ""],
            ["(b) callback hold per epoch, median", fmt_ms(hold_median, 3),
             f"<= {TARGET_HOLD_S * 1000:.1f} ms",
             "met" if hold_median <= TARGET_HOLD_S else "MISSED"],
            ["(b) callback hold per epoch, p99", fmt_ms(hold_p99, 3),
             f"<= {TARGET_HOLD_S * 1000:.1f} ms", verdict_hold],
            ["    hold max / first epoch median", f"{fmt_ms(max(holds), 3)} / "
             f"{fmt_ms(median(first_holds), 3)}", "", ""],
            ["    per-layer statistics (sender thread)", fmt_ms(stats_seconds, 3),
             "off the training thread", ""],
            *[
                [f"    reference: {name}", f"{value} ms", "DESIGN.md, earlier", ""]
                for name, value in REFERENCE_HOLD_MS.items()
            ],
        ],
    )
    print(f"hold samples: {len(holds)} ({args.rounds} rounds x {args.epochs - 1} epochs)")


if __name__ == "__main__":
    main()
