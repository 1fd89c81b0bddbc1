"""Database engines and sessions.

SQLite is the embedded default. In WAL mode a deferred transaction that reads and then
writes fails at once with "database is locked", whatever the busy timeout, so every
transaction on the write engine starts with BEGIN IMMEDIATE. Reads go through a second
engine whose transactions stay deferred, so that lists and event replays never queue
behind writers. PostgreSQL uses one engine and row locks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

from app.settings import get_settings


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def normalize_url(url: str) -> str:
    """Pick psycopg 3 for plain postgresql:// URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def make_engine(url: str, *, immediate: bool = True) -> Engine:
    url = normalize_url(url)
    if is_sqlite(url):
        return _sqlite_engine(url, immediate=immediate)
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


@lru_cache
def get_engine() -> Engine:
    """The engine for writes (BEGIN IMMEDIATE on SQLite)."""
    return make_engine(get_settings().database_url)


@lru_cache
def get_read_engine() -> Engine:
    """The engine for reads: deferred transactions on SQLite, the same engine elsewhere."""
    url = get_settings().database_url
    if is_sqlite(normalize_url(url)):
        return make_engine(url, immediate=False)
    return get_engine()


def get_session() -> Iterator[Session]:
    """One session per request (FastAPI dependency)."""
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


def get_read_session() -> Iterator[Session]:
    with Session(get_read_engine(), expire_on_commit=False) as session:
        yield session


@contextmanager
def session_scope(*, read_only: bool = False) -> Iterator[Session]:
    """A short session outside a request (sweeper, event replay)."""
    engine = get_read_engine() if read_only else get_engine()
    with Session(engine, expire_on_commit=False) as session:
        yield session


def reset_engines() -> None:
    """Forget cached engines (tests that switch databases)."""
    for cached in (get_engine, get_read_engine):
        if cached.cache_info().currsize:
            cached().dispose()
        cached.cache_clear()
