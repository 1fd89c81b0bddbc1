"""reglab.Run against a real server (uvicorn in a thread, SQLite): a custom loop's epochs,
config, test metrics and final status; a failure with the exception's message; Ctrl-C
cancelled; a cancel from the dashboard seen as `stop_requested`; test metrics after the
block; and the loss arithmetic and test names it fills in. Subprocess runs (a GradientTape
script, a server restart): tests/e2e/test_run_script.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from reglab.run import Run, as_test_metrics, complete_losses
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]


def read(url: str, run_id: int | None) -> dict[str, Any]:
    assert run_id is not None
    return httpx.get(f"{url}/api/experiments/{run_id}").json()


def series(url: str, run_id: int | None) -> dict[str, list[float | None]]:
    return httpx.get(f"{url}/api/experiments/{run_id}/metrics").json()["series"]


def test_a_custom_loop_streams_its_epochs_config_and_test_metrics(live_server: str) -> None:
    config = {"l2": 1e-3, "dropout": 0.5, "epochs": 3, "batch_size": 16, "opt": {"lr": 0.01}}
    with Run("tape loop", config=config, url=live_server) as run:
        for epoch in range(3):
            run.log(epoch, loss=1.0 - 0.1 * epoch, reg_loss=0.1, val_loss=1.2, val_reg_loss=0.1)
        run.log(2, loss=0.8, reg_loss=0.05, val_loss=1.1, val_reg_loss=0.05)  # replaces epoch 2
        assert run.log_test({"loss": 1.3, "reg_loss": 0.05, "accuracy": 0.75}) == {
            "test_loss": 1.3,
            "test_reg_loss": 0.05,
            "test_data_loss": pytest.approx(1.25),
            "test_accuracy": 0.75,
        }
        assert not run.stop_requested
    assert run.error is None
    got = read(live_server, run.run_id)
    assert (got["status"], got["source"], got["epochs_done"]) == ("succeeded", "script", 3)
    script = got["script"]
    assert script["config"] == {
        "l2": 1e-3,
        "dropout": 0.5,
        "epochs": 3,
        "batch_size": 16,
        "opt.lr": 0.01,
    }
    assert got["regularization"] == "l2 0.001 · dropout 0.5"
    assert (script["epochs"], script["batch_size"], got["epochs_total"]) == (3, 16, 3)
    values = series(live_server, run.run_id)
    assert values["data_loss"] == pytest.approx([0.9, 0.8, 0.75])
    assert values["val_data_loss"] == pytest.approx([1.1, 1.1, 1.05])
    assert got["test_metrics"]["test_data_loss"] == pytest.approx(1.25)
    assert got["best_val_data_loss"] == pytest.approx(1.05)


def test_an_exception_fails_the_run_with_its_message(live_server: str) -> None:
    with pytest.raises(RuntimeError, match="diverged"), Run("failing", url=live_server) as run:
        run.log(0, loss=1.0)
        run.log(1, loss=2.0)
        raise RuntimeError("diverged at epoch 2")
    got = read(live_server, run.run_id)
    assert got["status"] == "failed"
    assert got["error"] == "RuntimeError: diverged at epoch 2"
    assert (got["error_epoch"], got["epochs_done"]) == (2, 2)


def test_ctrl_c_cancels_the_run(live_server: str) -> None:
    with pytest.raises(KeyboardInterrupt), Run("interrupted", url=live_server) as run:
        run.log(0, loss=1.0)
        raise KeyboardInterrupt
    assert read(live_server, run.run_id)["status"] == "cancelled"


def test_a_cancel_from_the_dashboard_is_seen_by_the_loop(live_server: str) -> None:
    run = Run("to cancel", url=live_server)
    run.HEARTBEAT_SECONDS = 0.2
    with run:
        run.log(0, loss=1.0)
        wait_for(lambda: run.run_id is not None, timeout=30)
        response = httpx.post(f"{live_server}/api/experiments/{run.run_id}/cancel")
        assert response.status_code == 200, response.text
        wait_for(lambda: run.stop_requested, timeout=30)
        run.log(1, loss=0.5)  # dropped: the run has ended
    got = read(live_server, run.run_id)
    assert got["status"] == "cancelled" and got["epochs_done"] == 1


def test_test_metrics_after_the_block_are_sent_at_once(live_server: str) -> None:
    with Run("evaluated later", url=live_server) as run:
        run.log(0, loss=1.0, data_loss=0.9)
    assert read(live_server, run.run_id)["test_metrics"] is None
    run.log_test({"test_loss": 0.7, "test_mae": 0.3})
    assert read(live_server, run.run_id)["test_metrics"] == {"test_loss": 0.7, "test_mae": 0.3}


def test_a_run_without_a_with_block_is_started_by_its_first_log(live_server: str) -> None:
    run = Run("no block", url=live_server)
    run.log(0, data_loss=0.5, reg_loss=0.25)
    assert run.finish() is True
    got = read(live_server, run.run_id)
    assert got["status"] == "succeeded"
    assert series(live_server, run.run_id)["loss"] == [0.75]


def test_bad_epochs_are_refused_before_anything_is_sent() -> None:
    run = Run("never started", url="http://127.0.0.1:9")
    for epoch in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="epoch"):
            run.log(epoch, loss=1.0)  # type: ignore[arg-type]
    assert run.sender is None and run.run_id is None


def test_the_loss_that_two_others_imply_is_filled_in() -> None:
    values = {"loss": 1.0, "reg_loss": 0.25, "val_data_loss": 2.0, "val_reg_loss": 0.5}
    complete_losses(values)
    assert values["data_loss"] == 0.75 and values["val_loss"] == 2.5
    alone = {"loss": 1.0, "val_loss": 2.0}
    complete_losses(alone)
    assert alone == {"loss": 1.0, "val_loss": 2.0}  # nothing to tell the penalty from
    given = {"loss": 1.0, "data_loss": 0.5, "reg_loss": 0.1}
    complete_losses(given)
    assert given == {"loss": 1.0, "data_loss": 0.5, "reg_loss": 0.1}  # never overwritten


def test_evaluate_names_become_test_metrics() -> None:
    values = as_test_metrics({"loss": 0.5, "accuracy": 0.9, "reg_loss": 0.1, "bad": "x"})
    assert values == {
        "test_loss": 0.5,
        "test_accuracy": 0.9,
        "test_reg_loss": 0.1,
        "test_data_loss": pytest.approx(0.4),
    }
    assert as_test_metrics({"test_loss": float("nan"), "mae": 2}) == {"test_mae": 2.0}


def test_importing_run_loads_no_framework_and_no_server_package() -> None:
    code = (
        "import sys; from reglab import ReglabClient, Run; "
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch', 'fastapi', "
        "'sqlmodel', 'sqlalchemy', 'pydantic', 'app') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_config_counts_out_of_the_servers_bounds_are_kept_out_of_the_facts(
    live_server: str,
) -> None:
    config = {"epochs": 0, "batch_size": True, "task": "ranking", "notes": "x" * 300}
    with Run("odd config", config=config, url=live_server) as run:
        run.log(0, loss=1.0)
    assert run.error is None
    got = read(live_server, run.run_id)
    assert got["status"] == "succeeded"
    assert (got["script"]["epochs"], got["script"]["batch_size"]) == (None, None)
    assert got["script"]["config"]["epochs"] == 0 and got["script"]["config"]["task"] == "ranking"
    assert len(got["script"]["config"]["notes"]) == 255
