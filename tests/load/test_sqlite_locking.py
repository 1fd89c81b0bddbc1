"""SQLite in WAL mode: why every writing transaction starts with BEGIN IMMEDIATE.

Two connections each read, then write. With a plain deferred `BEGIN` the second writer
holds a snapshot older than the first one's commit, so SQLite cannot let it write and
answers "database is locked" at once, whatever the busy timeout. With the app's engine
(`app.db.make_engine`, BEGIN IMMEDIATE, and an in-process writer lock in front of it) the
second transaction waits for the first at its BEGIN, then reads the committed row and
writes after it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from app.db import make_engine

BUSY_TIMEOUT_S = 30


def _create(path: Path) -> None:
    with sqlite3.connect(path, isolation_level=None) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE counter (value INTEGER NOT NULL)")
        setup.execute("INSERT INTO counter VALUES (0)")
    setup.close()


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    return connection


def test_deferred_begin_that_reads_then_writes_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "deferred.db"
    _create(path)
    first, second = _connect(path), _connect(path)
    try:
        for connection in (first, second):
            connection.execute("BEGIN")  # deferred: no lock until the first write
            (value,) = connection.execute("SELECT max(value) FROM counter").fetchone()
            assert value == 0
        first.execute("INSERT INTO counter VALUES (1)")
        first.execute("COMMIT")

        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            second.execute("INSERT INTO counter VALUES (1)")
        waited = time.monotonic() - started
        assert waited < 1.0, f"failed after {waited:.2f} s, not at once"
        second.execute("ROLLBACK")
    finally:
        first.close()
        second.close()


def test_the_apps_engine_serializes_read_then_write_transactions(tmp_path: Path) -> None:
    """The same two read-then-write transactions, overlapping, on the app's engine."""
    path = tmp_path / "immediate.db"
    _create(path)
    engine = make_engine(f"sqlite:///{path}")
    first_read = threading.Event()
    second_begun = threading.Event()
    seen: dict[str, int] = {}
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with engine.begin() as connection:
                seen["first"] = connection.execute(text("SELECT max(value) FROM counter")).one()[0]
                first_read.set()
                # Hold the transaction while the second one tries to begin.
                second_begun.wait(5)
                time.sleep(0.2)
                connection.execute(
                    text("INSERT INTO counter VALUES (:v)"), {"v": seen["first"] + 1}
                )
        except BaseException as error:  # surfaced below
            errors.append(error)

    def second() -> None:
        try:
            first_read.wait(5)
            second_begun.set()
            with engine.begin() as connection:  # waits here for the first to commit
                seen["second"] = connection.execute(text("SELECT max(value) FROM counter")).one()[0]
                connection.execute(
                    text("INSERT INTO counter VALUES (:v)"), {"v": seen["second"] + 1}
                )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BUSY_TIMEOUT_S)
    assert errors == []
    assert seen == {"first": 0, "second": 1}  # the second read what the first committed
    with engine.connect() as connection:
        values = connection.execute(text("SELECT value FROM counter ORDER BY value")).scalars()
        assert list(values) == [0, 1, 2]
    engine.dispose()


def test_the_apps_engine_waits_for_another_processs_writer_then_reads_its_commit(
    tmp_path: Path,
) -> None:
    """The in-process writer lock cannot see another process: there BEGIN IMMEDIATE and
    the busy timeout do the work. A plain sqlite3 connection stands in for that process."""
    path = tmp_path / "other.db"
    _create(path)
    engine = make_engine(f"sqlite:///{path}")
    other = _connect(path)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO counter VALUES (1)")
    seen: list[int] = []

    def read_then_write() -> None:
        with engine.begin() as connection:  # waits at BEGIN IMMEDIATE for the other
            seen.append(connection.execute(text("SELECT max(value) FROM counter")).one()[0])
            connection.execute(text("INSERT INTO counter VALUES (:v)"), {"v": seen[0] + 1})

    writer = threading.Thread(target=read_then_write)
    writer.start()
    time.sleep(0.3)  # let it meet the other's lock
    assert writer.is_alive() and seen == []
    other.execute("COMMIT")
    writer.join(BUSY_TIMEOUT_S)
    other.close()
    assert seen == [1]
    engine.dispose()


def test_a_transaction_that_ends_any_way_lets_the_next_writer_in_at_once(tmp_path: Path) -> None:
    """The writer lock is handed on by commit, rollback, a failed statement, a session
    closed without a commit and a connection closed mid-transaction."""
    path = tmp_path / "ends.db"
    _create(path)
    engine = make_engine(f"sqlite:///{path}")

    def write() -> float:
        started = time.monotonic()
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO counter VALUES (7)"))
        return time.monotonic() - started

    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        connection.rollback()
    assert write() < 1
    with pytest.raises(Exception, match="no such table"), engine.begin() as connection:
        connection.execute(text("INSERT INTO missing VALUES (1)"))
    assert write() < 1
    with Session(engine) as session:
        session.execute(text("SELECT 1"))  # begins; closed without commit
    assert write() < 1
    connection = engine.connect()
    connection.execute(text("SELECT 1"))
    connection.invalidate()  # the DBAPI connection is closed mid-transaction
    connection.close()
    assert write() < 1
    engine.dispose()


def test_many_read_then_write_transactions_on_the_apps_engine_never_lock(
    tmp_path: Path,
) -> None:
    """8 threads x 50 read-max-then-insert transactions: no error, no lost update."""
    path = tmp_path / "many.db"
    _create(path)
    engine = make_engine(f"sqlite:///{path}")
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def increment() -> None:
        try:
            barrier.wait()
            for _ in range(50):
                with engine.begin() as connection:
                    value = connection.execute(text("SELECT max(value) FROM counter")).one()[0]
                    connection.execute(text("INSERT INTO counter VALUES (:v)"), {"v": value + 1})
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=increment) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with engine.connect() as connection:
        values = list(connection.execute(text("SELECT value FROM counter")).scalars())
    assert sorted(values) == list(range(401))  # every increment saw the one before it
    engine.dispose()
