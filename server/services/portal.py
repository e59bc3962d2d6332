"""The merchant portal's figures: payments per day, the last payout, the merchant's terminals.

Every function takes the logged-in merchant user and reads only that merchant's rows: the
merchant comes from the user (`Staff.merchant_id`), never from the request, so no URL can
name another merchant. (Statements and master data are the services' own, `settlement.
merchant_statements` and `merchants.get_merchant`, which check the same.)

Payments per day must stay quick for a shop with 12,000 payments a year: one query over
the merchant's own account postings (index on `postings.account_id`) in the month's
booking-time range, summed in SQL per local day (Europe/Berlin; the day boundaries are
computed here, so summer time and both databases agree) and per kind.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from hcard.errors import Code, HCardError
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import (
    merchants,
    postings,
    settlement_lines,
    settlement_runs,
    terminals,
    transactions,
)
from hcard.server.services.settlement import Period
from hcard.server.services.users import Staff
from hcard.server.vocabulary import PayoutOutcome, Role, RunStatus, TxnKind


def merchant_of(actor: Staff) -> int:
    """The merchant whose portal this is: the logged-in merchant user's own, nobody else's."""
    actor.require(Role.MERCHANT)
    if actor.merchant_id is None:
        raise HCardError(Code.FORBIDDEN)
    return actor.merchant_id


@dataclass
class Day:
    """One local day's card payments in the merchant's shops (voids: payments given back)."""

    day: dt.date
    payments: int = 0
    payments_cents: int = 0
    voids: int = 0
    voids_cents: int = 0

    @property
    def net_cents(self) -> int:
        return self.payments_cents - self.voids_cents


def _days(period: Period) -> list[dt.date]:
    count = (period.last - period.first).days + 1
    return [period.first + dt.timedelta(days=n) for n in range(count)]


def payments_per_day(ctx: Context, actor: Staff, period: Period) -> list[Day]:
    """Every day of `period` with the payments and voids booked on it (zeros included)."""
    merchant_id = merchant_of(actor)
    days = _days(period)
    # the index of the local day a booking falls on: each day ends at its local midnight
    day_index = sa.case(
        *((transactions.c.created_s < Period(day, day).end_s, n) for n, day in enumerate(days)),
        else_=len(days) - 1,
    ).label("day_index")
    account = sa.select(merchants.c.account_id).where(merchants.c.id == merchant_id)
    query = (
        sa.select(
            day_index,
            transactions.c.kind,
            sa.func.count(),
            sa.func.sum(postings.c.amount_cents),
        )
        .select_from(postings.join(transactions, transactions.c.id == postings.c.txn_id))
        .where(
            postings.c.account_id == account.scalar_subquery(),
            transactions.c.created_s >= period.start_s,
            transactions.c.created_s < period.end_s,
            # a payment adds to the merchant; a void of a payment takes from it (a void of
            # a till top-up gives the merchant cash back: not a payment)
            sa.or_(
                transactions.c.kind == TxnKind.PAYMENT,
                sa.and_(transactions.c.kind == TxnKind.VOID, postings.c.amount_cents < 0),
            ),
        )
        # by its name: written out twice, PostgreSQL would see two CASEs with other parameters
        .group_by("day_index", transactions.c.kind)
    )
    result = [Day(day) for day in days]
    with db_engine.read(ctx.engine) as conn:
        for index, kind, count, total in conn.execute(query):
            day = result[int(index)]
            if kind == TxnKind.PAYMENT:
                day.payments, day.payments_cents = int(count), int(total)
            else:
                day.voids, day.voids_cents = int(count), -int(total)
    return result


def last_payout(ctx: Context, actor: Staff) -> dict[str, object] | None:
    """The merchant's latest transfer (run not cancelled), with where it stands."""
    merchant_id = merchant_of(actor)
    with db_engine.read(ctx.engine) as conn:
        row = conn.execute(
            sa.select(
                settlement_lines.c.run_id,
                settlement_lines.c.payout_cents,
                settlement_lines.c.payout_status,
                settlement_runs.c.first_day,
                settlement_runs.c.last_day,
                settlement_runs.c.execution_date,
            )
            .join(settlement_runs, settlement_runs.c.id == settlement_lines.c.run_id)
            .where(
                settlement_lines.c.merchant_id == merchant_id,
                settlement_lines.c.outcome == PayoutOutcome.TRANSFER,
                settlement_runs.c.status != RunStatus.CANCELLED,
            )
            .order_by(settlement_lines.c.run_id.desc())
            .limit(1)
        ).first()
    return None if row is None else dict(row._mapping)


def terminals_of(ctx: Context, actor: Staff) -> list[dict[str, object]]:
    """The merchant's tills: status and what each said of itself when it last called."""
    merchant_id = merchant_of(actor)
    with db_engine.read(ctx.engine) as conn:
        rows = conn.execute(
            sa.select(
                terminals.c.id,
                terminals.c.name,
                terminals.c.status,
                terminals.c.last_seen_s,
                terminals.c.software_version,
                terminals.c.records_waiting,
            )
            .where(terminals.c.merchant_id == merchant_id)
            .order_by(terminals.c.id)
        ).mappings()
        return [dict(row) for row in rows]
