"""Sweep winners and verdicts through the API on SQLite and PostgreSQL: the summary of
GET /api/sweeps/{id}, seeds added to a sweep (packed like its own), the compare set's
summary, relative verdicts, and each run's own verdict stored when it ends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import col, select

from app.db import session_scope
from app.models import Experiment
from app.services import diagnostics
from tests.factories import make_spec

L2 = "model.layers[*].regularizer.l2"
WORKER = {"worker_id": "w", "host": "h", "devices": ["CPU"], "slot": "CPU", "wait": 0}
EPOCHS = 10


@pytest.fixture
def api(any_db: str) -> Iterator[TestClient]:
    from app.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def curves(val: float, train: float) -> list[dict[str, float]]:
    """Losses that fall to `val` and `train` by the last epoch and level off there (so the
    own verdict is healthy or under-fitting, not still improving)."""
    out = []
    for epoch in range(EPOCHS):
        fall = 1.5 * 0.3**epoch if epoch < EPOCHS - 3 else 0.0
        out.append({"data_loss": train + fall, "val_data_loss": val + fall, "loss": train + fall})
    return out


def train_all(api: TestClient, losses: dict[int, tuple[float, float]]) -> int:
    """Claim every queued job as a worker would (a pack's members at once), upload each
    run's curves ending at `losses[run id]` (val, train), and finish it; returns how many
    jobs (packs or single runs) it claimed."""
    jobs = 0
    while True:
        response = api.post("/api/worker/claim", json=WORKER)
        if response.status_code == 204:
            return jobs
        assert response.status_code == 200, response.text
        job = response.json()
        jobs += 1
        token = job["lease_token"]
        members = (
            [member["experiment_id"] for member in job["pack"]["members"]]
            if job["pack"]
            else [job["experiment_id"]]
        )
        points = [
            {"experiment_id": run_id, "epoch": epoch, "values": values}
            for run_id in members
            for epoch, values in enumerate(curves(*losses[run_id]))
        ]
        stored = api.post("/api/worker/metrics", json={"lease_token": token, "points": points})
        assert stored.status_code == 200, stored.text
        for run_id in members:
            done = api.post(
                f"/api/worker/experiments/{run_id}/finish",
                json={"lease_token": token, "status": "succeeded"},
            )
            assert done.status_code == 204, done.text


def new_sweep(api: TestClient, values: list[float], seeds: int, **changes: Any) -> dict[str, Any]:
    body = {
        "name": "l2 sweep",
        "base": make_spec(),
        "axes": [{"path": L2, "values": values}],
        "seeds": seeds,
        **changes,
    }
    response = api.post("/api/sweeps", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def by_point(sweep: dict[str, Any]) -> dict[tuple[float, int], int]:
    return {(run["point"][L2], run["seed"]): run["id"] for run in sweep["runs"]}


# (λ, seed) → (best validation data loss, final training data loss). λ = 1e-4's seed 1 is
# the luckiest single run; λ = 0 has the best mean; λ = 0.1 under-fits.
LOSSES = {
    (0.0, 0): (0.390, 0.20),
    (0.0, 1): (0.395, 0.21),
    (1e-4, 0): (0.430, 0.22),
    (1e-4, 1): (0.377, 0.19),
    (0.1, 0): (1.70, 1.69),
    (0.1, 1): (1.84, 1.80),
}


def test_the_summary_crowns_the_best_mean_and_judges_the_rest(api: TestClient) -> None:
    sweep = new_sweep(api, [0, 1e-4, 0.1], seeds=2)
    queued = sweep["summary"]
    assert queued["judgement"] == "too_early" and queued["best"] is None
    assert [point["n"] for point in queued["points"]] == [0, 0, 0]
    ids = by_point(sweep)
    assert queued["points"][0]["all_run_ids"] == [ids[(0.0, 0)], ids[(0.0, 1)]]
    assert queued["points"][0]["run_ids"] == [] and queued["points"][0]["mean"] is None
    assert train_all(api, {ids[key]: value for key, value in LOSSES.items()}) == 2  # a pack a seed

    body = api.get(f"/api/sweeps/{sweep['id']}").json()
    summary = body["summary"]
    assert summary["metric"] == "best_val_data_loss"
    assert [point["label"] for point in summary["points"]] == ["l2=0", "l2=0.0001", "l2=0.1"]
    best = summary["best"]
    assert best["label"] == "l2=0" and best["n"] == 2
    assert best["mean"] == pytest.approx(0.3925) and best["std"] == pytest.approx(0.0035355, 1e-4)
    assert best["run_ids"] == [ids[(0.0, 0)], ids[(0.0, 1)]] and best["side"] == "best"
    assert best["point"] == {L2: 0.0}
    assert summary["runner_up"]["label"] == "l2=0.0001"
    assert [point["side"] for point in summary["points"]] == ["best", None, "underfitting"]
    # The best point is the unregularized one: compared with the runner-up only.
    (comparison,) = summary["comparisons"]
    assert comparison["against"] == "runner_up" and comparison["n"] == [2, 2]
    assert comparison["difference"] == pytest.approx(0.0110)
    assert comparison["distinguishable"] is False and 0.05 < comparison["p_value"] <= 1
    assert summary["judgement"] == "within_noise"
    assert summary["text"] == comparison["text"]
    assert comparison["text"].startswith("l2=0 beats l2=0.0001 by 0.011 ± 0.027 over 2 seeds")
    assert body["best_val_data_loss"] == pytest.approx(0.377)  # still the lowest single run
    assert body["counts"] == {"succeeded": 6}

    # Each run's own verdict is stored; λ = 0.1 under-fits relative to the best point.
    assert {run["verdict"] for run in body["runs"]} <= {"healthy", "underfitting"}
    top = [ids[(0.1, 0)], ids[(0.1, 1)]]
    verdicts = api.get("/api/verdicts", params={"ids": ",".join(map(str, ids.values()))}).json()
    for run_id in top:
        relative = verdicts["verdicts"][str(run_id)]["relative"]
        assert relative["verdict"] == "underfitting"
        assert relative["against"] == {"label": "l2=0", "run_ids": best["run_ids"]}
        assert f"l2=0 (runs {best['run_ids'][0]}, {best['run_ids'][1]})" in relative["reason"]
        assert relative["hint"].startswith("lower λ / less dropout")
        assert verdicts["verdicts"][str(run_id)]["overall"]["verdict"] == "underfitting"
    assert verdicts["verdicts"][str(ids[(0.0, 1)])]["relative"]["verdict"] == "best"
    assert verdicts["verdicts"][str(ids[(1e-4, 1)])]["relative"]["verdict"] == "comparable"
    one = api.get(f"/api/experiments/{top[0]}/verdict").json()
    assert one["relative"] == verdicts["verdicts"][str(top[0])]["relative"]


def test_one_seed_then_seeds_added_that_pack(api: TestClient) -> None:
    sweep = new_sweep(api, [0, 1e-3, 1e-2], seeds=1)
    assert sweep["runs"][0]["name"] == "l2 sweep · l2=0"
    first = by_point(sweep)
    train_all(
        api,
        {first[(0.0, 0)]: (0.5, 0.1), first[(1e-3, 0)]: (0.4, 0.2), first[(1e-2, 0)]: (0.45, 0.3)},
    )
    one_seed = api.get(f"/api/sweeps/{sweep['id']}").json()["summary"]
    assert one_seed["judgement"] == "one_seed"
    assert "no judgement is possible" in one_seed["text"] and "add seeds" in one_seed["text"]
    assert one_seed["best"]["label"] == "l2=0.001" and one_seed["best"]["std"] is None

    response = api.post(f"/api/sweeps/{sweep['id']}/seeds", json={"count": 2})
    assert response.status_code == 200, response.text
    grown = response.json()
    assert grown["seeds"] == 3 and len(grown["runs"]) == 9
    new = [run for run in grown["runs"] if run["seed"] > 0]
    assert sorted({run["seed"] for run in new}) == [1, 2]
    assert all(run["status"] == "queued" for run in new)
    assert "l2 sweep · l2=0.001 · seed 2" in [run["name"] for run in new]
    # Each new seed packs its three points, like the sweep's own.
    packs = {(run["seed"], run["pack_id"]) for run in new}
    assert len(packs) == 2 and all(pack is not None for _, pack in packs)
    # Seed repeats share their point's group.
    keys = {run["point"][L2]: run["group_key"] for run in sweep["runs"]}
    assert all(run["group_key"] == keys[run["point"][L2]] for run in new)
    assert api.get(f"/api/sweeps/{sweep['id']}").json()["seeds"] == 3

    ids = by_point(grown)
    losses = {ids[(0.0, s)]: (0.5 + 0.01 * s, 0.1) for s in (1, 2)}
    losses |= {ids[(1e-3, s)]: (0.4 + 0.01 * s, 0.2) for s in (1, 2)}
    losses |= {ids[(1e-2, s)]: (0.45 + 0.01 * s, 0.3) for s in (1, 2)}
    assert train_all(api, losses) == 2
    summary = api.get(f"/api/sweeps/{sweep['id']}").json()["summary"]
    assert summary["best"]["n"] == 3 and summary["best"]["label"] == "l2=0.001"
    assert summary["judgement"] == "real_difference"
    assert [c["against"] for c in summary["comparisons"]] == ["runner_up", "unregularized"]
    assert summary["text"].endswith("over 3 seeds: a real difference")


def test_adding_seeds_is_bounded_and_checked(api: TestClient) -> None:
    sweep = new_sweep(api, [i / 100 for i in range(60)], seeds=2)  # 120 runs
    too_many = api.post(f"/api/sweeps/{sweep['id']}/seeds", json={"count": 2})
    assert too_many.status_code == 422
    assert [error["field"] for error in too_many.json()["detail"]] == ["count"]
    assert "200" in too_many.json()["detail"][0]["msg"]
    assert api.get(f"/api/sweeps/{sweep['id']}").json()["seeds"] == 2
    for count in (0, 11, "2", None):
        bad = api.post(f"/api/sweeps/{sweep['id']}/seeds", json={"count": count})
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "count"
    assert api.post("/api/sweeps/9999/seeds", json={"count": 1}).status_code == 404
    fits = api.post(f"/api/sweeps/{sweep['id']}/seeds", json={"count": 1})
    assert fits.status_code == 200 and len(fits.json()["runs"]) == 180

    emptied = new_sweep(api, [0, 1e-3], seeds=1)
    for run in emptied["runs"]:
        assert api.delete(f"/api/experiments/{run['id']}").status_code == 204
    gone = api.post(f"/api/sweeps/{emptied['id']}/seeds", json={"count": 1})
    assert gone.status_code == 409 and "no runs left" in gone.json()["detail"]


def test_the_compare_summary_groups_seed_repeats(api: TestClient) -> None:
    plain = {"type": "dense", "units": 8}
    specs = [
        make_spec(name=f"l2 · seed {seed}", training={"epochs": 3, "seed": seed}) for seed in (0, 1)
    ] + [
        make_spec(
            name=f"plain · seed {seed}",
            model={"layers": [plain]},
            training={"epochs": 3, "seed": seed},
        )
        for seed in (0, 1)
    ]
    ids = [api.post("/api/experiments", json=spec).json()["id"] for spec in specs]
    train_all(
        api, dict(zip(ids, [(0.30, 0.2), (0.31, 0.2), (0.50, 0.05), (0.52, 0.04)], strict=True))
    )
    response = api.get("/api/compare/summary", params={"ids": f"{','.join(map(str, ids))},999"})
    assert response.status_code == 200, response.text
    summary = response.json()
    assert summary["missing"] == [999] and summary["same_data"] is True
    assert [point["label"] for point in summary["points"]] == ["l2", "plain"]
    assert summary["best"]["run_ids"] == ids[:2] and summary["best"]["n"] == 2
    assert [c["against"] for c in summary["comparisons"]] == ["runner_up", "unregularized"]
    assert summary["judgement"] == "real_difference"
    assert summary["points"][1]["side"] == "overfitting"
    bad = api.get("/api/compare/summary", params={"ids": "1,,2"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "ids"


def stored_verdicts(ids: list[int]) -> dict[int, str | None]:
    with session_scope(read_only=True) as session:
        rows = session.exec(
            select(Experiment.id, Experiment.verdict).where(col(Experiment.id).in_(ids))
        ).all()
    return {int(run_id): verdict for run_id, verdict in rows if run_id is not None}


def test_a_run_stores_its_verdict_when_it_ends_and_a_stale_one_is_rewritten(
    api: TestClient,
) -> None:
    ids = [api.post("/api/experiments", json=make_spec()).json()["id"] for _ in range(3)]
    assert stored_verdicts(ids) == dict.fromkeys(ids)
    job = api.post("/api/worker/claim", json=WORKER).json()
    overfit = (
        [1.0 - 0.04 * e for e in range(20)],
        [1.0 - 0.08 * e if e <= 6 else 0.52 + 0.05 * (e - 6) for e in range(20)],
    )
    points = [
        {"epoch": epoch, "values": {"data_loss": train, "val_data_loss": val}}
        for epoch, (train, val) in enumerate(zip(*overfit, strict=True))
    ]
    run_path = f"/api/worker/experiments/{job['experiment_id']}"
    api.post(f"{run_path}/metrics", json={"lease_token": job["lease_token"], "points": points})
    assert stored_verdicts([ids[0]]) == {ids[0]: None}  # running: not stored yet
    api.post(f"{run_path}/finish", json={"lease_token": job["lease_token"], "status": "succeeded"})
    assert stored_verdicts([ids[0]]) == {ids[0]: "overfitting"}
    # The run and the runs list show the stored verdict (null while queued or running).
    assert api.get(f"/api/experiments/{ids[0]}").json()["verdict"] == "overfitting"
    listed = api.get("/api/experiments", params={"filter": f"id in ({ids[0]}, {ids[2]})"})
    assert {run["id"]: run["verdict"] for run in listed.json()["items"]} == {
        ids[0]: "overfitting",
        ids[2]: None,
    }

    # A run cancelled before it trained is too early to judge; a read finds it unstored.
    assert api.post(f"/api/experiments/{ids[1]}/cancel").status_code == 200
    assert api.get(f"/api/experiments/{ids[1]}/verdict").json()["verdict"] == "too_early"
    assert stored_verdicts([ids[1]]) == {ids[1]: "too_early"}
    # A stored verdict that the rules no longer give is rewritten on read; a queued run
    # stores none.
    with session_scope() as session:
        session.exec(
            update(Experiment).where(col(Experiment.id) == ids[0]).values(verdict="healthy")
        )
        session.commit()
    body = api.get("/api/verdicts", params={"ids": ",".join(map(str, ids))}).json()
    assert body["verdicts"][str(ids[0])]["verdict"] == "overfitting"
    assert body["verdicts"][str(ids[0])]["relative"] is None  # not in a sweep
    assert body["verdicts"][str(ids[0])]["overall"]["verdict"] == "overfitting"
    assert stored_verdicts(ids) == {ids[0]: "overfitting", ids[1]: "too_early", ids[2]: None}

    # Runs that ended before verdicts were stored are filled in by the backfill, a batch
    # at a time; a run still queued stays without one.
    with session_scope() as session:
        session.exec(update(Experiment).where(col(Experiment.id).in_(ids)).values(verdict=None))
        session.commit()
        assert diagnostics.backfill_verdicts(session=session, limit=1) == 1
        assert diagnostics.backfill_verdicts(session=session, limit=5) == 1
        assert diagnostics.backfill_verdicts(session=session) == 0
    assert stored_verdicts(ids) == {ids[0]: "overfitting", ids[1]: "too_early", ids[2]: None}


def test_script_runs_cancelled_sweeps_and_failed_runs_store_verdicts(api: TestClient) -> None:
    script = api.post("/api/runs", json={"name": "mine", "script": {"epochs": 8}}).json()
    falling = {
        "points": [
            {"epoch": e, "values": {"data_loss": 2.0 - 0.2 * e, "val_data_loss": 2.1 - 0.2 * e}}
            for e in range(8)
        ]
    }
    assert api.post(f"/api/runs/{script['id']}/metrics", json=falling).status_code == 200
    api.post(f"/api/runs/{script['id']}/finish", json={"status": "succeeded"})
    assert stored_verdicts([script["id"]]) == {script["id"]: "still_improving"}

    sweep = new_sweep(api, [0, 1e-3], seeds=1, pack=False)
    api.post("/api/worker/claim", json=WORKER)  # one run running, one queued
    assert api.post(f"/api/sweeps/{sweep['id']}/cancel").status_code == 200
    ids = [run["id"] for run in sweep["runs"]]
    assert stored_verdicts(ids) == dict.fromkeys(ids, "too_early")

    failing = api.post("/api/experiments", json=make_spec()).json()["id"]
    job = api.post("/api/worker/claim", json=WORKER).json()
    assert job["experiment_id"] == failing
    api.post(
        f"/api/worker/experiments/{failing}/finish",
        json={"lease_token": job["lease_token"], "status": "failed", "error": "boom"},
    )
    assert stored_verdicts([failing]) == {failing: "too_early"}
