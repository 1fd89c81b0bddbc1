"""The container files: docker-compose.yml validates (with the compose CLI, which needs
no Docker engine for `config`) and the Dockerfile says what the deployment relies on.

No Docker engine runs in CI, so the image itself is not built here: the Dockerfile's
instructions are parsed instead. A missing compose CLI fails these tests (CI installs
Debian's `docker-compose` package); it never skips them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


# --- docker-compose.yml -------------------------------------------------------------


def _works(command: list[str]) -> bool:
    if shutil.which(command[0]) is None:
        return False
    try:
        result = subprocess.run(command, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@cache
def _compose_command() -> tuple[str, ...] | None:
    """`docker compose` (v2 plugin) where it works, else the standalone `docker-compose`."""
    for command in (("docker", "compose"), ("docker-compose",)):
        if _works([*command, "version"]):
            return command
    return None


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = _compose_command()
    if command is None:
        pytest.fail(
            "neither `docker compose` nor `docker-compose` works on this machine: "
            "install one (Debian/Ubuntu: `apt-get install -y docker-compose`) to "
            "validate docker-compose.yml"
        )
    # A clean environment: no COMPOSE_PROFILES or REGLAB_TF_VARIANT from the caller.
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COMPOSE_", "REGLAB_", "DOCKER_"))
    }
    return subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"`{shlex.join(result.args)}` failed ({result.returncode}):\n{result.stderr}"
    )
    return result.stdout


def _config(*profile_args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose-normalized configuration: JSON from compose v2, YAML from v1."""
    # v1 ignores `--format` (it prints its usage and exits 0), so look at what came back.
    as_json = _compose(*profile_args, "config", "--format", "json", env=env)
    if as_json.returncode == 0 and as_json.stdout.lstrip().startswith("{"):
        return json.loads(as_json.stdout)
    text = _ok(_compose(*profile_args, "config", env=env))
    try:
        import yaml
    except ImportError:  # PyYAML comes with the dev extras (schemathesis); be safe anyway
        return _parse_yaml_minimally(text)
    return yaml.safe_load(text)


def _parse_yaml_minimally(text: str) -> dict[str, Any]:
    """Just enough of the normalized YAML for the checks below: each service's text."""
    services: dict[str, Any] = {}
    block = re.search(r"^services:\n((?:(?: {2}.*)?\n)*)", text, re.MULTILINE)
    assert block, text
    for match in re.finditer(r"^ {2}(\S+):\n((?: {4}.*\n)*)", block.group(1), re.MULTILINE):
        services[match.group(1)] = {"_text": match.group(2)}
    return {"services": services}


