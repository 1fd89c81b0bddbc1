"""The import graph holds: the server loads no Keras, worker or client; the client and
its command load no server and no Keras; the worker reads the contract and the client
only, never the server's services, database or settings. Each check imports in a fresh
interpreter and reads `sys.modules` afterwards."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest


def loaded_after(*modules: str) -> set[str]:
    """Every module name loaded by importing `modules` in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return set(json.loads(result.stdout.splitlines()[-1]))


def offending(loaded: set[str], *packages: str) -> list[str]:
    """The loaded modules that are one of `packages` or inside one."""
    return sorted(
        name
        for name in loaded
        if any(name == package or name.startswith(package + ".") for package in packages)
    )


def test_the_server_loads_no_keras_worker_or_client() -> None:
    loaded = loaded_after("app.main")
    assert "app.main" in loaded and "fastapi" in loaded  # it did import the server
    assert offending(loaded, "keras", "tensorflow", "worker", "reglab") == []


@pytest.mark.parametrize("module", ["reglab", "reglab.client", "reglab.cli"])
def test_the_client_loads_no_server_and_no_keras(module: str) -> None:
    loaded = loaded_after(module)
    assert module in loaded
    bad = offending(loaded, "fastapi", "sqlmodel", "sqlalchemy", "psycopg", "keras", "tensorflow")
    assert bad == []
    assert offending(loaded, "app") == []  # not even the contract, until a stream is followed


# Every module of the worker package, those added later included.
WORKER_MODULES = sorted(
    f"worker.{module.name}"
    for module in pkgutil.iter_modules([str(Path(__file__).resolve().parents[1] / "worker")])
)


def test_the_worker_reads_the_contract_and_the_client_only() -> None:
    loaded = loaded_after(*WORKER_MODULES)
    assert {"worker.supervisor", "worker.child", "worker.training"} <= set(WORKER_MODULES)
    assert set(WORKER_MODULES) <= loaded and "app.spec" in loaded
    server = offending(
        loaded, "app.services", "app.db", "app.models", "app.settings", "app.client", "fastapi"
    )
    assert server == []
    app_modules = {name for name in loaded if name.split(".")[0] == "app"}
    assert all(name in ("app", "app.spec") or name.startswith("app.spec.") for name in app_modules)


def test_the_supervisor_loads_no_framework() -> None:
    loaded = loaded_after("worker.supervisor")
    assert offending(loaded, "keras", "tensorflow", "jax", "torch") == []


def test_the_old_client_module_warns_and_still_answers() -> None:
    sys.modules.pop("app.client", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import app.client as old

    assert any(issubclass(item.category, DeprecationWarning) for item in caught)
    import reglab
    import reglab.client

    assert old.ReglabClient is reglab.ReglabClient and old.parse_sse is reglab.client.parse_sse
    assert old.ReglabCallback is reglab.ReglabCallback
