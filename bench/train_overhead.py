"""What streaming every epoch to a reglab server costs a training run.

Trains the seed's MLP (examples/l2-dropout-digits.json: digits, Dense 64/32 with L2 0.01
and dropout 0.5) on the same splits in three ways, in rounds whose order rotates and
reverses (so that drift on this shared machine falls on all):

  A  plain `model.fit` on a model from `worker.builders.build_model(spec)` and the splits
     of `worker.datasets.load_dataset`, with no callback but a tiny epoch clock;
  B  the worker's training path, `worker.training.train(spec, [ReglabCallback(sender=sender),
     clock])`, whose `Sender` uploads every epoch to a real reglab server running as
     a subprocess (the run is submitted and claimed first, so the uploads are accepted);
  C  (diagnostic, `--no-diagnose` leaves it out) B's path and callback with uploads that
     go nowhere: B - C is the network and the server, C - A the path and the callback.

An epoch's time is the interval between two successive epoch ends (so it includes every
callback); each round's first epoch (graph tracing) is dropped. Printed:

  (a) the median over rounds of median(B epoch) / median(A epoch)      target <= 1.03
  (b) how long `ReglabCallback.on_epoch_end` held the training thread, from its
      `hold_seconds` (median and p99 over every timed epoch)            target <= 0.5 ms
      The per-layer weight statistics are computed on the sender's thread, not in the
      hold; their cost there is printed too.

For reference, the peers' callbacks measured earlier on this machine (quoted from
/work/shared/DESIGN.md, not re-measured here): MLflow 3.17 Keras callback 0.9 ms,
TensorBoard 13.5 ms per epoch.

    .venv/bin/python bench/train_overhead.py --rounds 10 --epochs 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench._common import (
    REFERENCE_HOLD_MS,
    Server,
    claim_run,
    fmt_ms,
    loadavg,
    machine,
    median,
    percentile,
    print_table,
    process_cpu,
    seed_spec,
    verdict,
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


@dataclass
class Costs:
    """CPU spent per run outside the training thread (seconds, summed over epochs)."""

    server_cpu: float = 0.0  # the server process
    upload_cpu: float = 0.0  # the sender thread inside `upload` (HTTP + JSON)
    upload_wall: list[float] = field(default_factory=list)


def run_local(spec_dict: dict[str, Any]) -> list[float]:
    """C (diagnostic): B's path and callback, but the sender's uploads go nowhere."""
    import keras

    from app.spec import ExperimentSpec
    from reglab import ReglabCallback
    from reglab.sender import Sender
    from reglab.testing import MemoryClaimedChannel
    from worker.training import train

    keras.backend.clear_session()
    sender = Sender(MemoryClaimedChannel()).start()
    clock = make_clock()
    train(ExperimentSpec.model_validate(spec_dict), [ReglabCallback(sender=sender), clock])
    sender.close(timeout=60)
    return clock.epochs


def run_streamed(
    server: Server, spec_dict: dict[str, Any], costs: Costs
) -> tuple[list[float], list[float], Any]:
    """B: worker.training.train with the streaming callback uploading to the server."""
    import keras

    from app.spec import ExperimentSpec
    from reglab import ReglabCallback
    from reglab.channels import ClaimedRunChannel, EpochPoint
    from reglab.client import ReglabClient, WorkerClient
    from reglab.sender import Sender
    from worker.training import train

    url = server.url
    keras.backend.clear_session()
    experiment_id, token = claim_run(url, spec_dict)
    client = WorkerClient(url)

    class TimedChannel(ClaimedRunChannel):
        def upload_epochs(self, points: Sequence[EpochPoint]) -> None:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                super().upload_epochs(points)
            finally:
                costs.upload_cpu += time.thread_time() - cpu
                costs.upload_wall.append(time.perf_counter() - wall)

    assert server.process is not None
    try:
        sender = Sender(TimedChannel(client, experiment_id, token)).start()
        streaming = ReglabCallback(sender=sender)
        clock = make_clock()
        server_cpu = process_cpu(server.process.pid)
        result = train(ExperimentSpec.model_validate(spec_dict), [streaming, clock])
        if not sender.close(timeout=60):
            raise RuntimeError(f"experiment {experiment_id}: not every epoch was stored")
        costs.server_cpu += process_cpu(server.process.pid) - server_cpu
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
    """Median seconds of `layer_statistics` on the model's kernels as backend tensors (the
    sender thread's work per epoch, copying them to the host included)."""
    import keras

    from reglab.stats import layer_statistics

    kernels = [
        (layer.name, keras.ops.convert_to_tensor(layer.kernel))
        for layer in model.layers
        if getattr(layer, "kernel", None) is not None
    ]
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        layer_statistics(kernels)
        times.append(time.perf_counter() - began)
    return median(times)


