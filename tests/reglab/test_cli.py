"""The `reglab` commands that query and label runs, against a live server: `ls` with a
filter and an order as a table, JSON or CSV (a bad filter's message printed plainly, exit
1), `tag` (tags, labels, notes, removal), and `sweep FILE --watch` following every run of
a sweep to its summary while this test plays the worker."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from reglab import cli, cli_common, cli_runs, sweep_view
from reglab.client import ReglabClient, WorkerClient
from tests.factories import make_spec
from tests.reglab.test_frames import Fed, feed

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich writes to whatever stdout CliRunner gives it, 200 columns wide (no wrapping)."""
    monkeypatch.setattr(cli_runs, "console", Console(width=200))
    monkeypatch.setattr(cli_common, "err", Console(width=200, stderr=True))


@pytest.fixture
def fed(live_server: str) -> Fed:
    return feed(live_server)


def reglab(url: str, *args: str) -> Any:
    return runner.invoke(cli.cli, [*args, "--server", url])


def test_ls_filters_and_orders_as_json(live_server: str, fed: Fed) -> None:
    found = reglab(
        live_server,
        "ls",
        "--filter",
        "source = 'queue' and status != 'queued'",
        "--order-by",
        "metrics.val_data_loss.best asc",
        "--json",
    )
    assert found.exit_code == 0, found.output
    runs = json.loads(found.stdout)
    assert [run["id"] for run in runs] == [fed.b, fed.a]
    assert runs[1]["tags"] == {"team": "vision", "baseline": None}
    limited = reglab(live_server, "ls", "--limit", "1", "--json")
    assert [run["id"] for run in json.loads(limited.stdout)] == [fed.script]
    every = reglab(live_server, "ls", "--limit", "0", "--order-by", "id", "--json")
    assert [run["id"] for run in json.loads(every.stdout)] == fed.all


def test_ls_csv_has_the_data_frame_s_columns(live_server: str, fed: Fed) -> None:
    found = reglab(live_server, "ls", "-f", "tags.team", "-o", "id asc", "--csv")
    assert found.exit_code == 0, found.output
    rows = list(csv.DictReader(io.StringIO(found.stdout)))
    assert [int(row["id"]) for row in rows] == [fed.a, fed.b]
    with ReglabClient(live_server) as client:
        frame = client.runs_frame("tags.team", "id asc")
    assert list(rows[0]) == list(frame.columns)
    assert rows[0]["params.model.layers.0.regularizer.l2"] == "0.01"
    assert rows[0]["metrics.val_data_loss.best"] == "0.6" and rows[1]["tags.team"] == "audio"
    assert rows[0]["tags.baseline"] == "" and rows[0]["verdict"] == frame["verdict"][0]
    read = pd.read_csv(io.StringIO(found.stdout))
    assert read["metrics.accuracy.last"].tolist() == [0.9, 0.7]


def test_ls_prints_a_table_with_tags(live_server: str, fed: Fed) -> None:
    found = reglab(live_server, "ls", "--filter", "name like 'frames _'", "--status", "succeeded")
    assert found.exit_code == 0, found.output
    assert "1 of 1 experiment(s)" in found.stdout
    line = next(line for line in found.stdout.splitlines() if "frames a" in line)
    assert "team=vision baseline" in line and "0.6000" in line and "succeeded" in line


@pytest.mark.parametrize(
    ("filter", "message"),
    [
        (
            "metrics.val_data_loss.best >",
            "filter: at 29: expected a value after '>', found the end",
        ),
        ("name = 'unclosed", "filter: at 8:"),
        ("colour = 'red'", "filter: at 1: unknown field 'colour'"),
    ],
)
def test_a_bad_filter_prints_the_server_s_message_and_exits_1(
    live_server: str, filter: str, message: str
) -> None:
    found = reglab(live_server, "ls", "--filter", filter)
    assert found.exit_code == 1
    assert found.stderr.startswith(message), found.stderr
    assert "Traceback" not in found.output and found.stdout == ""
    both = reglab(live_server, "ls", "--json", "--csv")
    assert both.exit_code == 1 and "choose one" in both.stderr


