"""Your own Keras training script, streamed into reglab's dashboard by one callback.

Nothing here uses reglab but `ReglabCallback`: the run appears on the dashboard with a
summary of the model (layers, L2 penalties, dropout) and the device it trains on, its
curves drawn live (the data loss apart from the penalty, which Keras folds into `loss`),
its verdict, and marked succeeded (or failed, with the error) when the script ends;
`log_test` adds the test metrics of `model.evaluate`.

    REGLAB_SERVER_URL=http://127.0.0.1:8000 REGLAB_TOKEN=... \\
        python examples/own_script.py --epochs 20 --log-every batch
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

from reglab import ReglabCallback


def noisy_blobs(samples: int, features: int = 20, classes: int = 3, seed: int = 0) -> tuple:
    """Few samples in many dimensions with noisy labels: easy to over-fit on purpose."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.5, (classes, features))
    labels = rng.integers(0, classes, samples)
    x = centers[labels] + rng.normal(0, 2.0, (samples, features))
    flip = rng.random(samples) < 0.1
    labels[flip] = rng.integers(0, classes, int(flip.sum()))
    return x.astype("float32"), labels.astype("int32")


def log_every(text: str) -> str | int:
    return text if text in ("epoch", "batch") else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="own script: MLP, L2 0.01 + dropout 0.5")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--log-every", type=log_every, default="epoch", help="epoch, batch or N")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    x, y = noisy_blobs(args.samples)
    n_test = len(x) // 5
    (x_test, y_test), (x, y) = (x[:n_test], y[:n_test]), (x[n_test:], y[n_test:])
    l2 = keras.regularizers.L2(0.01)
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(64, activation="relu", kernel_regularizer=l2),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(32, activation="relu", kernel_regularizer=l2),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    reglab = ReglabCallback(
        args.name,
        log_every=args.log_every,
        dataset=f"noisy blobs, {args.samples} samples",
        batch_size=args.batch_size,
    )
    history = model.fit(
        x,
        y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=0.25,
        verbose=0,
        callbacks=[reglab],
    )
    test = reglab.log_test(model.evaluate(x_test, y_test, verbose=0, return_dict=True))
    print(f"trained {len(history.history['loss'])} epochs, run {reglab.run_id}")
    print(f"test accuracy {test['test_accuracy']:.3f}, test data loss {test['test_data_loss']:.4f}")
    if reglab.error:
        print(f"not streamed: {reglab.error}")


if __name__ == "__main__":
    main()
