"""The double-entry ledger: the one place that moves money, and the proof that it is right.

`post` (`post_many`, and `post_last` for the last work of a unit) is the only function
that writes postings or changes a stored balance; on PostgreSQL one transaction is booked
in one statement (`_book_postgres_sql`).
It checks the invariants before it writes (postings sum to zero, at least two
accounts, each once, no zero amount; `check_balanced`) and refuses a transaction
that breaks one with `LedgerInvariantError`, an exception that stays on under
`python -O` (an `assert` would not), and takes the card's floor in the same
statement that debits it: `UPDATE ... SET balance = balance - x WHERE id = ?
AND balance - x >= floor`. The accounts are locked first, in the one order
(`db/locking.py`). On PostgreSQL that UPDATE waits for a concurrent
debit of the same row and re-checks the condition afterwards; on SQLite the
caller's `BEGIN IMMEDIATE` already serialises writers. Either way fifty tills
paying from one card at once cannot take it below zero.

`check` proves what `post` promises, over the whole database: every
transaction sums to zero, every stored balance equals the sum of its postings,
no journal record is booked twice. `hcard-server ledger check` runs it.

Sign convention: a posting adds its amount to the account's balance. A card's
balance is what the cardholder can spend; a merchant's is what the scheme owes
the merchant; the float accounts (cash, bank, online) go negative by what came
in, so the sum of all balances is always zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import sqlalchemy as sa

from hcard.errors import Code, HCardError
from hcard.server.db import engine as db_engine
from hcard.server.db import locking
from hcard.server.db.tables import accounts, postings, transactions
from hcard.server.services import snapshot
from hcard.server.vocabulary import AccountKind, TxnKind


@dataclass(frozen=True)
class Posting:
    account_id: int
    amount_cents: int
    #: refuse the whole transaction when this account's balance would end below it
    floor_cents: int | None = None


def create_account(conn: sa.Connection, key: str, kind: AccountKind) -> int:
    account_id: int = conn.execute(
        sa.insert(accounts).values(key=key, kind=kind).returning(accounts.c.id)
    ).scalar_one()
    return account_id


def system_account(conn: sa.Connection, kind: AccountKind) -> int:
    account_id: int = conn.execute(
        sa.select(accounts.c.id).where(accounts.c.key == kind)
    ).scalar_one()
    return account_id


@dataclass(frozen=True)
class Txn:
    """One transaction to book: its kind, its postings, and what caused it."""

    kind: TxnKind
    entries: Sequence[Posting]
    label: str = ""
    terminal_id: int | None = None
    seq: int | None = None
    user_id: int | None = None
    reason: str | None = None

    def change_of(self, account_id: int) -> int:
        """What this transaction does to the account's balance (0 if it does not touch it;
        an account has at most one posting in a transaction, `check_balanced`)."""
        for entry in self.entries:
            if entry.account_id == account_id:
                return entry.amount_cents
        return 0


class LedgerInvariantError(RuntimeError):
    """A booking that would break the ledger's invariants: a bug in the caller, never a
    refusal a client could cause. Raised before anything is written; the request ends as
    500 `internal_error` with the reason in the server log."""


def check_balanced(entries: Sequence[Posting]) -> None:
    """Raise LedgerInvariantError unless `entries` is a well-formed transaction: at least two
    postings, each account once, no zero amount, and the amounts sum to zero."""
    if len(entries) == 2:  # nearly every booking: the same checks without the generic walk
        first, second = entries
        if (
            first.account_id != second.account_id
            and first.amount_cents != 0
            and first.amount_cents + second.amount_cents == 0
        ):
            return
    ids = [entry.account_id for entry in entries]
    if len(entries) < 2:
        raise LedgerInvariantError("a transaction moves money between at least two accounts")
    if len(set(ids)) != len(ids):
        raise LedgerInvariantError(f"each account at most once per transaction: {ids}")
    if any(entry.amount_cents == 0 for entry in entries):
        raise LedgerInvariantError("no zero postings")
    total = sum(entry.amount_cents for entry in entries)
    if total != 0:
        raise LedgerInvariantError(f"postings must sum to zero, not {total}")


def post(conn: sa.Connection, txn: Txn, *, now_s: float) -> int:
    """Book one transaction (see `post_many`); return its id."""
    return post_many(conn, [txn], now_s=now_s)[0]


#: The statements of every booking, built once with bound parameters: building one costs
#: SQLAlchemy more than SQLite takes to run it (bench/server_auth.py).
_BALANCE_CHANGE = (
    sa.update(accounts)
    .where(accounts.c.id == sa.bindparam("aid"))
    .values(balance_cents=accounts.c.balance_cents + sa.bindparam("delta"))
)
#: the guarded posting: changes the balance only if it stays at or above the floor
_GUARDED_DEBIT = _BALANCE_CHANGE.where(
    accounts.c.balance_cents + sa.bindparam("delta") >= sa.bindparam("floor")
)
_LAST_TXN_ID = sa.select(sa.func.max(transactions.c.id))


def post_many(conn: sa.Connection, txns: Sequence[Txn], *, now_s: float) -> list[int]:
    """Book transactions inside the caller's write transaction; return their ids in order.

    A batch of a thousand synced records is a handful of statements, not
    thousands: balances change by one UPDATE per account (executemany), rows
    are inserted in bulk. A guarded posting (`floor_cents`) is applied first,
    alone, in the statement that checks it, and raises
    HCardError(INSUFFICIENT_FUNDS) before anything else changed.
    """
    if not txns:
        return []
    guarded: list[Posting] = []
    deltas: dict[int, int] = defaultdict(int)
    for txn in txns:
        check_balanced(txn.entries)
        for entry in txn.entries:
            if entry.floor_cents is None:
                deltas[entry.account_id] += entry.amount_cents
            else:
                guarded.append(entry)
    if len(guarded) > 1:
        # only one debit can be checked in the statement that makes it, before any change
        raise LedgerInvariantError("at most one guarded posting per call, applied first")
    if len(txns) == 1 and not db_engine.is_sqlite(conn.engine):
        return [_book_postgres(conn, txns[0], now_s)]
    touched = sorted({e.account_id for txn in txns for e in txn.entries})
    locking.accounts(conn, touched)
    for entry in guarded:
        debit = {"aid": entry.account_id, "delta": entry.amount_cents, "floor": entry.floor_cents}
        if conn.execute(_GUARDED_DEBIT, debit).rowcount != 1:
            raise HCardError(Code.INSUFFICIENT_FUNDS)
    changes = [{"aid": aid, "delta": delta} for aid, delta in sorted(deltas.items()) if delta]
    if changes:
        conn.execute(_BALANCE_CHANGE, changes)
    if db_engine.is_sqlite(conn.engine):
        # The caller holds SQLite's write lock (BEGIN IMMEDIATE): the next ids are ours,
        # and the driver's executemany beats SQLAlchemy's row-at-a-time ordered RETURNING
        # (and its per-row parameter processing).
        first = conn.execute(_LAST_TXN_ID).scalar_one() or 0
        ids = list(range(first + 1, first + 1 + len(txns)))
        db_engine.bulk_insert(
            conn,
            transactions,
            ("id", "kind", "created_s", "terminal_id", "seq", "user_id", "reason", "label"),
            [
                (i, str(txn.kind), now_s, txn.terminal_id, txn.seq, txn.user_id, txn.reason,
                 txn.label)
                for i, txn in zip(ids, txns, strict=True)
            ],
        )  # fmt: skip
    else:
        rows = [_txn_row(txn, now_s) for txn in txns]
        ids = list(
            conn.execute(
                sa.insert(transactions).returning(transactions.c.id, sort_by_parameter_order=True),
                rows,
            ).scalars()
        )
    db_engine.bulk_insert(
        conn,
        postings,
        ("txn_id", "account_id", "amount_cents"),
        [
            (txn_id, e.account_id, e.amount_cents)
            for txn_id, txn in zip(ids, txns, strict=True)
            for e in txn.entries
        ],
    )
    # Terminals learn about every changed card balance from the next snapshot.
    snapshot.accounts_cards_changed(conn, touched)
    return ids


def floors_hold(txn: Txn, balances_cents: Mapping[int, int]) -> bool:
    """Would every guarded posting of `txn` leave its account at or above its floor, the
    accounts' balances being `balances_cents` (read under their locks)?"""
    return all(
        balances_cents[entry.account_id] + entry.amount_cents >= entry.floor_cents
        for entry in txn.entries
        if entry.floor_cents is not None
    )


