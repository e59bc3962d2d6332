"""Row locks, taken in one place and in one order, inside a write transaction only.

PostgreSQL runs transactions side by side; two that lock the same rows in opposite order
deadlock. So every service that locks does it here, and this module keeps one order for
the whole server:

0. settlement's own row (`settlement`: the `invoice` counter), for creating and
   cancelling a run, before anything else;
1. the terminal's row (`terminal`): sync, authorisation, enrolment, revocation and the
   alert of a revoked terminal serialise per terminal on it. (A request's nonce is
   recorded before it by `SignedRequest.unit`: a row nobody else waits for, except a
   replay of the same request, which then fails.)
2. account rows (`accounts`): the accounts a booking moves, and for a sync batch the
   accounts of all its cards (by card number) and its merchant, before it reads the
   balances and card counters it decides on. One statement, every other account by id,
   then the merchants' accounts by id (`ORDER BY kind = 'merchant', id`): a merchant's row
   is updated by every payment of all its tills, so an online payment locks its card
   first, decides, and takes the merchant's row only in the statement that books, sent
   with the commit (`ledger.post_last`): nobody waits for that row while this process
   answers a round trip.
3. the `version` counter row (`version_counter`, called by `snapshot.cards_changed` right
   before its `UPDATE counters ... RETURNING` takes it),
4. card rows (updated by `snapshot.cards_changed` after the version row).

A transaction may take each kind again (rows already held stay held) but never go back to
an earlier kind, and within a kind ids only go up: an account below one it holds in the
accounts' order (a card's after a merchant's, or a lower id of the same rank), or the
terminal after an account, is refused with `LockOrderError` on both engines (the order
is tracked in the process, so the tests on SQLite catch it as well; there, accounts locked
by card number are not looked up, so after such a lock only the kinds' order is checked,
and PostgreSQL, which looks them up to lock them, checks the ids too). Locking outside a
write transaction (`db_engine.write` / `db_engine.unit`) is refused with
`NotInWriteTransactionError`: a lock in a read transaction would be released at once on
PostgreSQL, and SQLite would not even hold its writer lock yet. Both are bugs in the
caller, never a client's doing: 500 `internal_error`, the reason in the log.

On SQLite the write transaction itself (`BEGIN IMMEDIATE`, one writer at a time) already
serialises everything: no `FOR UPDATE` is sent (SQLite has none), the order is still kept.

The order is tracked per transaction, or per SAVEPOINT where one is open when the first
lock is taken: on SQLite the group writer runs each unit of work in its own SAVEPOINT of a
shared transaction (`db_engine.unit`), and each unit is its own lock sequence.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache

import sqlalchemy as sa

from hcard.server.db import engine as db_engine
from hcard.server.db.tables import accounts as account_table
from hcard.server.db.tables import cards, counters, terminals
from hcard.server.vocabulary import AccountKind, CounterName


class LockingError(RuntimeError):
    """A lock taken where or when it must not be: a bug in the caller."""


class NotInWriteTransactionError(LockingError):
    """A lock asked for outside `db_engine.write` / `db_engine.unit`."""


class LockOrderError(LockingError):
    """A lock asked for against the one order (terminal → accounts by id → version row)."""


class Stage(IntEnum):
    NONE = 0
    SETTLEMENT = 1
    TERMINAL = 2
    ACCOUNTS = 3
    VERSION_COUNTER = 4


@dataclass
class _Held:
    stage: Stage = Stage.NONE
    #: the highest terminal id held; the accounts held, each with its place in the order
    terminal: int = 0
    accounts: dict[int, tuple[bool, int]] = field(default_factory=dict)
    #: False once SQLite "locked" cards by number without learning their accounts' ids
    ids_known: bool = True


_HELD: weakref.WeakKeyDictionary[sa.engine.Transaction, _Held] = weakref.WeakKeyDictionary()


def _held(conn: sa.Connection) -> _Held:
    """The locks of `conn`'s current transaction (or SAVEPOINT); checked to be a write
    transaction when it takes its first lock."""
    transaction = conn.get_nested_transaction() or conn.get_transaction()
    held = _HELD.get(transaction) if transaction is not None else None
    if held is None:
        if transaction is None or not db_engine.in_write_transaction(conn):
            raise NotInWriteTransactionError(
                "locks are taken inside db_engine.write or db_engine.unit"
            )
        held = _HELD[transaction] = _Held()
    return held


def _enter(held: _Held, stage: Stage) -> None:
    if held.stage > stage:
        raise LockOrderError(f"{stage.name.lower()} locked after {held.stage.name.lower()}")
    held.stage = stage


def settlement(conn: sa.Connection) -> None:
    """Serialise the steps of settlement that must see each other (creating and cancelling
    a run: the overlap check and the items a run takes) on the `invoice` counter's row,
    before everything else (0. in the order; nothing else ever locks that row)."""
    _enter(_held(conn), Stage.SETTLEMENT)
    conn.execute(
        sa.select(counters.c.value).where(counters.c.name == CounterName.INVOICE).with_for_update()
    )


def terminal(conn: sa.Connection, terminal_id: int, *columns: sa.Column) -> sa.Row | None:
    """Lock the terminal's row (first in every transaction that takes it) and return
    `columns` of it (its id if none are named), or None when there is no such terminal."""
    return conn.execute(*terminal_step(conn, terminal_id, *columns)).first()


def terminal_step(conn: sa.Connection, terminal_id: int, *columns: sa.Column) -> db_engine.Bound:
    """`terminal`'s statement, to be run next on `conn` (`db_engine.pipelined`, beside
    others in one round trip); the lock is counted as taken."""
    held = _held(conn)
    _enter(held, Stage.TERMINAL)
    if terminal_id < held.terminal:
        raise LockOrderError(f"terminal {terminal_id} locked after terminal {held.terminal}")
    held.terminal = terminal_id
    return _terminal_lock(columns or (terminals.c.id,)), {"id": terminal_id}


@lru_cache(maxsize=8)
def _terminal_lock(columns: tuple[sa.Column, ...]) -> sa.Select:
    """`terminal`'s statement for `columns`, built once for each set of them."""
    return sa.select(*columns).where(terminals.c.id == sa.bindparam("id")).with_for_update()