def test_tag_sets_labels_and_notes_and_removes(live_server: str, fed: Fed) -> None:
    tagged = reglab(live_server, "tag", str(fed.b), "team=nlp", "draft", "--notes", "retry it")
    assert tagged.exit_code == 0, tagged.output
    assert "team=nlp draft" in tagged.stdout and "notes: retry it" in tagged.stdout
    with ReglabClient(live_server) as client:
        run = client.get(fed.b)
        assert run["tags"] == {"team": "nlp", "draft": None} and run["notes"] == "retry it"
        found = reglab(live_server, "tag", str(fed.b), "-r", "draft", "--notes", "")
        assert found.exit_code == 0, found.output
        run = client.get(fed.b)
        assert run["tags"] == {"team": "nlp"} and run["notes"] is None
        assert [r["id"] for r in client.runs("tags.team = 'nlp'")] == [fed.b]
    bad = reglab(live_server, "tag", str(fed.b), "bad key=1")
    assert bad.exit_code == 1 and bad.stderr.startswith("tags.bad key"), bad.stderr
    assert "should match pattern" in bad.stderr
    missing = reglab(live_server, "tag", "999999", "x")
    assert missing.exit_code == 1 and "404" in missing.stderr
    nothing = reglab(live_server, "tag", str(fed.b))
    assert nothing.exit_code == 1 and "nothing to change" in nothing.stderr


def play_worker(url: str, runs: int, stop: threading.Event) -> None:
    """Train the sweep's runs the way a worker reports them: a point's best validation
    data loss is 0.5 (l2 0.001) or 0.9 (l2 0.1), plus 0.01 per seed."""
    worker = WorkerClient(url)
    done = 0
    while done < runs and not stop.is_set():
        claim = worker.claim(worker_id="w", host="h", devices=["CPU"], slot="CPU", wait=1)
        if claim is None:
            continue
        run_id, token = claim["experiment_id"], claim["lease_token"]
        l2 = claim["spec"]["model"]["layers"][0]["regularizer"]["l2"]
        best = (0.5 if l2 < 0.01 else 0.9) + 0.01 * claim["spec"]["training"]["seed"]
        worker.started(run_id, token, "CPU")
        curve = [best + 0.3, best, best + 0.05]
        points = [
            {"epoch": epoch, "values": {"data_loss": best - 0.1, "val_data_loss": value}}
            for epoch, value in enumerate(curve)
        ]
        worker.upload_metrics(run_id, token, points)
        worker.finish(run_id, token, status="succeeded", best_epoch=1)
        done += 1
    worker.close()


def test_sweep_watch_follows_every_run_to_the_summary(live_server: str, tmp_path: Path) -> None:
    base = make_spec(name="cli sweep", training={"epochs": 3, "seed": 0})
    request = {
        "name": "cli sweep",
        "base": base,
        "axes": [{"path": "model.layers[*].regularizer.l2", "values": [0.001, 0.1]}],
        "seeds": 2,
        "pack": False,
    }
    file = tmp_path / "sweep.json"
    file.write_text(json.dumps(request))
    stop = threading.Event()
    worker = threading.Thread(target=play_worker, args=(live_server, 4, stop), daemon=True)
    worker.start()
    try:
        watched = reglab(live_server, "sweep", str(file), "--watch")
    finally:
        stop.set()
        worker.join(30)
    assert watched.exit_code == 0, watched.output
    out = watched.stdout
    assert "runs (2 points x 2 seeds)" in out
    assert out.count("succeeded  best val_data_loss") >= 4  # every run's bar, at its end
    assert "Best mean: l2=0.001 0.505 ± 0.00707 over 2 seeds" in out
    assert "runner-up l2=0.1 0.905 ± 0.00707 over 2 seeds" in out
    assert "a real difference · l2=0.001 beats l2=0.1 by 0.4000 ± 0.0071 over 2 seeds" in out
    assert "vs the runner-up l2=0.1: difference 0.4, standard error 0.00707" in out
    assert "told apart from seed noise" in out
    assert "│ l2=0.1   │ 0.905 ± 0.00707 over 2 seeds │ underfitting │ #3, #4 │" in out
    sweep_id = out.split("queued sweep ")[1].split()[0]
    again = reglab(live_server, "sweep", sweep_id)
    assert again.exit_code == 0 and "Best mean: l2=0.001" in again.stdout
    assert "queued sweep" not in again.stdout


def test_sweep_refuses_a_bad_file_plainly(live_server: str, tmp_path: Path) -> None:
    file = tmp_path / "sweep.json"
    file.write_text("{not json")
    found = reglab(live_server, "sweep", str(file))
    assert found.exit_code == 1 and "is not valid JSON" in found.stderr
    file.write_text(json.dumps({"name": "x", "base": make_spec(), "seeds": 99}))
    refused = reglab(live_server, "sweep", str(file))
    assert refused.exit_code == 1 and refused.stderr.startswith("seeds:"), refused.stderr
    assert sweep_view.SWEEP_POLL_SECONDS <= 1.0  # a watched sweep answers within a second