def post_last(conn: sa.Connection, txn: Txn, *, now_s: float, then: db_engine.Step) -> None:
    """Book `txn` and run `then` as the last work of the caller's unit; on PostgreSQL both in
    one round trip with the commit (`db_engine.commit_with`).

    For an online payment: every payment updates its merchant's account and the snapshot
    version, rows held from that update to the commit, and each round trip this process
    answers in between (scheduled again, the GIL back among fifty busy threads) is time
    every other payment of that merchant, and every booking at all, waits. So the caller
    locks the card's account first, decides on its balance (`floors_hold`), and the rows
    every payment wants are taken by the statement the commit follows (`db/locking.py`:
    merchants' accounts last). A guarded posting that fails here, after the commit, is a
    caller that did not check it: LedgerInvariantError, nothing of `txn` booked.
    """
    if db_engine.is_sqlite(conn.engine):
        post(conn, txn, now_s=now_s)
        db_engine.commit_with(conn, then)
        return
    statement, params = _book_postgres_sql(conn, txn, now_s)
    booked, _then = db_engine.commit_with(conn, (_text(statement), params), then)
    if not booked or booked[0][0] is None:
        raise LedgerInvariantError("a guarded posting failed after its floor was checked")


def _book_postgres(conn: sa.Connection, txn: Txn, now_s: float) -> int:
    """Book `txn` on PostgreSQL in one statement (`_book_postgres_sql`); return its id, or
    raise INSUFFICIENT_FUNDS (nothing written) when its guarded posting's floor fails."""
    statement, params = _book_postgres_sql(conn, txn, now_s)
    row = conn.execute(_text(statement), params).first()
    if row is None or row.txn_id is None:
        raise HCardError(Code.INSUFFICIENT_FUNDS)
    txn_id: int = row.txn_id
    return txn_id


