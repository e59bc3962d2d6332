"""The engine for SQLite (default, one file, WAL) and PostgreSQL, and the two ways to use it.

`write(engine)` is the one door for every transaction that changes something.
On SQLite it starts with `BEGIN IMMEDIATE`, taking the single writer lock before
the first read, so a read-check-write sequence (is the balance enough? then
debit) can never interleave with another writer and no deadlock-prone lock
upgrade happens. On PostgreSQL it is an ordinary READ COMMITTED transaction;
code that must serialise takes row locks (`SELECT ... FOR UPDATE`) or uses a
conditional UPDATE, which PostgreSQL re-checks after waiting for the lock.
`read(engine)` is a plain (deferred) transaction for queries; `snapshot(engine)` one
whose statements all see the same moment (a check over the whole database), without
taking the writer lock.

SQLite allows one writer at a time, and a writer that finds the lock taken
polls with growing sleeps (the busy handler), which under fifty concurrent
tills turns a 2 ms booking into a 2 s wait. So within one process, writers to
one SQLite file queue on a plain lock first and meet the database lock only
when it is free; `busy_timeout` still covers other processes (the CLI).

`unit(engine, fn)` runs `fn(connection)` as one unit of work, on both engines the
same way: the units of many request threads are run by one writer thread in a
shared transaction, each inside its own SAVEPOINT (a unit that fails is undone
alone, its error goes back to its caller), and committed together: one fsync
for every authorisation that arrived meanwhile (group commit), which is what
lets fifty tills be answered within milliseconds with `synchronous=FULL` (SQLite)
or `synchronous_commit=on` (PostgreSQL). Every caller gets its answer only
after the commit; if the commit fails, every unit of the group gets its error.

On PostgreSQL the group also ends the waits on the merchant's account row, which
every payment updates: units of one group run one after another in one
transaction, so none waits for another's row lock, and the row is locked once per
group instead of once per payment (units as their own transactions, all updating
that row, managed 65-77 payments/s on the machine where SQLite did 150).
But a group holds the locks of all its units until its commit, taken in no
common order, while `write` transactions (office pages, settlement, the CLI) run
beside it in the one order of `db/locking.py`: a later unit waiting for a row such
a transaction holds, while that transaction waits for a row an earlier unit took,
would deadlock. So every unit but a group's first may wait for a lock only
`GROUP_LOCK_WAIT_MS`; past that its savepoint is rolled back, the group commits
without it (releasing its rows) and the unit runs again as the first of the next
group, where it waits like any transaction, holding nothing but its own locks. A
unit must therefore be safe to run again after its savepoint was undone (all our
units only write to the database).
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event

T = TypeVar("T")
_WRITE = "hcard_write"
MAX_GROUP = 64
#: how long a unit that is not its group's first may wait for a row lock (PostgreSQL)
GROUP_LOCK_WAIT_MS = 5
#: PostgreSQL's SQLSTATE for a lock not granted within `lock_timeout`
LOCK_NOT_AVAILABLE = "55P03"
_WRITER_LOCKS: dict[str, threading.Lock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _writer_lock(engine: sa.Engine) -> threading.Lock | None:
    if not is_sqlite(engine):
        return None
    key = str(engine.url)
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(key, threading.Lock())


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> sa.Engine:
    """Create the engine; for SQLite also the folder of the file, and the pragmas."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        _create_private(Path(parsed.database))
    engine = sa.create_engine(url, pool_size=20, max_overflow=40)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
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


def _create_private(database: Path) -> None:
    """Create a missing SQLite file empty with mode 0600, whatever the process's umask.

    `hcard-server init` runs with the caller's umask (root's 022 in install-server.sh; only
    the unit has UMask=0077), and SQLite would make the file 0644. SQLite gives the -wal,
    -shm and -journal files the mode of the database file itself, so they follow. An
    existing file keeps the mode it has (an operator may have chosen it).
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken more than group and other bits
    finally:
        os.close(fd)


@contextmanager
def write(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that may change data; commits on success, rolls back on error."""
    lock = _writer_lock(engine)
    if lock is not None:
        lock.acquire()
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(**{_WRITE: True})
            with connection.begin():
                yield connection
    finally:
        if lock is not None:
            lock.release()


