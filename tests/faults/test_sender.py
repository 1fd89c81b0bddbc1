"""The metric sender survives an epoch whose layer statistics cannot be computed."""

from __future__ import annotations

from typing import Any

import numpy as np

from worker.streaming import EpochSnapshot, MetricSender


class KernelTooLargeToCopy:
    """A kernel whose copy to the host runs out of memory."""

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise MemoryError("no memory to copy a 4096x4096 kernel")


def test_an_epoch_without_statistics_still_goes_out_and_the_sender_lives_on() -> None:
    uploaded: list[dict[str, Any]] = []
    sender = MetricSender(upload=uploaded.extend).start()
    sender.put(EpochSnapshot(0, {"loss": 1.0}, [("dense_0", KernelTooLargeToCopy())], 0.0))
    sender.put(EpochSnapshot(1, {"loss": 0.5}, [("dense_0", np.ones((2, 2)))], 0.0))
    # Before, the sender thread died of the MemoryError and `close` waited out its timeout.
    assert sender.close(timeout=5)
    assert [point["epoch"] for point in uploaded] == [0, 1]
    assert uploaded[0]["values"] == {"loss": 1.0}
    assert uploaded[1]["values"]["kernel_norm/dense_0"] == 2.0