def _published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host, container) pairs, from the short string or the long mapping form."""
    pairs = set()
    if "_text" in service:
        for published, target in re.findall(
            r"published: ['\"]?(\d+)['\"]?\s+target: (\d+)", service["_text"]
        ):
            pairs.add((int(published), int(target)))
        return pairs
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
        else:
            host, _, container = str(port).rpartition(":")
            pairs.add((int(host.rpartition(":")[2]), int(container.split("/")[0])))
    return pairs


def _gpu_reservations(service: dict[str, Any]) -> list[dict[str, Any]]:
    if "_text" in service:
        text = service["_text"]
        if "driver: nvidia" in text and "count: all" in text and "- gpu" in text:
            return [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
        return []
    reservations = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return reservations.get("devices", [])


def test_compose_file_validates() -> None:
    _ok(_compose("config", "-q"))


def test_compose_postgres_profile_validates() -> None:
    _ok(_compose("--profile", "postgres", "config", "-q"))


def test_compose_has_no_obsolete_version_key() -> None:
    assert not re.search(r"^version\s*:", COMPOSE_FILE.read_text(), re.MULTILINE)


def test_compose_api_and_gpu_worker() -> None:
    services = _config()["services"]
    assert {"api", "worker"} <= services.keys()
    assert (8000, 8000) in _published_ports(services["api"])

    devices = _gpu_reservations(services["worker"])
    assert any(
        device.get("driver") == "nvidia"
        and str(device.get("count")) in ("all", "-1")  # v2 may write `all` as -1
        and "gpu" in device.get("capabilities", [])
        for device in devices
    ), devices

    worker = services["worker"]
    if "_text" not in worker:
        command = worker["command"]
        command = command if isinstance(command, list) else shlex.split(command)
        assert command[:2] == ["reglab", "worker"]
        assert "http://api:8000" in command
        assert worker["environment"]["REGLAB_SERVER_URL"] == "http://api:8000"
        assert worker["depends_on"]["api"]["condition"] == "service_healthy"
        assert worker["build"]["args"]["TF_VARIANT"] == "cpu"
        assert any("/app/data" in str(volume) for volume in services["api"]["volumes"])


def test_compose_worker_tf_variant_follows_the_environment() -> None:
    services = _config(env={"REGLAB_TF_VARIANT": "gpu"})["services"]
    worker = services["worker"]
    if "_text" in worker:
        assert "TF_VARIANT: gpu" in worker["_text"]
    else:
        assert worker["build"]["args"]["TF_VARIANT"] == "gpu"


def test_compose_postgres_profile_services() -> None:
    services = _config("--profile", "postgres")["services"]
    assert {"postgres", "api-postgres"} <= services.keys()
    if "_text" in services["api-postgres"]:
        assert "postgres:5432/reglab" in services["api-postgres"]["_text"]
        return
    api = services["api-postgres"]
    assert api["environment"]["REGLAB_DATABASE_URL"] == (
        "postgresql://reglab:reglab@postgres:5432/reglab"
    )
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "postgres" in services["postgres"]["profiles"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


# --- Dockerfile ---------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def _all(keyword: str) -> list[str]:
    return [arguments for name, arguments in _instructions() if name == keyword]


def test_dockerfile_base_image() -> None:
    assert _all("FROM") == ["python:3.11-slim"]


def test_dockerfile_runs_as_non_root_user() -> None:
    users = _all("USER")
    assert users, "the Dockerfile never sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert any("useradd" in run and user in run for run in _all("RUN"))
    assert any("chown" in run and "/app/data" in run for run in _all("RUN"))


def test_dockerfile_tf_variant_build_arg() -> None:
    assert "TF_VARIANT=cpu" in _all("ARG")
    runs = " ".join(_all("RUN"))
    assert "TF_VARIANT" in runs
    assert "tensorflow[and-cuda]" in runs
    # TensorFlow is installed before the project.
    tensorflow = next(i for i, run in enumerate(_all("RUN")) if "tensorflow[and-cuda]" in run)
    project = next(i for i, run in enumerate(_all("RUN")) if re.search(r"-e \.(\s|$)", run))
    assert tensorflow < project


def test_dockerfile_installs_the_project_editable_from_app() -> None:
    assert _all("WORKDIR")[-1] == "/app"
    assert any(re.search(r"pip install .*-e \.(\s|$)", run) for run in _all("RUN"))
    # Migrations are found next to the app package, so the whole tree is copied.
    assert any(copy.split()[0] == "." for copy in _all("COPY"))


def test_dockerfile_environment_port_health_and_command() -> None:
    env = " ".join(_all("ENV"))
    for setting in (
        "REGLAB_DATA_DIR=/app/data",
        "REGLAB_DATABASE_URL=sqlite:////app/data/reglab.db",
        "PYTHONUNBUFFERED=1",
        "TF_CPP_MIN_LOG_LEVEL=2",
    ):
        assert setting in env
    assert "8000" in " ".join(_all("EXPOSE")).split()
    (healthcheck,) = _all("HEALTHCHECK")
    assert "http://127.0.0.1:8000/api/health" in healthcheck and "urllib" in healthcheck
    assert json.loads(_all("CMD")[-1]) == [
        "reglab", "serve", "--host", "0.0.0.0", "--port", "8000"
    ]  # fmt: skip


def test_dockerignore_keeps_local_state_out() -> None:
    entries = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".venv", "data", ".git", "tests/artifacts", "bench/out", "*.db"):
        assert entry in entries


# --- pyproject.toml: what each side installs -----------------------------------------

PYPROJECT = ROOT / "pyproject.toml"
CLIENT_NEEDS = {"httpx", "numpy", "keras", "pydantic", "typer", "rich"}


def _names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower() for requirement in requirements
    }


def _pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads(PYPROJECT.read_text())


def test_a_machine_that_only_trains_installs_the_client_only() -> None:
    project = _pyproject()["project"]
    assert _names(project["dependencies"]) == CLIENT_NEEDS
    extras = project["optional-dependencies"]
    assert {
        "fastapi",
        "uvicorn",
        "sqlmodel",
        "alembic",
        "plotly",
        "sse-starlette",
        "pydantic-settings",
        "psycopg",
        "python-multipart",
    } <= _names(extras["server"])
    assert _names(extras["worker"]) == {"tensorflow", "scikit-learn"}
    assert extras["all"] == ["reglab[server,worker]"]
    assert _names(extras["pandas"]) == {"pandas"}
    assert project["scripts"]["reglab"] == "reglab.cli:main"
    assert "reglab*" in _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]


def _third_party_imports(folder: Path) -> set[str]:
    """Top-level packages the modules of `folder` import at module level (not inside a
    function: those load only when used), less the standard library and this project."""
    import ast
    import sys

    found: set[str] = set()
    for path in folder.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "app", "reglab", "worker"}


def test_the_client_package_imports_only_what_it_installs() -> None:
    imported = _third_party_imports(ROOT / "reglab")
    assert {"httpx", "keras", "numpy", "typer", "rich"} <= imported
    assert imported <= CLIENT_NEEDS


def test_make_and_the_image_install_both_sides() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet -e '.[all,dev]'" in makefile
    runs = " ".join(_all("RUN"))
    assert "['optional-dependencies']['server']" in runs
    assert "['optional-dependencies']['worker']" in runs