def in_write_transaction(conn: sa.Connection) -> bool:
    """Was `conn` opened by `write` (or `unit`), the door for transactions that change data?"""
    return bool(conn.get_execution_options().get(_WRITE))


def bulk_insert(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Sequence[Iterable[Any]]
) -> None:
    """INSERT many rows straight through the driver's executemany.

    For the thousand-row inserts of a sync batch: SQLAlchemy's per-row
    parameter processing costs more than SQLite's own work there. Plain values
    only (ints, strings, None), which is all the ledger and journal hold.
    """
    if not rows:
        return
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "  # noqa: S608 - names from our schema
        f"VALUES ({', '.join([marker] * len(columns))})"
    )
    conn.exec_driver_sql(sql, [tuple(row) for row in rows])


@contextmanager
def read(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that only reads."""
    with engine.connect() as connection, connection.begin():
        yield connection


@contextmanager
def snapshot(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that only reads, and sees the whole database as of one moment however
    many statements it runs and whatever commits meanwhile: for checks over everything
    (`ledger.check`) that must not stop the tills for the seconds they take.

    SQLite (WAL): a deferred transaction's first SELECT fixes its snapshot until the end,
    and writers go on beside it (no writer lock is taken). PostgreSQL: REPEATABLE READ (in
    READ COMMITTED each statement would see the commits made since the one before); the
    pool puts the connection back to its default level afterwards.
    """
    with engine.connect() as connection:
        if not is_sqlite(engine):
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


_Unit = tuple[Callable[[sa.Connection], Any], Future[Any]]


class _GroupWriter:
    """The one thread that runs the units for an engine, a group per commit."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.pending: queue.SimpleQueue[_Unit] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="hcard-group-writer", daemon=True).start()

    def run(self, fn: Callable[[sa.Connection], T]) -> T:
        future: Future[T] = Future()
        self.pending.put((fn, future))
        return future.result()

    def _loop(self) -> None:
        carried: list[_Unit] = []  # units to run first in the next group, in order
        while True:
            group, carried = carried or [self.pending.get()], []
            while len(group) < MAX_GROUP:
                try:
                    group.append(self.pending.get_nowait())
                except queue.Empty:
                    break
            outcomes: list[tuple[Future[Any], object, BaseException | None]] = []
            try:
                with write(self.engine) as connection:
                    carried = self._run_group(connection, group, outcomes)
            except Exception as exc:  # the commit itself failed: nothing of the group stands
                for _fn, future in group[: len(group) - len(carried)]:
                    future.set_exception(exc)
                continue
            for future, result, error in outcomes:
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)

    def _run_group(
        self,
        connection: sa.Connection,
        group: list[_Unit],
        outcomes: list[tuple[Future[Any], object, BaseException | None]],
    ) -> list[_Unit]:
        """Run the units of `group` each in its own SAVEPOINT, noting their outcomes; return
        the units left for the next group (the one that waited too long for a lock, and
        those after it)."""
        postgres = not is_sqlite(self.engine)
        for index, (fn, future) in enumerate(group):
            if postgres and index == 1:
                # every unit after the first: see the module's docstring (deadlocks)
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = {GROUP_LOCK_WAIT_MS}")
            try:
                with connection.begin_nested():
                    outcomes.append((future, fn(connection), None))
            except BaseException as exc:  # goes back to the unit's caller
                if index and postgres and waited_too_long(exc):
                    return group[index:]
                outcomes.append((future, None, exc))
        return []


def waited_too_long(exc: BaseException) -> bool:
    """Did `exc` come from PostgreSQL's `lock_timeout` (SQLSTATE 55P03), itself or as the
    cause of what the unit raised?"""
    seen: BaseException | None = exc
    while seen is not None:
        if (
            isinstance(seen, sa.exc.DBAPIError)
            and getattr(seen.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


_GROUP_WRITERS: dict[str, _GroupWriter] = {}


def unit(engine: sa.Engine, fn: Callable[[sa.Connection], T]) -> T:
    """Run `fn(connection)` in a write transaction, grouped with the units of other threads
    (see the module's docstring); return its result once the group is committed."""
    key = str(engine.url)
    with _WRITER_LOCKS_GUARD:
        writer = _GROUP_WRITERS.get(key)
        if writer is None or writer.engine is not engine:
            writer = _GROUP_WRITERS[key] = _GroupWriter(engine)
    return writer.run(fn)