@lru_cache(maxsize=8)
def _text(statement: str) -> sa.TextClause:
    """The booking statement of `_book_postgres_sql` (one of a few texts), parsed once."""
    return sa.text(statement)


def _txn_row(txn: Txn, now_s: float) -> dict[str, object]:
    """The `transactions` row of `txn` (its id from the database)."""
    return {
        "kind": str(txn.kind),
        "created_s": now_s,
        "terminal_id": txn.terminal_id,
        "seq": txn.seq,
        "user_id": txn.user_id,
        "reason": txn.reason,
        "label": txn.label,
    }


def _book_postgres_sql(
    conn: sa.Connection, txn: Txn, now_s: float
) -> tuple[str, dict[str, object]]:
    """The one PostgreSQL statement that books `txn`, and its parameters: its accounts
    locked in the one order (`locking.accounts_sql`), the guarded debit, the other postings'
    balance changes, the transaction and its postings, and the new snapshot version of its
    cards (`snapshot.cards_changed_sql`); it returns the transaction's id and the balances
    it left. Every write waits for the locks; every part after the guarded debit runs only
    if the debit's condition held, otherwise nothing is written and no row comes back.
    Some nine round trips as separate statements, while the rows every payment updates (the
    merchant's account, the snapshot version) are held."""
    check_balanced(txn.entries)
    guarded = [entry for entry in txn.entries if entry.floor_cents is not None]
    if len(guarded) > 1:
        raise LedgerInvariantError("at most one guarded posting per call, applied first")
    others = [entry for entry in txn.entries if entry.floor_cents is None]
    touched = sorted(entry.account_id for entry in txn.entries)
    ctes = [locking.accounts_sql(conn, touched, "touched")]
    locked = " AND (SELECT count(*) FROM locked) > 0"
    params: dict[str, object] = {
        "ids": [entry.account_id for entry in others],
        "amounts": [entry.amount_cents for entry in others],
        "all_ids": [entry.account_id for entry in txn.entries],
        "all_amounts": [entry.amount_cents for entry in txn.entries],
        "touched": touched,
        **_txn_row(txn, now_s),
    }
    if guarded:
        params |= {
            "debit_id": guarded[0].account_id,
            "debit_cents": guarded[0].amount_cents,
            "floor_cents": guarded[0].floor_cents,
        }
        ctes.append(
            "debit AS (UPDATE accounts SET balance_cents = balance_cents + :debit_cents"  # noqa: S608 - our names, values bound
            " WHERE id = :debit_id AND balance_cents + :debit_cents >= :floor_cents"
            f"{locked} RETURNING id, balance_cents)"
        )
        debited = " AND EXISTS (SELECT FROM debit)"
        balances = "SELECT id, balance_cents FROM debit UNION ALL "
    else:
        debited, balances = locked, ""
    ctes += [
        "moved AS (UPDATE accounts SET balance_cents = accounts.balance_cents + d.amount"  # noqa: S608 - our names, values bound
        " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:amounts AS BIGINT[])) AS d(id, amount)"
        f" WHERE accounts.id = d.id{debited} RETURNING accounts.id, accounts.balance_cents)",
        "txn AS (INSERT INTO transactions"
        " (kind, created_s, terminal_id, seq, user_id, reason, label)"
        " SELECT :kind, :created_s, :terminal_id, :seq, :user_id, :reason, :label"
        f" WHERE TRUE{debited} RETURNING id)",
        "booked AS (INSERT INTO postings (txn_id, account_id, amount_cents)"
        " SELECT txn.id, p.id, p.amount FROM txn,"
        " unnest(CAST(:all_ids AS BIGINT[]), CAST(:all_amounts AS BIGINT[])) AS p(id, amount))",
        *snapshot.cards_changed_sql(conn, "touched", after="txn"),
    ]
    statement = (
        f"WITH {', '.join(ctes)} "  # noqa: S608 - fixed text, values bound
        f"SELECT (SELECT id FROM txn) AS txn_id, b.id, b.balance_cents"
        f" FROM ({balances}SELECT id, balance_cents FROM moved) AS b"
    )
    return statement, params


