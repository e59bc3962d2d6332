"""The write paths of the data layer, on SQLite and PostgreSQL: each unit is all-or-nothing
(under SQLite's group commit too, where a failed commit fails the whole group), concurrent
units never lose an update of a shared row, and `write` transactions beside many units
neither lose updates nor deadlock with them."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest
import sqlalchemy as sa
from fixtures.server import fresh_postgres_database

from hcard.server.db import engine as db_engine
from hcard.server.db import locking, migrate
from hcard.server.db.tables import accounts, alerts
from hcard.server.services import ledger
from hcard.server.vocabulary import AccountKind

UNITS = 40


def _alerts(engine: sa.Engine) -> list[str]:
    with db_engine.read(engine) as conn:
        return sorted(conn.execute(sa.select(alerts.c.detail)).scalars())


def _add_alert(conn: sa.Connection, detail: str) -> None:
    conn.execute(sa.insert(alerts).values(kind="bad_record", detail=detail, created_s=0.0))


def _balances(engine: sa.Engine, *ids: int) -> list[int]:
    with db_engine.read(engine) as conn:
        return [
            conn.execute(
                sa.select(accounts.c.balance_cents).where(accounts.c.id == account_id)
            ).scalar_one()
            for account_id in ids
        ]


def _add_to(conn: sa.Connection, account_id: int, amount_cents: int) -> None:
    """What every booking does to a merchant's row: lock it, then add to its balance."""
    locking.accounts(conn, [account_id])
    conn.execute(
        sa.update(accounts)
        .where(accounts.c.id == account_id)
        .values(balance_cents=accounts.c.balance_cents + amount_cents)
    )


@pytest.fixture
def two_accounts(db):
    with db_engine.write(db) as conn:
        return [ledger.create_account(conn, f"merchant:{i}", AccountKind.MERCHANT) for i in (1, 2)]


def _all_at_once(count, work):
    barrier = threading.Barrier(count)

    def run(index):
        barrier.wait(timeout=60)
        try:
            return work(index)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def _hold_the_writer(engine: sa.Engine, pool: ThreadPoolExecutor) -> threading.Event:
    """Keep the group writer busy with a unit until the returned event is set, so that the
    units queued meanwhile form the next group."""
    running, release = threading.Event(), threading.Event()

    def gate(_conn: sa.Connection) -> None:
        running.set()
        assert release.wait(timeout=30)

    pool.submit(db_engine.unit, engine, gate)
    assert running.wait(timeout=30)
    return release


def _wait_until_queued(engine: sa.Engine, count: int) -> None:
    writer = db_engine._GROUP_WRITERS[str(engine.url)]
    deadline = time.monotonic() + 30
    while writer.pending.qsize() < count:
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_units_fail_alone_and_the_others_commit(db):
    def unit(index: int) -> object:
        def work(conn: sa.Connection) -> int:
            _add_alert(conn, f"{index:02}")
            if index % 2:
                raise ValueError(index)  # after writing: the write must not stay
            return index

        return db_engine.unit(db, work)

    answers = _all_at_once(UNITS, unit)

    for index, answer in enumerate(answers):
        if index % 2:
            assert isinstance(answer, ValueError)
            assert answer.args == (index,)
        else:
            assert answer == index
    assert _alerts(db) == [f"{i:02}" for i in range(0, UNITS, 2)]


def test_a_unit_sees_what_it_wrote_and_nothing_leaks_on_error(db):
    def broken(conn: sa.Connection) -> None:
        _add_alert(conn, "x")
        assert conn.execute(sa.select(sa.func.count()).select_from(alerts)).scalar_one() == 1
        raise KeyError("late")

    with pytest.raises(KeyError):
        db_engine.unit(db, broken)
    assert _alerts(db) == []


def _breaks_the_commit(conn: sa.Connection) -> None:
    """Leave the transaction so that its COMMIT fails: a foreign key checked at the commit."""
    conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
    conn.exec_driver_sql(
        "INSERT INTO postings (txn_id, account_id, amount_cents) VALUES (999999, 999999, 1)"
    )


def test_a_failed_commit_fails_every_unit_of_the_group(tmp_path):
    """SQLite's group commit (PostgreSQL commits each unit alone)."""
    db = db_engine.make_engine(f"sqlite:///{tmp_path / 'hcard.db'}")
    migrate.upgrade(db)
    with ThreadPoolExecutor(max_workers=6) as pool:
        gate = _hold_the_writer(db, pool)
        queued = []
        for index in range(5):
            work = _breaks_the_commit if index == 2 else lambda c, i=index: _add_alert(c, str(i))
            queued.append(pool.submit(db_engine.unit, db, work))
            _wait_until_queued(db, index + 1)
        gate.set()
        errors = [future.exception(timeout=30) for future in queued]
    assert all(isinstance(error, sa.exc.DatabaseError) for error in errors), errors
    assert _alerts(db) == []
    db_engine.unit(db, lambda conn: _add_alert(conn, "after"))  # the writer goes on
    assert _alerts(db) == ["after"]
    db.dispose()


def test_concurrent_units_on_one_row_never_lose_an_update(db, two_accounts):
    merchant = two_accounts[0]
    answers = _all_at_once(UNITS, lambda i: db_engine.unit(db, lambda c: _add_to(c, merchant, i)))
    assert answers == [None] * UNITS
    assert _balances(db, merchant) == [sum(range(UNITS))]


