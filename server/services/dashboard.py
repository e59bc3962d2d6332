"""The office's overview: money on cards, what came in and went out per day and week, the
12-month payment volume against the BaFin line, and what needs a look.

A town's year is millions of payments, and the overview must answer in a few milliseconds.
So a closed day is added up once and kept in `daily_totals` (day = the local date in
Europe/Berlin, `TxnTotal` kind, count, amount). A day row, once written, is final: every
booking carries the server's clock at booking time, so nothing is ever booked into a past
day (an offline payment synced late is booked today). A day counts as closed once
`CLOSE_MARGIN_S` have passed after its local midnight, so a booking whose transaction was
still committing at midnight is not missed; until then it is summed live like today (one
index range on `transactions.created_s`).

Rows are written for every closed day of the window, zeros included, so a quiet day is
summed once too. Missing days are filled when the overview asks (at most the 365 days it
shows) and by `fill_daily_totals`, which the nightly float-check timer can call.

What a day's figures are (the card's side of each transaction):

- `topup`: office top-ups (cash, online, the bank's statement) and cash taken at a till for
  the card, less till top-ups voided that day;
- `payment`: payments, less payments voided that day. Count and amount are both net of
  voids, as `settlement.payments_last_12_months` counts the BaFin volume: a day's net figure
  can only go below zero on a day with more voids than payments, which the charts draw as
  zero.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import (
    accounts,
    alerts,
    bank_statements,
    cards,
    daily_totals,
    merchants,
    postings,
    terminals,
    transactions,
)
from hcard.server.services import terminals as terminal_service
from hcard.server.services.settlement import BAFIN_THRESHOLD_CENTS, Period, local_day
from hcard.server.services.users import Staff
from hcard.server.vocabulary import OFFICE, AccountKind, TerminalStatus, TxnKind, TxnTotal

#: how long after local midnight a day counts as closed (bookings in flight have committed)
CLOSE_MARGIN_S = 600
#: the 12 months of the BaFin line: the 365 local days ending today
WINDOW_DAYS = 365
CHART_DAYS = 30
CHART_WEEKS = 12
#: the most terminals the overview lists by name
MAX_TERMINALS_LISTED = 20

_COUNTED_KINDS = (TxnKind.TOPUP, TxnKind.TILL_TOPUP, TxnKind.PAYMENT, TxnKind.VOID)


@dataclass(frozen=True)
class DayTotal:
    """Top-ups and payments (net of voids) of one day, or of the week starting that day."""

    day: dt.date
    topup_count: int = 0
    topup_cents: int = 0
    payment_count: int = 0
    payment_cents: int = 0

    def plus(self, other: DayTotal) -> DayTotal:
        """The sum of both, dated as this one (a week adds its days up)."""
        return DayTotal(
            self.day,
            self.topup_count + other.topup_count,
            self.topup_cents + other.topup_cents,
            self.payment_count + other.payment_count,
            self.payment_cents + other.payment_cents,
        )


@dataclass(frozen=True)
class TerminalAttention:
    """An active till that has not called for a day, or that says it has records to send."""

    id: int
    name: str
    merchant_id: int
    merchant_name: str
    last_seen_s: float | None
    records_waiting: int | None
    silent: bool


@dataclass(frozen=True)
class LastStatement:
    statement_id: str
    closing_date: str | None
    closing_balance_cents: int


@dataclass(frozen=True)
class Overview:
    today: dt.date
    #: the liability: what the cardholders can spend
    cards_cents: int
    #: payments not yet paid out to merchants (their payable accounts)
    merchants_cents: int
    active_cards: int
    active_merchants: int
    active_terminals: int
    terminals: list[TerminalAttention]
    terminals_total: int
    open_alerts: int
    days: list[DayTotal]
    weeks: list[DayTotal]
    payments_12_months_cents: int
    threshold_cents: int
    last_statement: LastStatement | None

    @property
    def share_of_threshold(self) -> float:
        return self.payments_12_months_cents / self.threshold_cents


# --- day totals ----------------------------------------------------------------------------


def _sum_between(conn: sa.Connection, start_s: float, end_s: float, day: dt.date) -> DayTotal:
    """Top-ups and payments booked in [start_s, end_s), from each transaction's card posting."""
    credit = postings.c.amount_cents > 0
    rows = conn.execute(
        sa.select(
            transactions.c.kind,
            credit.label("credit"),
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(postings.c.amount_cents), 0),
        )
        .select_from(
            transactions.join(postings, postings.c.txn_id == transactions.c.id).join(
                accounts, accounts.c.id == postings.c.account_id
            )
        )
        .where(
            transactions.c.created_s >= start_s,
            transactions.c.created_s < end_s,
            transactions.c.kind.in_(_COUNTED_KINDS),
            accounts.c.kind == AccountKind.CARD,
        )
        .group_by(transactions.c.kind, credit)
    )
    topup_count = topup_cents = payment_count = payment_cents = 0
    for kind, is_credit, count, cents in rows:
        count, cents = int(count), int(cents)
        if kind in (TxnKind.TOPUP, TxnKind.TILL_TOPUP) and is_credit:
            topup_count, topup_cents = topup_count + count, topup_cents + cents
        elif kind == TxnKind.PAYMENT and not is_credit:
            payment_count, payment_cents = payment_count + count, payment_cents - cents
        elif kind == TxnKind.VOID and is_credit:  # a payment given back to the card
            payment_count, payment_cents = payment_count - count, payment_cents - cents
        elif kind == TxnKind.VOID:  # a till top-up taken back off the card
            topup_count, topup_cents = topup_count - count, topup_cents + cents
    return DayTotal(day, topup_count, topup_cents, payment_count, payment_cents)