#: the most movements one history lists
MAX_HISTORY = 1000


def account_history(conn: sa.Connection, account_id: int, limit: int) -> list[dict[str, object]]:
    """An account's movements, newest first, one row per posting with its transaction: a
    card's history and balance, a merchant's payments. `limit` is kept to 1..MAX_HISTORY."""
    rows = conn.execute(
        sa.select(
            transactions.c.id,
            transactions.c.kind,
            transactions.c.created_s,
            transactions.c.label,
            transactions.c.terminal_id,
            transactions.c.seq,
            postings.c.amount_cents,
        )
        .select_from(postings.join(transactions, transactions.c.id == postings.c.txn_id))
        .where(postings.c.account_id == account_id)
        .order_by(transactions.c.id.desc())
        .limit(max(1, min(limit, MAX_HISTORY)))
    ).mappings()
    return [dict(row) for row in rows]


@dataclass
class CheckReport:
    transactions: int = 0
    postings: int = 0
    accounts: int = 0
    unbalanced_transactions: list[int] = field(default_factory=list)
    wrong_balances: list[dict[str, int]] = field(default_factory=list)
    double_bookings: list[dict[str, int]] = field(default_factory=list)
    total_cents: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.unbalanced_transactions
            or self.wrong_balances
            or self.double_bookings
            or self.total_cents
        )

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "transactions": self.transactions,
            "postings": self.postings,
            "accounts": self.accounts,
            "unbalanced_transactions": self.unbalanced_transactions,
            "wrong_balances": self.wrong_balances,
            "double_bookings": self.double_bookings,
            "total_cents": self.total_cents,
        }


def check(engine: sa.Engine) -> CheckReport:
    """Prove the ledger's invariants over the whole database, in one consistent read.

    One snapshot (`db_engine.snapshot`), not the write lock: on a big database the check
    takes seconds, and the tills book on meanwhile."""
    report = CheckReport()
    with db_engine.snapshot(engine) as conn:
        report.transactions = conn.execute(
            sa.select(sa.func.count()).select_from(transactions)
        ).scalar_one()
        report.postings = conn.execute(
            sa.select(sa.func.count()).select_from(postings)
        ).scalar_one()
        report.accounts = conn.execute(
            sa.select(sa.func.count()).select_from(accounts)
        ).scalar_one()
        sums = (
            sa.select(postings.c.txn_id)
            .group_by(postings.c.txn_id)
            .having(sa.func.sum(postings.c.amount_cents) != 0)
        )
        report.unbalanced_transactions = list(conn.execute(sums).scalars())
        # a transaction without postings moved no money: a tripwire for half-written bookings
        empty = sa.select(transactions.c.id).where(
            ~sa.exists().where(postings.c.txn_id == transactions.c.id)
        )
        report.unbalanced_transactions += list(conn.execute(empty).scalars())
        per_account = (
            sa.select(
                postings.c.account_id, sa.func.sum(postings.c.amount_cents).label("total")
            ).group_by(postings.c.account_id)
        ).subquery()
        wrong = sa.select(
            accounts.c.id, accounts.c.balance_cents, sa.func.coalesce(per_account.c.total, 0)
        ).select_from(accounts.outerjoin(per_account, per_account.c.account_id == accounts.c.id))
        for account_id, stored, summed in conn.execute(wrong):
            if stored != summed:
                report.wrong_balances.append(
                    {
                        "account_id": account_id,
                        "stored_cents": int(stored),
                        "postings_cents": int(summed),  # PostgreSQL sums bigints as numeric
                    }
                )
        twice = (
            sa.select(transactions.c.terminal_id, transactions.c.seq, sa.func.count())
            .where(transactions.c.terminal_id.is_not(None))
            .group_by(transactions.c.terminal_id, transactions.c.seq)
            .having(sa.func.count() > 1)
        )
        report.double_bookings = [
            {"terminal_id": t, "seq": s, "count": n} for t, s, n in conn.execute(twice)
        ]
        report.total_cents = int(
            conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(accounts.c.balance_cents), 0))
            ).scalar_one()
        )
    return report
