"""The engine for SQLite (default, one file, WAL) and PostgreSQL, and the two ways to use it.

`write(engine)` is the one door for every transaction that changes something.
On SQLite it starts with `BEGIN IMMEDIATE`, taking the single writer lock before
the first read, so a read-check-write sequence (is the balance enough? then
debit) can never interleave with another writer and no deadlock-prone lock
upgrade happens. On PostgreSQL it is an ordinary READ COMMITTED transaction;
code that must serialise takes row locks (`SELECT ... FOR UPDATE`) or uses a
conditional UPDATE, which PostgreSQL re-checks after waiting for the lock.
`read(engine)` is a plain (deferred) transaction for queries; `read_statement(engine)`
a connection for one lone query (on PostgreSQL outside a transaction: two round trips
fewer); `snapshot(engine)` a transaction whose statements all see the same moment (a check
over the whole database), without taking the writer lock.

SQLite allows one writer at a time, and a writer that finds the lock taken
polls with growing sleeps (the busy handler), which under fifty concurrent
tills turns a 2 ms booking into a 2 s wait. So within one process, writers to
one SQLite file queue on a plain lock first and meet the database lock only
when it is free; `busy_timeout` still covers other processes (the CLI).

`unit(engine, fn)` runs `fn(connection)` as one unit of work. On SQLite the
units of many request threads are run by one writer thread in a shared
transaction, each inside its own SAVEPOINT (a unit that fails is undone
alone, its error goes back to its caller), and committed together: one fsync
for every authorisation that arrived meanwhile (group commit), which is what
lets fifty tills be answered within milliseconds with `synchronous=FULL`.
Every caller gets its answer only after the commit. On PostgreSQL a unit is
simply its own transaction; row locks let units run side by side.

PostgreSQL is not grouped, by measurement (issue 13, `bench/server_auth.py --database-url`):
the same group writer there (one transaction for the group, a SAVEPOINT per unit, a lock wait
bounded for every unit but a group's first so that it could not deadlock with `write`
transactions) removed the waits on the hot rows (the merchant's account, the `version`
counter) and the fsync per payment, yet authorised fewer payments, not more: 26-64/s against
47-71/s for units as their own transactions on the same loaded 2-core machine, and at 25
payments/s a p50 of 25-27 ms against 14-25 ms. A unit is some 16 statements; on SQLite each
is microseconds in the process, on PostgreSQL each is a round trip, and one thread running
them one after another (and taking the GIL back after each, beside fifty busy request
threads) is slower than fifty transactions overlapping theirs and queueing only for the
short stretch from the merchant's row lock to the commit. That stretch is kept free of this
process's round trips: a payment's booking is one statement, and `commit_with` sends the
unit's last statements with its COMMIT in one pipeline (`ledger.post_last`).
"""

from __future__ import annotations

import os
import queue
import select
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event

T = TypeVar("T")
_WRITE = "hcard_write"
MAX_GROUP = 64
_WRITER_LOCKS: dict[str, threading.Lock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


#: Connections kept open: one for each of AnyIO's worker threads (40), which run every
#: request's database work (a test holds the two equal). Fewer, and the connections beyond
#: them were opened and closed again under load: on PostgreSQL each a new process, which at
#: fifty tills' capacity cost it 2.5 ms of CPU per authorisation more (7.1 against 4.5 ms,
#: issue 13, `bench/server_auth.py --database-url`); on SQLite each a new file handle and its
#: pragmas. Beyond them, for work outside those threads: opened when needed, closed when
#: given back.
POOL_SIZE = 40
POOL_OVERFLOW = 20
#: libpq's TCP keepalives on every PostgreSQL connection: a pooled connection whose server
#: vanished without closing it (the host gone, a firewall's dropped state) is found within
#: about a minute of rest and replaced at its next checkout (`_closed_by_server`)
KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


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
        engine = sa.create_engine(
            url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, connect_args=KEEPALIVE
        )
        event.listen(engine, "checkout", _closed_by_server)
        return engine
    if parsed.database and parsed.database != ":memory:":
        _create_private(Path(parsed.database))
    engine = sa.create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)

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