def _sum_day(conn: sa.Connection, day: dt.date) -> DayTotal:
    period = Period(day, day)
    return _sum_between(conn, period.start_s, period.end_s, day)


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def _last_closed_day(now_s: float) -> dt.date:
    """The newest day whose totals are final."""
    return local_day(now_s - CLOSE_MARGIN_S) - dt.timedelta(days=1)


def _insert_ignoring_present(conn: sa.Connection) -> sa.Insert:
    """INSERT … ON CONFLICT DO NOTHING: two overviews filling the same day write it once."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(daily_totals).on_conflict_do_nothing()
    return sqlite.insert(daily_totals).on_conflict_do_nothing()


def _fill(ctx: Context, first: dt.date, last: dt.date) -> int:
    """Sum and store every closed day in first..last without a row yet; how many days."""
    with db_engine.read(ctx.engine) as conn:
        present = set(
            conn.execute(
                sa.select(daily_totals.c.day)
                .where(daily_totals.c.day.between(first.isoformat(), last.isoformat()))
                .distinct()
            ).scalars()
        )
        missing = [day for day in _days(first, last) if day.isoformat() not in present]
        if not missing:
            return 0
        sums = [_sum_day(conn, day) for day in missing]
    rows = [row for total in sums for row in _rows_of(total)]
    with db_engine.write(ctx.engine) as conn:
        conn.execute(_insert_ignoring_present(conn), rows)
    return len(missing)


def _rows_of(total: DayTotal) -> list[dict[str, object]]:
    day = total.day.isoformat()
    return [
        {
            "day": day,
            "kind": TxnTotal.TOPUP,
            "count": total.topup_count,
            "amount_cents": total.topup_cents,
        },
        {
            "day": day,
            "kind": TxnTotal.PAYMENT,
            "count": total.payment_count,
            "amount_cents": total.payment_cents,
        },
    ]


def fill_daily_totals(ctx: Context) -> int:
    """Store the totals of every closed day of the last 12 months not stored yet; the number
    of days written. For the nightly timer (after midnight, before the office opens), so the
    first overview of the day finds every closed day already summed."""
    now_s = ctx.now()
    last = _last_closed_day(now_s)
    return _fill(ctx, local_day(now_s) - dt.timedelta(days=WINDOW_DAYS - 1), last)


def _stored(conn: sa.Connection, first: dt.date, last: dt.date) -> dict[dt.date, DayTotal]:
    rows = conn.execute(
        sa.select(
            daily_totals.c.day,
            daily_totals.c.kind,
            daily_totals.c.count,
            daily_totals.c.amount_cents,
        ).where(daily_totals.c.day.between(first.isoformat(), last.isoformat()))
    )
    found: dict[dt.date, DayTotal] = {}
    for day_text, kind, count, cents in rows:
        day = dt.date.fromisoformat(day_text)
        if kind == TxnTotal.TOPUP:
            part = DayTotal(day, topup_count=int(count), topup_cents=int(cents))
        else:
            part = DayTotal(day, payment_count=int(count), payment_cents=int(cents))
        found[day] = found.get(day, DayTotal(day)).plus(part)
    return found


def _day_totals(ctx: Context, now_s: float) -> list[DayTotal]:
    """The last 365 days, oldest first, today last (so far): closed days from `daily_totals`
    (missing ones summed and stored first), the open ones live."""
    today = local_day(now_s)
    first = today - dt.timedelta(days=WINDOW_DAYS - 1)
    last_closed = _last_closed_day(now_s)
    _fill(ctx, first, last_closed)
    with db_engine.read(ctx.engine) as conn:
        stored = _stored(conn, first, last_closed)
        live = [_sum_day(conn, day) for day in _days(last_closed + dt.timedelta(days=1), today)]
    closed = [stored.get(day, DayTotal(day)) for day in _days(first, last_closed)]
    return closed + live


def weekly(days: Sequence[DayTotal], weeks: int) -> list[DayTotal]:
    """The last `weeks` weeks (Monday to Sunday, the current one so far), each dated by its
    Monday; `days` must reach back far enough."""
    last_monday = days[-1].day - dt.timedelta(days=days[-1].day.weekday())
    mondays = [last_monday - dt.timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    totals = {monday: DayTotal(monday) for monday in mondays}
    for total in days:
        monday = total.day - dt.timedelta(days=total.day.weekday())
        if monday in totals:
            totals[monday] = totals[monday].plus(total)
    return [totals[monday] for monday in mondays]


def _sum_payments(days: Iterable[DayTotal]) -> int:
    return sum(total.payment_cents for total in days)


# --- the rest of the overview --------------------------------------------------------------


def _balances(conn: sa.Connection) -> dict[str, int]:
    rows = conn.execute(
        sa.select(accounts.c.kind, sa.func.coalesce(sa.func.sum(accounts.c.balance_cents), 0))
        .where(accounts.c.kind.in_((AccountKind.CARD, AccountKind.MERCHANT)))
        .group_by(accounts.c.kind)
    )
    return {str(kind): int(total) for kind, total in rows}


def _count(conn: sa.Connection, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    return int(
        conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
    )


def _terminals(conn: sa.Connection, now_s: float) -> tuple[list[TerminalAttention], int]:
    """Active terminals silent for a day (`terminals.silent`) or with records waiting; the
    longest silent first."""
    silent = terminal_service.silent(now_s)
    needs_look = sa.and_(
        terminals.c.status == TerminalStatus.ACTIVE,
        sa.or_(silent, terminals.c.records_waiting > 0),
    )
    total = _count(conn, terminals, needs_look)
    rows = conn.execute(
        sa.select(
            terminals.c.id,
            terminals.c.name,
            terminals.c.merchant_id,
            merchants.c.name.label("merchant_name"),
            terminals.c.last_seen_s,
            terminals.c.records_waiting,
            silent.label("silent"),
        )
        .select_from(terminals.join(merchants, merchants.c.id == terminals.c.merchant_id))
        .where(needs_look)
        .order_by(terminal_service.last_heard(), terminals.c.id)
        .limit(MAX_TERMINALS_LISTED)
    )
    listed = [
        TerminalAttention(
            id=int(row.id),
            name=row.name,
            merchant_id=int(row.merchant_id),
            merchant_name=row.merchant_name,
            last_seen_s=row.last_seen_s,
            records_waiting=row.records_waiting,
            silent=bool(row.silent),
        )
        for row in rows
    ]
    return listed, total


def _last_statement(conn: sa.Connection) -> LastStatement | None:
    """The bank statement the float check compares with (the newest with a closing balance)."""
    row = conn.execute(
        sa.select(
            bank_statements.c.statement_id,
            bank_statements.c.closing_date,
            bank_statements.c.closing_balance_cents,
        )
        .where(bank_statements.c.closing_balance_cents.is_not(None))
        .order_by(bank_statements.c.closing_date.desc(), bank_statements.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return LastStatement(row.statement_id, row.closing_date, int(row.closing_balance_cents))


def overview(ctx: Context, actor: Staff) -> Overview:
    """Everything the office's first page shows, in a few small queries."""
    actor.require(*OFFICE)
    now_s = ctx.now()
    days = _day_totals(ctx, now_s)
    with db_engine.read(ctx.engine) as conn:
        balances = _balances(conn)
        listed, total = _terminals(conn, now_s)
        active_cards = _count(
            conn,
            cards,
            cards.c.uid.is_not(None),
            cards.c.blocked == sa.false(),
            cards.c.flagged == sa.false(),
        )
        active_merchants = _count(conn, merchants, merchants.c.active == sa.true())
        active_terminals = _count(conn, terminals, terminals.c.status == TerminalStatus.ACTIVE)
        open_alerts = _count(conn, alerts, alerts.c.handled_s.is_(None))
        statement = _last_statement(conn)
    return Overview(
        today=days[-1].day,
        cards_cents=balances.get(AccountKind.CARD, 0),
        merchants_cents=balances.get(AccountKind.MERCHANT, 0),
        active_cards=active_cards,
        active_merchants=active_merchants,
        active_terminals=active_terminals,
        terminals=listed,
        terminals_total=total,
        open_alerts=open_alerts,
        days=days[-CHART_DAYS:],
        weeks=weekly(days, CHART_WEEKS),
        payments_12_months_cents=_sum_payments(days),
        threshold_cents=BAFIN_THRESHOLD_CENTS,
        last_statement=statement,
    )
