"""deploy/kubernetes/: valid for a fixed Kubernetes version (strict: no unknown field),
and shaped as the issue asks (API replicas, one GPU per worker pod, secrets from the
Secret); the migration step of the API pods runs as written on a fresh database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from kubernetes_validate import utils as kv

from app.migrate import alembic_config

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31.0"
SECRET_KEYS = {"REGLAB_DATABASE_URL", "REGLAB_TOKEN", "REGLAB_WORKER_TOKEN"}


def _resources() -> list[dict[str, Any]]:
    resources = []
    for path in sorted(FOLDER.glob("*.yaml")):
        resources.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return resources


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [r for r in _resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item for item in container.get("env", [])}


def _from_secret(container: dict[str, Any]) -> set[str]:
    """The variables that a container reads from the `reglab` Secret, under their key."""
    keys = set()
    for name, item in _env(container).items():
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == "reglab" and ref["key"] == name, item
            keys.add(name)
    return keys


@pytest.mark.parametrize("path", sorted(FOLDER.glob("*.yaml")), ids=lambda path: path.name)
def test_every_manifest_is_valid_and_strict(path: Path) -> None:
    for resource in kv.resources_from_file(str(path)):
        kv.validate(resource, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The check above can fail: a misspelt field is caught."""
    deployment = _one("Deployment", "reglab-api")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, KUBERNETES_VERSION, strict=True)


def test_one_namespace_and_no_plain_secret_elsewhere() -> None:
    resources = _resources()
    assert {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"} == {
        "reglab"
    }
    secrets = [r for r in resources if r["kind"] == "Secret"]
    assert [r["metadata"]["name"] for r in secrets] == ["reglab"]
    assert set(secrets[0]["stringData"]) == SECRET_KEYS
    assert all("CHANGE-ME" in value for value in secrets[0]["stringData"].values())
    assert "EXAMPLE VALUES" in (FOLDER / "secret.example.yaml").read_text()


def test_the_api_runs_replicas_behind_a_service_with_health_probes() -> None:
    api = _one("Deployment", "reglab-api")
    assert api["spec"]["replicas"] >= 2
    pod = api["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:2] == ["reglab", "serve"]
    assert _from_secret(container) == SECRET_KEYS
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/api/health"
    service = _one("Service", "reglab-api")
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == {
        k: v
        for k, v in api["spec"]["template"]["metadata"]["labels"].items()
        if k in service["spec"]["selector"]
    }
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8000 and port["targetPort"] == container["ports"][0]["name"]
    (migrate,) = pod["initContainers"]
    assert _from_secret(migrate) == {"REGLAB_DATABASE_URL"}


def test_workers_ask_for_one_gpu_each_and_reach_the_service_with_the_worker_token() -> None:
    worker = _one("Deployment", "reglab-worker")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["command"][:2] == ["reglab", "worker"]
    assert _from_secret(container) == {"REGLAB_WORKER_TOKEN"}  # never the database
    server_url = _env(container)["REGLAB_SERVER_URL"]["value"]
    service = _one("Service", "reglab-api")
    assert server_url == (
        f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:"
        f"{service['spec']['ports'][0]['port']}"
    )


@pytest.mark.postgres
def test_the_migration_step_migrates_a_fresh_database_once_with_pods_racing(
    postgres_db: str,
) -> None:
    """Two API pods starting together on an empty database run the init container's
    script at once: both succeed, and the database ends at the latest revision."""
    from alembic.script import ScriptDirectory

    with psycopg.connect(postgres_db, autocommit=True) as admin:  # make it empty again
        admin.execute("DROP SCHEMA public CASCADE")
        admin.execute("CREATE SCHEMA public")
    (migrate,) = _one("Deployment", "reglab-api")["spec"]["template"]["spec"]["initContainers"]
    env = {**os.environ, "REGLAB_DATABASE_URL": postgres_db}
    command = [sys.executable, *migrate["command"][1:]]
    assert migrate["command"][0] == "python"
    pods = [subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE) for _ in range(2)]
    results = [(pod.wait(120), pod.stderr.read().decode() if pod.stderr else "") for pod in pods]
    assert [code for code, _ in results] == [0, 0], results
    head = ScriptDirectory.from_config(alembic_config(postgres_db)).get_current_head()
    with psycopg.connect(postgres_db) as connection:
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone() or ()
    assert version == head