def _closed_by_server(dbapi_connection: Any, _record: object, _proxy: object) -> None:
    """Before the pool hands out a PostgreSQL connection: did the server close it (a restart,
    `pg_terminate_backend`, an idle timeout)? Its socket then has something to read (the
    end of the stream, or the server's last message), where a connection at rest has
    nothing. The socket is asked without a round trip (`poll`, which takes any descriptor;
    `select` refuses those above 1023): SQLAlchemy's `pool_pre_ping` spent one per checkout,
    two of an authorisation's. The pool drops such a connection and opens another
    (`DisconnectionError`). A server that vanished without a word (its host gone, a
    firewall's dropped state) leaves nothing to read until TCP's keepalive finds it
    (`KEEPALIVE`); a request that uses the connection first fails, and the pool then
    opens the others anew."""
    if dbapi_connection.closed:
        raise sa.exc.DisconnectionError("the connection is closed")
    waiting = select.poll()
    waiting.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    if waiting.poll(0):
        raise sa.exc.DisconnectionError("PostgreSQL closed the connection")


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
def read_statement(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection for one read statement: on PostgreSQL outside a transaction (autocommit;
    a single statement sees one moment by itself), without `read`'s BEGIN and COMMIT, two
    round trips of every terminal request (its signer, `terminals.authenticate`); on SQLite
    `read` (a transaction there is no round trip)."""
    if is_sqlite(engine):
        with read(engine) as connection:
            yield connection
        return
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")  # undone at its return
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


class _GroupWriter:
    """The one thread that runs SQLite units for an engine, a group per commit."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.pending: queue.SimpleQueue[tuple[Callable[[sa.Connection], object], Future]] = (
            queue.SimpleQueue()
        )
        threading.Thread(target=self._loop, name="hcard-group-writer", daemon=True).start()

    def run(self, fn: Callable[[sa.Connection], T]) -> T:
        future: Future[T] = Future()
        self.pending.put((fn, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            group = [self.pending.get()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self.pending.get_nowait())
                except queue.Empty:
                    break
            outcomes: list[tuple[Future, object, BaseException | None]] = []
            try:
                with write(self.engine) as connection:
                    for fn, future in group:
                        try:
                            with connection.begin_nested():
                                outcomes.append((future, fn(connection), None))
                        except BaseException as exc:  # goes back to the unit's caller
                            outcomes.append((future, None, exc))
            except Exception as exc:  # the commit itself failed: nothing of the group stands
                for _fn, future in group:
                    future.set_exception(exc)
                continue
            for future, result, error in outcomes:
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)


#: a statement with its bound parameters' values
Bound = tuple[sa.Executable, Mapping[str, Any]]
#: a statement to run, alone or with its bound parameters' values
Step = sa.Executable | Bound


def commit_with(conn: sa.Connection, *steps: Step) -> list[list[Any]]:
    """Run `steps` as the last of a unit's work and, on PostgreSQL, commit the unit's
    transaction in the same round trip (`pipelined`: the statements and COMMIT leave
    together and the server runs them one after the other); return each statement's rows
    (none for one that returns none).

    The rows a payment updates that every other payment wants too (the merchant's account,
    the snapshot version: `ledger.post_last`) are then held only while the server runs
    them and writes the commit, not while this process is scheduled again and its thread
    waits for the GIL among fifty busy ones. Nothing may run on `conn` after it: its
    transaction is over (the commit `write` then sends does nothing). If a statement fails,
    the server rolls the whole transaction back and the error is raised here. On SQLite the
    statements simply run: the group writer commits later; inside a SAVEPOINT they are
    sent together without the COMMIT.
    """
    return pipelined(conn, *steps, commit=not conn.in_nested_transaction())


def pipelined(conn: sa.Connection, *steps: Step, commit: bool = False) -> list[list[Any]]:
    """Run `steps`, which do not depend on each other's results, in one round trip on
    PostgreSQL (the driver's pipeline; with `commit`, the COMMIT too); return each
    statement's rows (none for one that returns none), named tuples: by position and by
    column name, as SQLAlchemy's rows, but without its result types (plain values only).

    Each statement there is a trip to the server and back: the process's thread sends,
    waits, and waits again for the GIL among fifty busy ones, and PostgreSQL's process is
    woken once per statement. At the start of a transaction its BEGIN goes along. A
    statement that fails raises here, and the transaction is then lost as with
    `conn.execute`. On SQLite the statements simply run one after the other.

    For statements built once with plain bound values (ints, strings, floats, bytes,
    booleans, None): on PostgreSQL they are sent as compiled, without SQLAlchemy's bind
    and result processing, expanding parameters (`IN` lists) or its handling of a lost
    connection (the next checkout finds that, `_closed_by_server`).
    """
    pairs = [step if isinstance(step, tuple) else (step, {}) for step in steps]
    statements = [statement for statement, _params in pairs]
    if is_sqlite(conn.engine):
        results = [conn.execute(statement, dict(params)) for statement, params in pairs]
        return [list(result.all()) if result.returns_rows else [] for result in results]
    from psycopg.rows import namedtuple_row  # the driver of every PostgreSQL URL here

    driver: Any = conn.connection.dbapi_connection  # psycopg.Connection
    compiled = [_compiled(cast(sa.ClauseElement, s), conn.dialect) for s in statements]
    cursors = []
    try:
        with driver.pipeline():
            for each, (_statement, params) in zip(compiled, pairs, strict=True):
                cursor = driver.cursor(row_factory=namedtuple_row)
                cursor.execute(str(each), each.construct_params(dict(params)))
                cursors.append(cursor)
            if commit:
                driver.commit()
    except conn.dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy raises a driver's errors
        raise sa.exc.DBAPIError.instance(
            "; ".join(str(each) for each in compiled),
            None,
            exc,
            conn.dialect.loaded_dbapi.Error,
            dialect=conn.dialect,
        ) from exc
    return [
        list(cursor.fetchall()) if cursor.description and _asks_for_rows(statement) else []
        for cursor, statement in zip(cursors, statements, strict=True)
    ]


@lru_cache(maxsize=64)
def _compiled(statement: sa.ClauseElement, dialect: sa.Dialect) -> sa.engine.Compiled:
    """`statement` compiled for `dialect`, once for the statements built once (a payment's
    last ones, `ledger.post_last`): compiling took more of the server's time than sending.
    A statement whose text depends on its values (an expanding `IN` list) cannot be sent
    so: refused, a bug in the caller."""
    compiled = statement.compile(dialect=dialect)
    if cast(Any, compiled).post_compile_params:
        raise ValueError(f"not for `pipelined` (expanding parameters): {statement}")
    return compiled


def _asks_for_rows(statement: sa.Executable) -> bool:
    """Whether `statement` asks for rows (an INSERT compiled for PostgreSQL returns its key
    unasked: SQLAlchemy's implicit RETURNING, which `conn.execute` would not show)."""
    if isinstance(statement, sa.UpdateBase):
        return bool(statement.returning_column_descriptions)
    return True


_GROUP_WRITERS: dict[str, _GroupWriter] = {}


def unit(engine: sa.Engine, fn: Callable[[sa.Connection], T]) -> T:
    """Run `fn(connection)` in a write transaction (grouped with others on SQLite)."""
    if not is_sqlite(engine):
        with write(engine) as connection:
            return fn(connection)
    key = str(engine.url)
    with _WRITER_LOCKS_GUARD:
        writer = _GROUP_WRITERS.get(key)
        if writer is None or writer.engine is not engine:
            writer = _GROUP_WRITERS[key] = _GroupWriter(engine)
    return writer.run(fn)
