"""docker-compose.yml's `postgres` profile, as the compose CLI normalizes it offline:
PostgreSQL, the API on it (which applies the Alembic migrations as it starts), and a
worker of that API with the worker token. Needs `docker compose` or Debian's
`docker-compose` (CI installs it); a missing CLI fails, it never skips."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]


def _compose_config(*args: str) -> dict[str, Any]:
    commands = [["docker", "compose"]] if shutil.which("docker") else []
    if shutil.which("docker-compose"):
        commands.append(["docker-compose"])
    for command in commands:
        result = subprocess.run(
            [*command, "-f", str(ROOT / "docker-compose.yml"), *args, "config"],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "REGLAB_WORKER_TOKEN": "w-token"},
        )
        if result.returncode == 0:
            return dict(yaml.safe_load(result.stdout))
    pytest.fail("no working compose CLI: apt-get install -y docker-compose")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return dict(_compose_config("--profile", "postgres")["services"])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else list(command)


def _depends_healthy(service: dict[str, Any], on: str) -> bool:
    depends = service.get("depends_on", {})
    return isinstance(depends, dict) and depends.get(on, {}).get("condition") == ("service_healthy")


def test_the_postgres_api_uses_the_profiles_database_and_migrates_it(
    services: dict[str, Any],
) -> None:
    api, database = services["api-postgres"], services["postgres"]
    assert "postgres" in api["profiles"] and "postgres" in database["profiles"]
    url = make_url(_environment(api)["REGLAB_DATABASE_URL"])
    db_env = _environment(database)
    assert url.get_backend_name() == "postgresql"
    assert (url.host, url.port or 5432) == ("postgres", 5432)
    assert (url.username, url.password, url.database) == (
        db_env["POSTGRES_USER"],
        db_env["POSTGRES_PASSWORD"],
        db_env["POSTGRES_DB"],
    )
    assert _command(api)[:2] == ["reglab", "serve"]  # migrations first, then the server
    assert _depends_healthy(api, "postgres")
    assert "pg_isready" in " ".join(database["healthcheck"]["test"])


def test_the_postgres_profile_has_a_worker_of_that_api_with_the_worker_token(
    services: dict[str, Any],
) -> None:
    worker = services["worker-postgres"]
    assert "postgres" in worker["profiles"]
    env = _environment(worker)
    assert env["REGLAB_SERVER_URL"] == "http://api-postgres:8000"
    assert env["REGLAB_WORKER_TOKEN"] == "w-token"  # from the environment / .env
    assert "REGLAB_DATABASE_URL" not in env  # workers never touch the database
    assert _command(worker)[:2] == ["reglab", "worker"]
    assert _depends_healthy(worker, "api-postgres")
    (port,) = services["api-postgres"]["ports"]
    target = port["target"] if isinstance(port, dict) else str(port).rsplit(":", 1)[1]
    assert int(target) == 8000