LABELS = {
    "A": "A plain fit",
    "B": "B worker path + streaming to the server",
    "C": "C worker path + streaming, no-op upload",
}


@dataclass
class Rounds:
    """Every round's epoch times per variant (first epoch dropped), B's callback holds,
    the costs outside the training thread, and the last model B trained."""

    variants: tuple[str, ...]
    times: dict[str, list[list[float]]]
    holds: list[float] = field(default_factory=list)
    first_holds: list[float] = field(default_factory=list)
    costs: Costs = field(default_factory=Costs)
    last_model: Any = None

    def round_ratios(self, name: str) -> list[float]:
        """Per round: the variant's median epoch ÷ A's."""
        return [
            median(x) / median(a) for a, x in zip(self.times["A"], self.times[name], strict=True)
        ]

    def paired(self, name: str) -> list[float]:
        """Epoch by epoch within each round: the variant's time ÷ A's."""
        return [
            xi / ai
            for a, x in zip(self.times["A"], self.times[name], strict=True)
            for ai, xi in zip(a, x, strict=True)
        ]

    def pooled(self, name: str) -> list[float]:
        return [t for r in self.times[name] for t in r]


def run_rounds(args: argparse.Namespace, variants: tuple[str, ...]) -> Rounds:
    """The warm-up, then `args.rounds` rounds of every variant in a rotating order."""
    rounds = Rounds(variants, {name: [] for name in variants})
    # Lease long enough that this benchmark needs no heartbeats.
    with Server(env={"REGLAB_LEASE_SECONDS": "3600"}) as server:
        print(f"server: {server.url} (pid {server.process.pid if server.process else '?'})")
        if args.warmup_epochs:
            run_plain(seed_spec(args.warmup_epochs, "bench-warmup"))
            run_streamed(server, seed_spec(args.warmup_epochs, "bench-warmup"), Costs())
        for index in range(args.rounds):
            # Rotate the order, and reverse it every other round, so drift falls on all.
            order = variants[index % len(variants) :] + variants[: index % len(variants)]
            if index % 2:
                order = order[::-1]
            for which in order:
                run_variant(
                    server, rounds, which, seed_spec(args.epochs, f"bench-overhead-{index}-{which}")
                )
            line = "  ".join(
                f"{name} {median(rounds.times[name][-1]) * 1000:.1f} ms" for name in variants
            )
            a = median(rounds.times["A"][-1])
            ratios_now = "  ".join(
                f"{name}/A {median(rounds.times[name][-1]) / a:.3f}" for name in variants[1:]
            )
            print(
                f"round {index + 1}/{args.rounds} ({''.join(order)}): {line}  {ratios_now}",
                flush=True,
            )
    return rounds


def run_variant(server: Server, rounds: Rounds, which: str, spec: dict[str, Any]) -> None:
    """One fit of variant `which`; its epoch times (and B's holds) go into `rounds`."""
    if which == "A":
        rounds.times["A"].append(run_plain(spec)[1:])
    elif which == "C":
        rounds.times["C"].append(run_local(spec)[1:])
    else:
        epochs, hold, rounds.last_model = run_streamed(server, spec, rounds.costs)
        rounds.times["B"].append(epochs[1:])
        rounds.holds.extend(hold[1:])
        rounds.first_holds.append(hold[0])


def print_epoch_times(rounds: Rounds) -> None:
    """Each variant's epoch times, and against A's."""
    a = median(rounds.pooled("A"))
    print_table(
        "Epoch times (each round's first epoch dropped)",
        ["", "median", "p90", "epochs", "median/A", "median of per-round ratios to A"],
        [
            [
                LABELS[name],
                fmt_ms(median(rounds.pooled(name)), 1),
                fmt_ms(percentile(rounds.pooled(name), 90), 1),
                len(rounds.pooled(name)),
                f"{median(rounds.pooled(name)) / a:.3f}",
                "" if name == "A" else f"{median(rounds.round_ratios(name)):.3f}",
            ]
            for name in rounds.variants
        ],
    )