def accounts(
    conn: sa.Connection, account_ids: Iterable[int] = (), card_numbers: Iterable[str] = ()
) -> None:
    """Lock the accounts `account_ids` and those of the cards `card_numbers`, in id order,
    in one statement, before any of them changes.

    Every booking locks its accounts here (`ledger.post_many`), and a sync batch locks all
    of its accounts here before it reads the balances and card counters it decides on: two
    transactions on the same card and merchant then see each other's result and never wait
    for each other in a cycle. Rows already held stay held; a new id below the highest one
    held is a LockOrderError (that could deadlock).
    """
    held = _held(conn)
    _enter(held, Stage.ACCOUNTS)
    ids = sorted(set(account_ids))
    numbers = sorted(set(card_numbers))
    if db_engine.is_sqlite(conn.engine):
        # no row locks to take; cards' accounts are not looked up (a query per sync batch
        # for nothing but the check), so their ids stay unknown: see the module's docstring
        held.ids_known = held.ids_known and not numbers
        _add_accounts(held, _places(conn, ids))
        return
    query = _LOCK_ACCOUNTS_AND_CARDS if numbers else _LOCK_ACCOUNTS
    rows = conn.execute(query, {"ids": ids, "numbers": numbers})
    _add_accounts(held, [(merchant, account_id) for merchant, account_id in rows])


#: an account's rank in the order: False (0) for every other account, True for a merchant's
_PLACE = (account_table.c.kind == AccountKind.MERCHANT).label("merchant")


#: `accounts`' statements on PostgreSQL (by id; by id and the cards' numbers), built once
_LOCK_ACCOUNTS, _LOCK_ACCOUNTS_AND_CARDS = (
    sa.select(_PLACE, account_table.c.id)
    .where(wanted)
    .order_by(_PLACE, account_table.c.id)
    .with_for_update()
    for wanted in (
        account_table.c.id.in_(sa.bindparam("ids", expanding=True)),
        sa.or_(
            account_table.c.id.in_(sa.bindparam("ids", expanding=True)),
            account_table.c.id.in_(
                sa.select(cards.c.account_id).where(
                    cards.c.number.in_(sa.bindparam("numbers", expanding=True))
                )
            ),
        ),
    )
)


def _places(conn: sa.Connection, account_ids: Iterable[int]) -> list[tuple[bool, int]]:
    """The places in the order of accounts (rank, id), looked up, without a lock."""
    ids = sorted(set(account_ids))
    if not ids:
        return []
    rows = conn.execute(_PLACES, {"ids": ids})
    return sorted((bool(merchant), account_id) for merchant, account_id in rows)


#: `_places`' statement, built once (every booking asks it)
_PLACES = sa.select(_PLACE, account_table.c.id).where(
    account_table.c.id.in_(sa.bindparam("ids", expanding=True))
)


def accounts_sql(conn: sa.Connection, account_ids: Iterable[int], param: str) -> str:
    """`accounts(conn, account_ids)` as the CTE `locked` of a PostgreSQL statement that
    books (`ledger._book_postgres`), its ids in the bound array `:<param>`: one round trip
    fewer while the rows every payment updates are held. Every write of that statement must
    wait for it (a one-time filter `(SELECT count(*) FROM locked) > 0`, which PostgreSQL
    evaluates in full before the write's first row), so the rows are locked in id order
    before any of them changes, as `accounts` does."""
    held = _held(conn)
    _enter(held, Stage.ACCOUNTS)
    _add_accounts(held, _places(conn, [i for i in account_ids if i not in held.accounts]))
    return (
        f"locked AS (SELECT id FROM accounts WHERE id = ANY(CAST(:{param} AS BIGINT[]))"  # noqa: S608 - our names, values bound
        f" ORDER BY kind = '{AccountKind.MERCHANT}', id FOR UPDATE)"
    )


def _add_accounts(held: _Held, places: list[tuple[bool, int]]) -> None:
    """Note the accounts (rank, id) as held; LockOrderError for a new one before the last
    held in the accounts' order."""
    new = [place for place in places if place[1] not in held.accounts]
    last = max(held.accounts.values(), default=None)
    if held.ids_known and new and last is not None and min(new) < last:
        ids = [account_id for _merchant, account_id in new]
        raise LockOrderError(f"accounts {ids} locked after account {last[1]}")
    held.accounts.update((account_id, (merchant, account_id)) for merchant, account_id in new)


def version_counter(conn: sa.Connection) -> None:
    """Check that the snapshot version's counter row may be taken now (after the terminal
    and the accounts); `snapshot.cards_changed`'s `UPDATE counters ... RETURNING` takes it
    right after, and updates card rows after that."""
    _enter(_held(conn), Stage.VERSION_COUNTER)
