"""The engine for SQLite (default, one file, WAL) and PostgreSQL, and the two ways to use it.

`write(engine)` is the one door for every transaction that changes something.
On SQLite it starts with `BEGIN IMMEDIATE`, taking the single writer lock before
the first read, so a read-check-write sequence (is the balance enough? then
debit) can never interleave with another writer and no deadlock-prone lock
upgrade happens. On PostgreSQL it is an ordinary READ COMMITTED transaction;
code that must serialise takes row locks (`SELECT ... FOR UPDATE`) or uses a
conditional UPDATE, which PostgreSQL re-checks after waiting for the lock.
`read(engine)` is a plain (deferred) transaction for queries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

_WRITE = "hcard_write"


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> sa.Engine:
    """Create the engine; for SQLite also the folder of the file, and the pragmas."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, pool_size=20, max_overflow=40)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy, not the sqlite3 module, say when a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed booking survives a power cut, also in WAL mode.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        mode = "IMMEDIATE" if connection.get_execution_options().get(_WRITE) else "DEFERRED"
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


@contextmanager
def write(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that may change data; commits on success, rolls back on error."""
    with engine.connect() as connection:
        connection = connection.execution_options(**{_WRITE: True})
        with connection.begin():
            yield connection


@contextmanager
def read(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that only reads."""
    with engine.connect() as connection, connection.begin():
        yield connection