def ratio_rows(rounds: Rounds) -> list[list[str]]:
    """(a): B's epoch time ÷ A's, against the target, with its spread (and C ÷ A)."""
    ratios = rounds.round_ratios("B")
    ratio = median(ratios)
    rows = [
        [
            "(a) epoch time B/A, median of per-round ratios",
            f"{ratio:.3f}",
            f"<= {TARGET_RATIO}",
            verdict(ratio <= TARGET_RATIO),
        ],
        ["    per-round ratios B/A", " ".join(f"{r:.3f}" for r in ratios), "", ""],
        [
            "    per-round ratios B/A, interquartile range",
            f"{percentile(ratios, 25):.3f} .. {percentile(ratios, 75):.3f}",
            "",
            "",
        ],
        ["    median of paired epoch ratios B/A", f"{median(rounds.paired('B')):.3f}", "", ""],
    ]
    if "C" in rounds.variants:
        rows.append(
            [
                "    C/A (the same path, no network or server)",
                f"{median(rounds.round_ratios('C')):.3f}",
                "",
                "",
            ]
        )
    return rows


def hold_rows(rounds: Rounds, uploaded_epochs: int) -> list[list[str]]:
    """(b): how long the callback held the training thread, and the costs elsewhere."""
    holds, costs = rounds.holds, rounds.costs
    hold_median, hold_p99 = median(holds), percentile(holds, 99)
    model = rounds.last_model
    stats_seconds = statistics_cost(model) if model is not None else float("nan")
    return [
        [
            "(b) callback hold per epoch, median",
            fmt_ms(hold_median, 3),
            f"<= {TARGET_HOLD_S * 1000:.1f} ms",
            verdict(hold_median <= TARGET_HOLD_S),
        ],
        [
            "(b) callback hold per epoch, p99",
            fmt_ms(hold_p99, 3),
            f"<= {TARGET_HOLD_S * 1000:.1f} ms",
            verdict(hold_p99 <= TARGET_HOLD_S),
        ],
        [
            "    hold max / first epoch median",
            f"{fmt_ms(max(holds), 3)} / {fmt_ms(median(rounds.first_holds), 3)}",
            "",
            "",
        ],
        [
            "    per-layer statistics + host copy (sender)",
            fmt_ms(stats_seconds, 3),
            "off the training thread",
            "",
        ],
        [
            "    server CPU per epoch (its process)",
            fmt_ms(costs.server_cpu / uploaded_epochs, 2),
            "competes for the 2 cores",
            "",
        ],
        [
            "    sender CPU per epoch in upload (HTTP+JSON)",
            fmt_ms(costs.upload_cpu / uploaded_epochs, 2),
            "",
            "",
        ],
        ["    upload round trip, median", fmt_ms(median(costs.upload_wall), 2), "", ""],
        *[
            [f"    reference: {name}", f"{value} ms", "DESIGN.md, earlier", ""]
            for name, value in REFERENCE_HOLD_MS.items()
        ],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds (default 10)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per run (default 20)")
    parser.add_argument(
        "--warmup-epochs", type=int, default=3, help="untimed A and B run first (0: none)"
    )
    parser.add_argument(
        "--no-diagnose",
        action="store_true",
        help="leave out C (B's path and callback with uploads that go nowhere)",
    )
    args = parser.parse_args()
    variants = ("A", "B") if args.no_diagnose else ("A", "B", "C")

    print(f"machine: {machine()}; {loadavg()}")
    print(f"{args.rounds} rounds x {args.epochs} epochs of the seed's MLP; first epoch dropped")
    import keras
    import tensorflow as tf

    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, backend {keras.backend.backend()}"
    )
    rounds = run_rounds(args, variants)
    print_epoch_times(rounds)
    # Every epoch of B, the warm-up excluded, is in `costs` (the first epochs too).
    rows = ratio_rows(rounds) + hold_rows(rounds, args.rounds * args.epochs)
    print_table("Results", ["figure", "measured", "target", ""], rows)
    print(f"at the end: {loadavg()}")
    print(
        f"hold samples: {len(rounds.holds)}, epoch samples per variant: "
        f"{len(rounds.pooled('B'))} ({args.rounds} rounds x {args.epochs - 1} epochs)"
    )


if __name__ == "__main__":
    main()
