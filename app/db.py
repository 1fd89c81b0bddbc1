"""Database engines and sessions.

SQLite is the embedded default. In WAL mode a deferred transaction that reads and then
writes fails at once with "database is locked", whatever the busy timeout, so every
transaction on the write engine starts with BEGIN IMMEDIATE. Reads go through a second
engine whose transactions stay deferred, so that lists and event replays never queue
behind writers. PostgreSQL uses one engine and row locks.

Writers of one process queue on an in-process lock before BEGIN IMMEDIATE: SQLite's busy
handler makes a waiting writer sleep and poll (1, 2, 5 ... 100 ms), so with several
writers at once one of them could lose for seconds, while a lock wakes the next one as
soon as a transaction ends (bench/ingest_load.py: upload p99 on SQLite, RESULTS.md).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
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


BUSY_TIMEOUT_SECONDS = 30
_writer_locks: dict[str, threading.Lock] = {}
_writer_locks_guard = threading.Lock()


class _SQLiteConnection(sqlite3.Connection):
    """A connection that holds its database's in-process writer lock from before its
    BEGIN IMMEDIATE until its transaction ends, however it ends (commit, rollback, the
    pool's reset, close). Other processes still meet at SQLite's own lock."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        with _writer_locks_guard:
            key = os.path.realpath(os.fsdecode(database))
            self._writer = _writer_locks.setdefault(key, threading.Lock())
        self._holds_writer = False

    def acquire_writer(self) -> None:
        # Past the timeout, BEGIN IMMEDIATE goes ahead alone and SQLite's busy timeout rules.
        self._holds_writer = self._writer.acquire(timeout=BUSY_TIMEOUT_SECONDS)

    def release_writer(self) -> None:
        if self._holds_writer:
            self._holds_writer = False
            self._writer.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_writer()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_writer()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_writer()


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    path = make_url(url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={
            "check_same_thread": False,
            "timeout": BUSY_TIMEOUT_SECONDS,
            "factory": _SQLiteConnection,
        },
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if not immediate:
            connection.exec_driver_sql("BEGIN")
            return
        dbapi_connection = connection.connection.dbapi_connection
        dbapi_connection.acquire_writer()
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            dbapi_connection.release_writer()
            raise

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


def dialect_insert(session: Session, table: Any) -> Any:
    """An INSERT that knows ON CONFLICT on SQLite and PostgreSQL (for upserts)."""
    return insert_for(session.get_bind().dialect.name)(table)


def insert_for(dialect: str) -> Any:
    """The `insert` of a dialect, with ON CONFLICT (for statements built once a dialect)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if dialect == "postgresql" else sqlite.insert


_COMPILED: dict[tuple[int, str], tuple[Any, str, list[str] | None]] = {}


def execute_many(
    session: Session, statement: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Run a statement built once (a module's constant) for each of `rows` (values in the
    order of `columns`) through the driver's own `executemany`, its SQL compiled once per
    dialect: for the hot paths that store hundreds of rows an upload, where SQLAlchemy's
    per-row parameter processing costs more than the database does. The values go to the
    driver as they are (no type processing): plain numbers and strings only."""
    connection = session.connection()
    dialect = connection.dialect
    key = (id(statement), dialect.name)
    found = _COMPILED.get(key)
    if found is None:
        compiled = statement.compile(dialect=dialect)
        found = _COMPILED[key] = (statement, compiled.string, compiled.positiontup)
    _, sql, order = found
    if order is None:  # named parameters (psycopg's "%(name)s")
        connection.exec_driver_sql(sql, [dict(zip(columns, row, strict=True)) for row in rows])
    elif list(order) == list(columns):  # positional (SQLite's "?"), in the same order
        connection.exec_driver_sql(sql, rows)
    else:
        where = [list(columns).index(name) for name in order]
        connection.exec_driver_sql(sql, [tuple(row[i] for i in where) for row in rows])
