"""A custom training loop (`tf.GradientTape`) that adds its own penalty, streamed into
reglab's dashboard with `reglab.Run`.

The source material's second pattern: the data loss and an L2 penalty over the kernels
are computed inside the tape and summed by hand, so the loop knows both parts and logs
them apart (`data_loss`, `reg_loss`; `loss` is their sum). The run shows the config, the
model's layers and kernel norms, the device, the verdict and the test metrics; Ctrl-C
marks it cancelled and an exception failed, with its message.

    REGLAB_SERVER_URL=http://127.0.0.1:8000 REGLAB_TOKEN=... \\
        python examples/gradient_tape.py --epochs 30 --l2 1e-3
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

import reglab


def noisy_blobs(samples: int, features: int = 20, classes: int = 3, seed: int = 0) -> tuple:
    """Few samples in many dimensions with noisy labels: easy to over-fit on purpose."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.5, (classes, features))
    labels = rng.integers(0, classes, samples)
    x = centers[labels] + rng.normal(0, 2.0, (samples, features))
    flip = rng.random(samples) < 0.1
    labels[flip] = rng.integers(0, classes, int(flip.sum()))
    return x.astype("float32"), labels.astype("int32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="GradientTape loop: MLP, L2 by hand + dropout")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--l2", type=float, default=1e-3, help="strength of the L2 penalty")
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    x, y = noisy_blobs(args.samples, seed=args.seed)
    n_test = n_val = len(x) // 5
    x_test, y_test = x[:n_test], y[:n_test]
    x_val, y_val = x[n_test : n_test + n_val], y[n_test : n_test + n_val]
    x_train, y_train = x[n_test + n_val :], y[n_test + n_val :]

    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(64, activation="relu", name="hidden_0"),
            keras.layers.Dropout(args.dropout),
            keras.layers.Dense(32, activation="relu", name="hidden_1"),
            keras.layers.Dense(3, activation="softmax", name="output"),
        ]
    )
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    optimizer = keras.optimizers.Adam(args.learning_rate)
    kernels = [layer.kernel for layer in model.layers if getattr(layer, "kernel", None) is not None]
    l2 = tf.constant(args.l2)

    def penalty() -> tf.Tensor:
        """λ · Σ‖W‖², over every kernel: the penalty the loop adds to the loss by hand."""
        return l2 * tf.add_n([tf.reduce_sum(tf.square(kernel)) for kernel in kernels])

    def accuracy(labels: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(keras.metrics.sparse_categorical_accuracy(labels, probabilities))

    @tf.function
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            probabilities = model(x, training=True)
            data_loss = loss_fn(y, probabilities)
            reg_loss = penalty()
            loss = data_loss + reg_loss
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return data_loss, reg_loss, accuracy(y, probabilities)

    @tf.function
    def evaluate(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        probabilities = model(x, training=False)
        return loss_fn(y, probabilities), accuracy(y, probabilities)

    config = {
        "dataset": f"noisy blobs, {args.samples} samples",
        "task": "classification",
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "l2": args.l2,
        "dropout": args.dropout,
        "optimizer": {"name": "adam", "learning_rate": args.learning_rate},
        "seed": args.seed,
    }
    rng = np.random.default_rng(args.seed)
    with reglab.Run(args.name, config=config, model=model) as run:
        for epoch in range(args.epochs):
            started = time.perf_counter()
            order = rng.permutation(len(x_train))
            totals = np.zeros(3)
            for start in range(0, len(order), args.batch_size):
                batch = order[start : start + args.batch_size]
                figures = train_step(x_train[batch], y_train[batch])
                totals += len(batch) * np.array([float(value) for value in figures])
            data_loss, reg_loss, train_accuracy = totals / len(order)
            val_data_loss, val_accuracy = evaluate(x_val, y_val)
            run.log(
                epoch,
                data_loss=data_loss,  # loss = data_loss + reg_loss is filled in
                reg_loss=reg_loss,  # the epoch's mean penalty, as the loss averages it
                accuracy=train_accuracy,
                val_data_loss=val_data_loss,
                val_reg_loss=penalty(),  # at the epoch's final weights, as validation sees
                val_accuracy=val_accuracy,
                epoch_seconds=time.perf_counter() - started,
            )
            if run.stop_requested:  # cancelled from the dashboard
                break
        test_data_loss, test_accuracy = evaluate(x_test, y_test)
        run.log_test(
            {"data_loss": test_data_loss, "reg_loss": penalty(), "accuracy": test_accuracy}
        )
    print(f"trained {epoch + 1} epochs, run {run.run_id}")
    if run.error:
        print(f"not streamed: {run.error}")


if __name__ == "__main__":
    main()
