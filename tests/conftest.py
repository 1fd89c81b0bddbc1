"""Shared fixtures: a migrated database (SQLite file or a fresh PostgreSQL database),
the app on it, and a real uvicorn server in a thread."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
import uvicorn

from app.db import reset_engines
from app.migrate import upgrade
from app.settings import get_settings
from tests.scheduling import UnitScheduling, rank, unit_of

PG_ADMIN_URL = os.environ.get("REGLAB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TESTS = Path(__file__).resolve().parent
# The folders of system tests: they start servers, workers or a browser. `make test-fast`
# leaves them out (`-m "not system"`); the folder is the one place that says so.
SYSTEM_FOLDERS = {"e2e", "browser", "faults", "load", "scaleout"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = item.path.relative_to(TESTS).parts[0]
        if folder in SYSTEM_FOLDERS:
            item.add_marker(pytest.mark.system)
        if folder in ("e2e", "browser"):
            item.add_marker(pytest.mark.e2e)
        if folder == "browser":
            item.add_marker(pytest.mark.browser)
    # The slow tests first, each unit of tests/scheduling.py in one piece: the test
    # processes of `make test` end together instead of one finishing a long test alone.
    first: dict[object, int] = {}
    keys: dict[int, tuple[int, int]] = {}
    for index, item in enumerate(items):
        unit = unit_of(item.nodeid, index)
        keys[id(item)] = (rank(item.nodeid, unit), first.setdefault(unit, index))
    items.sort(key=lambda item: keys[id(item)])


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Units handed out one at a time (tests/scheduling.py), unless `--dist` says else."""
    if config.getoption("dist") != "load":
        return None
    return UnitScheduling(config, log)


def _use_database(url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the app's settings at `url`, a database migrated to the head already."""
    monkeypatch.setenv("REGLAB_DATABASE_URL", url)
    monkeypatch.setenv("REGLAB_DATA_DIR", str(data_dir))
    monkeypatch.setenv("REGLAB_SWEEP_SECONDS", "0.5")
    monkeypatch.setenv("REGLAB_ALLOWED_HOSTS", "testserver")  # TestClient's Host
    get_settings.cache_clear()
    reset_engines()


# Migrating a new database costs a second or more (on PostgreSQL, three): each session
# migrates one template of each kind once, and every test gets a fresh copy of it.


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the head, closed (its write-ahead log folded in)."""
    path = tmp_path_factory.mktemp("template") / "reglab.db"
    upgrade(f"sqlite:///{path}")
    reset_engines()
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A PostgreSQL database migrated to the head, for `CREATE DATABASE ... TEMPLATE`."""
    name = f"reglab_template_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
    except psycopg.OperationalError as error:  # CI must not skip: fail loudly
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {error}")
    admin.execute(f'CREATE DATABASE "{name}"')
    upgrade(f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
    reset_engines()  # a template must have no connections
    yield name
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def sqlite_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path
) -> Iterator[str]:
    """A fresh SQLite file at the head (a copy of the migrated template)."""
    path = tmp_path / "reglab.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    _use_database(url, tmp_path / "data", monkeypatch)
    yield url
    reset_engines()
    get_settings.cache_clear()


@pytest.fixture
def postgres_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_template: str
) -> Iterator[str]:
    """A fresh database on this machine's PostgreSQL at the head (a copy of the migrated
    template), dropped afterwards."""
    name = f"reglab_test_{secrets.token_hex(4)}"
    admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    _use_database(url, tmp_path / "data", monkeypatch)
    yield url
    reset_engines()
    get_settings.cache_clear()
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite and on PostgreSQL."""
    fixture = "sqlite_db" if request.param == "sqlite" else "postgres_db"
    return request.getfixturevalue(fixture)


@pytest.fixture
def client(sqlite_db: str) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # not the main thread
        pass


def run_in_thread(port: int) -> Iterator[str]:
    from app.main import create_app

    config = uvicorn.Config(
        create_app(), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = ThreadServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def live_server(sqlite_db: str) -> Iterator[str]:
    """A real uvicorn server on the SQLite database, in a thread."""
    yield from run_in_thread(free_port())


T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` in a thread of its own: once a browser test has run in a test process,
    Playwright's sync API keeps an event loop running in its main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def wait_for(predicate: object, timeout: float = 30.0, interval: float = 0.05) -> None:
    """Poll a condition with a deadline (not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def health(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the shared stack: its database, and its `server.log` and
    `worker.log` (the supervisor's and its children's stderr)."""
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def stack(stack_dir: Path) -> Iterator[str]:
    """`reglab serve` and `reglab worker` as real processes on a fresh SQLite database,
    shared by the end-to-end and browser tests; yields the server URL."""
    folder = stack_dir
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REGLAB_DATABASE_URL": f"sqlite:///{folder / 'reglab.db'}",
        "REGLAB_DATA_DIR": str(folder / "data"),
        "REGLAB_SERVER_URL": url,
        "REGLAB_HEARTBEAT_SECONDS": "0.5",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    logs = [(folder / "server.log").open("w"), (folder / "worker.log").open("w")]
    reglab = [sys.executable, "-m", "reglab.cli"]
    server = subprocess.Popen(
        [*reglab, "serve", "--port", str(port)],
        env=env,
        cwd=folder,
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: health(url), timeout=60)
    worker = subprocess.Popen(
        [*reglab, "worker", "--gpus", "none"],
        env=env,
        cwd=folder,
        stdout=logs[1],
        stderr=subprocess.STDOUT,
    )
    yield url
    for process in (worker, server):
        process.send_signal(signal.SIGINT)  # Ctrl-C: both stop cleanly
    codes = []
    for process in (worker, server):
        try:
            codes.append(process.wait(30))
        except subprocess.TimeoutExpired:
            process.kill()
            codes.append("hung")
    for log in logs:
        log.close()
    assert codes == [0, 0], f"worker, server exit codes {codes}; logs in {folder}"