def test_office_writes_beside_many_units(db, two_accounts):
    """Fifty threads book on both rows through units (grouped on SQLite, in either order of
    the rows within a group), while office writes lock them in the one order: every update
    lands, no error, no deadlock."""
    low, high = two_accounts
    rounds = 10

    def work(index: int) -> None:
        for n in range(rounds):
            if index % 10 == 0:
                with db_engine.write(db) as conn:
                    _add_to(conn, low, 1)
                    _add_to(conn, high, 1)
            else:
                row = (low, high)[(index + n) % 2]
                db_engine.unit(db, lambda conn, row=row: _add_to(conn, row, 1))

    answers = _all_at_once(50, work)
    assert answers == [None] * 50
    assert sum(_balances(db, low, high)) == 50 * rounds + 5 * rounds


def test_commit_with_commits_the_unit_or_nothing(db):
    """`commit_with`: the unit's last statements (with its COMMIT in one round trip on
    PostgreSQL) stand with the rest of the unit, and one that fails takes the whole unit."""

    def last(detail: str) -> sa.Insert:
        return sa.insert(alerts).values(kind="bad_record", detail=detail, created_s=0.0)

    def fine(conn: sa.Connection) -> list[list[object]]:
        _add_alert(conn, "a")
        return db_engine.commit_with(conn, last("b"), sa.select(sa.literal(7)))

    assert db_engine.unit(db, fine) == [[], [(7,)]]

    def broken(conn: sa.Connection) -> None:
        _add_alert(conn, "lost")
        db_engine.commit_with(conn, last("lost too"), last(None))  # detail is NOT NULL

    with pytest.raises(sa.exc.IntegrityError):
        db_engine.unit(db, broken)
    assert _alerts(db) == ["a", "b"]


def test_pipelined_statements_stand_or_fall_with_their_unit(db):
    """`pipelined`: statements sent together (on PostgreSQL in one round trip, the
    transaction's BEGIN with them) give each its rows, by position and by name, and belong
    to the unit: undone when it fails later, and one that fails takes the whole unit."""

    def add(detail: str | None) -> sa.Insert:
        values = {"kind": "bad_record", "detail": detail, "created_s": 0.0}
        return sa.insert(alerts).values(values).returning(alerts.c.detail)

    def first(conn: sa.Connection) -> tuple[object, object]:
        added, (seven,) = db_engine.pipelined(conn, add("a"), sa.select(sa.literal(7).label("n")))
        return added[0].detail, seven.n

    assert db_engine.unit(db, first) == ("a", 7)

    def fails_later(conn: sa.Connection) -> None:
        db_engine.pipelined(conn, add("undone"))
        raise RuntimeError("the unit fails")

    with pytest.raises(RuntimeError, match="the unit fails"):
        db_engine.unit(db, fails_later)

    def fails_inside(conn: sa.Connection) -> None:
        _add_alert(conn, "lost")
        db_engine.pipelined(conn, add("lost too"), add(None))  # detail is NOT NULL

    with pytest.raises(sa.exc.IntegrityError):
        db_engine.unit(db, fails_inside)
    assert _alerts(db) == ["a"]


@pytest.mark.postgres
def test_pipelined_refuses_a_statement_whose_text_depends_on_its_values(postgres_url):
    """An expanding `IN` list is rendered by SQLAlchemy per call; sent as compiled, it would
    reach PostgreSQL unrendered: refused before anything is sent."""
    engine = db_engine.make_engine(fresh_postgres_database(postgres_url))
    migrate.upgrade(engine)
    listed = sa.select(alerts.c.id).where(alerts.c.id.in_(sa.bindparam("ids", expanding=True)))
    try:
        with db_engine.write(engine) as conn, pytest.raises(ValueError, match="expanding"):
            db_engine.pipelined(conn, (listed, {"ids": [1, 2]}))
    finally:
        engine.dispose()


def test_the_pool_holds_a_connection_for_every_worker_thread():
    """Every request's database work runs in one of AnyIO's worker threads: a pool smaller
    than their number opened and closed connections under load (`db_engine.POOL_SIZE`)."""

    async def worker_threads() -> float:
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert anyio.run(worker_threads) == db_engine.POOL_SIZE


@pytest.mark.postgres
def test_a_lone_read_gives_its_connection_back_in_transactions(postgres_url):
    """`read_statement` reads outside a transaction on PostgreSQL (autocommit). The pool's one
    connection goes to the next `write` in a transaction again: what it did is undone when
    it fails (in autocommit each statement would have stood, and a row lock ended with it)."""
    engine = sa.create_engine(fresh_postgres_database(postgres_url), pool_size=1, max_overflow=0)
    migrate.upgrade(engine)
    try:
        with db_engine.read_statement(engine) as conn:
            assert conn.connection.dbapi_connection.autocommit
            assert conn.execute(sa.select(sa.func.count()).select_from(alerts)).scalar() == 0
        with pytest.raises(RuntimeError, match="the write fails"):
            _write_and_fail(engine)
        assert _alerts(engine) == []
    finally:
        engine.dispose()


def _write_and_fail(engine: sa.Engine) -> None:
    with db_engine.write(engine) as conn:
        assert not conn.connection.dbapi_connection.autocommit
        _add_alert(conn, "undone")
        raise RuntimeError("the write fails")


@pytest.mark.postgres
def test_a_connection_the_server_closed_is_replaced_before_anyone_uses_it(postgres_url):
    """PostgreSQL ended the pooled connection's process (a restart, an idle timeout): the
    pool opens another for the next transaction, and the transaction never sees it."""
    url = fresh_postgres_database(postgres_url)
    engine = db_engine.make_engine(url)
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with db_engine.read(engine) as conn:
            ended = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with db_engine.write(engine) as conn:  # a healthy one is kept, also after a pipeline
            db_engine.commit_with(conn, sa.select(sa.literal(1)))
        with db_engine.read(engine) as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() == ended
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": ended})
        with db_engine.read(engine) as conn:
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != ended
    finally:
        engine.dispose()
        admin.dispose()
