"""Settlement runs: what each merchant is owed for a period, booked, paid by SEPA transfer.

A run covers a period of whole days in Europe/Berlin (normally a calendar month) and every
merchant with anything in it. The cut-off is the server's booking time
(`transactions.created_s`), never a till's clock: when the run is created, every merchant
transaction booked before the period's end and not settled by an earlier run is assigned
to it (`settlement_items`), once and for good. An offline payment synced after that falls
into the next run, where it is listed as *late* with the date its till recorded it.

Per merchant (`settlement.rules.payout`): carried in from the last run + payments − voids −
cash taken for till top-ups + returned transfers − the fee = due. Booked at once in the
double-entry ledger, one `settlement` transaction per merchant (`booking.settlement`):
merchant payable → fees (the fee with VAT) and → payouts in transit (the payout). What is
not paid (nothing due, below the minimum, no valid IBAN) stays on the payable account and
is carried forward; a deactivated merchant is paid whatever is due, the minimum aside.

The run's SEPA files are built in the same transaction and stored (`settlement_files`): a
file that does not validate means no run. A run can be cancelled only until its first
file was downloaded; cancelling books the exact reverse and frees its items for the next
run. Runs never overlap; a period cannot be settled twice. Every step records the staff
member who did it. The bank's side (executed, returned) is `services/bank.py`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import multiprocessing
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hcard.errors import Code, HCardError
from hcard.server.context import Context
from hcard.server.db import counters as counter_rows
from hcard.server.db import engine as db_engine
from hcard.server.db import locking
from hcard.server.db.tables import (
    AnyRow,
    accounts,
    journal,
    merchants,
    postings,
    settlement_files,
    settlement_items,
    settlement_lines,
    settlement_runs,
    statement_files,
    terminals,
    transactions,
    users,
)
from hcard.server.services import booking, ledger
from hcard.server.services.users import Staff
from hcard.server.settings import SettlementSettings
from hcard.server.settlement import exports, rules, sepa
from hcard.server.settlement import statement as statements
from hcard.server.vocabulary import (
    OFFICE,
    AccountKind,
    CounterName,
    PayoutOutcome,
    PayoutStatus,
    Role,
    RunStatus,
    TxnKind,
)

LOCAL = ZoneInfo("Europe/Berlin")
_SPAWN = multiprocessing.get_context("spawn")


# --- periods ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Whole days `first` .. `last` (inclusive) in Europe/Berlin."""

    first: dt.date
    last: dt.date

    @classmethod
    def month(cls, text: str) -> Period:
        """`2026-11` → 1 to 30 November 2026."""
        try:
            first = dt.date.fromisoformat(f"{text}-01")
            following = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        except (ValueError, OverflowError):  # not a month, or December 9999
            raise HCardError(Code.PERIOD_INVALID, reason="month as YYYY-MM") from None
        return cls(first, following - dt.timedelta(days=1))

    @classmethod
    def containing(cls, day: dt.date) -> Period:
        """The calendar month `day` is in."""
        return cls.month(f"{day:%Y-%m}")

    def months_later(self, count: int) -> Period:
        """The calendar month `count` months after the one `first` is in (negative: before)."""
        index = self.first.year * 12 + self.first.month - 1 + count
        return Period.month(f"{index // 12:04d}-{index % 12 + 1:02d}")

    @property
    def whole_month(self) -> bool:
        return self.first.day == 1 and self.last == Period.containing(self.first).last

    @property
    def start_s(self) -> float:
        return dt.datetime.combine(self.first, dt.time(), LOCAL).timestamp()

    @property
    def end_s(self) -> float:
        """The cut-off: local midnight after the last day."""
        return dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(), LOCAL).timestamp()

    @property
    def label(self) -> str:
        if self.whole_month:
            return f"{self.first:%m/%Y}"
        return f"{self.first:%d.%m.%Y}–{self.last:%d.%m.%Y}"


def local_day(epoch_s: float) -> dt.date:
    return dt.datetime.fromtimestamp(epoch_s, LOCAL).date()


# --- what a run settles ----------------------------------------------------------------


@dataclass
class _Tally:
    payments_cents: int = 0
    voids_cents: int = 0
    topups_cents: int = 0
    returns_cents: int = 0

    def add(self, kind: str, amount_cents: int) -> None:
        """One posting on the merchant's payable account, by the kind of its transaction."""
        if kind == TxnKind.PAYMENT:
            self.payments_cents += amount_cents
        elif kind == TxnKind.VOID and amount_cents < 0:  # a payment given back
            self.voids_cents -= amount_cents
        elif kind in (TxnKind.TILL_TOPUP, TxnKind.VOID):  # cash for a top-up, or its void
            self.topups_cents -= amount_cents
        elif kind == TxnKind.PAYOUT_RETURN:
            self.returns_cents += amount_cents
        else:
            raise ledger.LedgerInvariantError(f"a {kind} on a merchant's payable account")

    def movements(self) -> rules.Movements:
        return rules.Movements(
            payments_cents=self.payments_cents,
            voids_cents=self.voids_cents,
            topups_cents=self.topups_cents,
            returns_cents=self.returns_cents,
        )


#: transactions on a payable account that a run settles (its own `settlement` never)
_SETTLED_KINDS = (TxnKind.PAYMENT, TxnKind.VOID, TxnKind.TILL_TOPUP, TxnKind.PAYOUT_RETURN)


def _unsettled(end_s: float) -> sa.Select[tuple[int, int]]:
    """(transaction, merchant) of every merchant transaction booked before the cut-off and
    not yet settled: what a run for a period ending at `end_s` takes."""
    return (
        sa.select(transactions.c.id.label("txn_id"), merchants.c.id.label("merchant_id"))
        .select_from(
            transactions.join(postings, postings.c.txn_id == transactions.c.id)
            .join(merchants, merchants.c.account_id == postings.c.account_id)
            .outerjoin(settlement_items, settlement_items.c.txn_id == transactions.c.id)
        )
        .where(
            transactions.c.created_s < end_s,
            transactions.c.kind.in_(_SETTLED_KINDS),
            settlement_items.c.txn_id.is_(None),
        )
    )


def _assign_items(conn: sa.Connection, run_id: int, end_s: float) -> None:
    """Give the run every unsettled merchant transaction booked before the cut-off;
    `settlement_items.txn_id` is the primary key, so never two runs."""
    conn.execute(
        sa.insert(settlement_items).from_select(
            ["txn_id", "merchant_id", "run_id"], _unsettled(end_s).add_columns(sa.literal(run_id))
        )
    )


def _tallies(
    conn: sa.Connection, items: sa.FromClause, *where: sa.ColumnElement[bool]
) -> dict[int, _Tally]:
    """Each merchant's movements in `items` (rows of `txn_id`, `merchant_id`): a run's
    `settlement_items`, or the unsettled transactions a run would take (`_unsettled`)."""
    rows = conn.execute(
        sa.select(
            items.c.merchant_id,
            transactions.c.kind,
            (postings.c.amount_cents < 0).label("negative"),
            sa.func.sum(postings.c.amount_cents),
        )
        .select_from(
            items.join(transactions, transactions.c.id == items.c.txn_id)
            .join(postings, postings.c.txn_id == transactions.c.id)
            .join(
                merchants,
                sa.and_(
                    merchants.c.account_id == postings.c.account_id,
                    merchants.c.id == items.c.merchant_id,
                ),
            )
        )
        .where(*where)
        .group_by(items.c.merchant_id, transactions.c.kind, "negative")
    )
    tallies: dict[int, _Tally] = defaultdict(_Tally)
    for merchant_id, kind, _negative, total in rows:
        tallies[merchant_id].add(kind, int(total))
    return tallies


def _carried_in(conn: sa.Connection) -> dict[int, int]:
    """Each merchant's carry-over from its latest line in a run that was not cancelled."""
    latest = (
        sa.select(sa.func.max(settlement_lines.c.id))
        .select_from(
            settlement_lines.join(
                settlement_runs, settlement_runs.c.id == settlement_lines.c.run_id
            )
        )
        .where(settlement_runs.c.status != RunStatus.CANCELLED)
        .group_by(settlement_lines.c.merchant_id)
    )
    rows = conn.execute(
        sa.select(settlement_lines.c.merchant_id, settlement_lines.c.carry_out_cents).where(
            settlement_lines.c.id.in_(latest)
        )
    )
    return {merchant_id: int(cents) for merchant_id, cents in rows}


def _address(row: AnyRow) -> sepa.Address | None:
    if not (row.street and row.postcode and row.town):
        return None
    return sepa.Address(row.street, row.building_number, row.postcode, row.town, row.country)


def _hold_reason(row: AnyRow) -> str | None:
    if not sepa.iban_ok(row.iban):
        return "IBAN ungültig / IBAN not valid"
    if not (row.holder_name or row.name).strip():
        return "Kontoinhaber fehlt / account holder missing"
    return None


@dataclass(frozen=True)
class _Decision:
    """What a run decides for one merchant (`rules.payout`) and why a payout is held back."""

    merchant: AnyRow
    hold_reason: str | None
    result: rules.Payout

    def figures(self) -> dict[str, object]:
        """The line's figures, as a run stores them and the preview shows them."""
        row, result = self.merchant, self.result
        return {
            "merchant_id": row.id,
            "merchant_name": row.name,
            "holder_name": row.holder_name or row.name,
            "iban": row.iban,
            "carry_in_cents": result.carry_in_cents,
            "payments_cents": result.movements.payments_cents,
            "voids_cents": result.movements.voids_cents,
            "topups_cents": result.movements.topups_cents,
            "returns_cents": result.movements.returns_cents,
            "fee_rate_bp": row.fee_bp,
            "fee_net_cents": result.fee.net_cents,
            "vat_cents": result.fee.vat_cents,
            "payout_cents": result.payout_cents,
            "carry_out_cents": result.carry_out_cents,
            "outcome": result.outcome,
            "hold_reason": (
                self.hold_reason if result.outcome is PayoutOutcome.NO_VALID_IBAN else None
            ),
        }


def _decide(
    conn: sa.Connection, config: SettlementSettings, tallies: dict[int, _Tally]
) -> list[_Decision]:
    """Every merchant with movements or a carry-over, decided by the rules: the one place
    a run's figures come from (`create_run` books them, `preview_run` only shows them).

    The minimum payout waits for more to come; a deactivated merchant takes no more
    payments, so what it is owed is paid out whatever the amount, never carried for ever."""
    carried = _carried_in(conn)
    involved = sorted(set(tallies) | {m for m, cents in carried.items() if cents})
    rows = {
        row.id: row
        for row in conn.execute(sa.select(merchants).where(merchants.c.id.in_(involved)))
    }
    decided = []
    for merchant_id in involved:
        row = rows[merchant_id]
        hold = _hold_reason(row)
        result = rules.payout(
            carried.get(merchant_id, 0),
            tallies.get(merchant_id, _Tally()).movements(),
            rate_bp=row.fee_bp,
            vat_bp=config.vat_bp,
            minimum_cents=config.minimum_payout_cents if row.active else 0,
            iban_valid=hold is None,
        )
        decided.append(_Decision(row, hold, result))
    return decided


# --- the service -----------------------------------------------------------------------


def _check_period(conn: sa.Connection, period: Period, now_s: float) -> None:
    if period.last < period.first:
        raise HCardError(Code.PERIOD_INVALID, reason="last day before first day")
    if period.end_s > now_s:
        raise HCardError(Code.PERIOD_IN_FUTURE, ends=period.last.isoformat())
    clash = conn.execute(
        sa.select(settlement_runs.c.id, settlement_runs.c.first_day, settlement_runs.c.last_day)
        .where(
            settlement_runs.c.status != RunStatus.CANCELLED,
            settlement_runs.c.start_s < period.end_s,
            settlement_runs.c.end_s > period.start_s,
        )
        .limit(1)
    ).first()
    if clash is not None:
        raise HCardError(
            Code.PERIOD_ALREADY_SETTLED,
            run_id=clash.id,
            first_day=clash.first_day,
            last_day=clash.last_day,
        )
    # in order: a run takes every unsettled transaction before its end, so a period before
    # the last run would take nothing of its own and leave a hole that reads as "late"
    last = conn.execute(
        sa.select(settlement_runs.c.id, settlement_runs.c.end_s, settlement_runs.c.last_day)
        .where(settlement_runs.c.status != RunStatus.CANCELLED)
        .order_by(settlement_runs.c.end_s.desc())
        .limit(1)
    ).first()
    if last is not None and period.start_s < last.end_s:
        raise HCardError(Code.PERIOD_OUT_OF_ORDER, run_id=last.id, last_day=last.last_day)


def create_run(
    ctx: Context,
    actor: Staff,
    period: Period,
    *,
    schema: sepa.Schema = sepa.Schema.PAIN_001_001_09,
    execution_after: dt.date | None = None,
) -> dict[str, object]:
    """Settle `period`: assign, compute, book, build the bank files; one transaction."""
    actor.require(*OFFICE)
    config = ctx.settings.settlement
    now_s = ctx.now()
    when = sepa.execution_date(execution_after or local_day(now_s) + dt.timedelta(days=1))
    with db_engine.write(ctx.engine) as conn:
        locking.settlement(conn)  # two runs at once would both pass the overlap check
        _check_period(conn, period, now_s)
        run_id = conn.execute(
            sa.insert(settlement_runs)
            .values(
                first_day=period.first.isoformat(),
                last_day=period.last.isoformat(),
                start_s=period.start_s,
                end_s=period.end_s,
                status=RunStatus.CREATED,
                schema=schema,
                execution_date=when.isoformat(),
                vat_bp=config.vat_bp,
                minimum_payout_cents=config.minimum_payout_cents,
                created_s=now_s,
                created_by=actor.user_id,
            )
            .returning(settlement_runs.c.id)
        ).scalar_one()
        _assign_items(conn, run_id, period.end_s)
        decided = _decide(
            conn, config, _tallies(conn, settlement_items, settlement_items.c.run_id == run_id)
        )
        fees_account = ledger.system_account(conn, AccountKind.FEES)
        transit_account = ledger.system_account(conn, AccountKind.IN_TRANSIT)
        lines: list[dict[str, object]] = []
        txns: list[ledger.Txn] = []
        transfers: list[sepa.Transfer] = []
        for decision in decided:
            row, result = decision.merchant, decision.result
            e2e = sepa.end_to_end_id(run_id, row.id)
            invoice = f"{period.first:%Y}-{counter_rows.next_value(conn, CounterName.INVOICE):06d}"
            paid = result.outcome is PayoutOutcome.TRANSFER
            txn = booking.settlement(
                merchant_account_id=row.account_id,
                fees_account_id=fees_account,
                in_transit_account_id=transit_account,
                fee_cents=result.fee.gross_cents,
                payout_cents=result.payout_cents,
                label=f"Abrechnung {period.label} {row.name}",
                user_id=actor.user_id,
            )
            txn_index = None
            if txn is not None:
                txn_index = len(txns)
                txns.append(txn)
            if paid:
                transfers.append(
                    sepa.Transfer(
                        name=row.holder_name or row.name,
                        iban=row.iban,
                        bic=row.bic,
                        amount_cents=result.payout_cents,
                        end_to_end_id=e2e,
                        description=f"Hattingen Card Abrechnung {period.label} Rg. {invoice}",
                        address=_address(row),
                    )
                )
            lines.append(
                {
                    "run_id": run_id,
                    **decision.figures(),
                    "bic": row.bic,
                    "address": json.dumps(_address_lines(row)),
                    "end_to_end_id": e2e if paid else None,
                    "invoice_number": invoice,
                    "payout_status": PayoutStatus.PENDING if paid else PayoutStatus.NONE,
                    "txn_id": txn_index,  # the index until booked, then the id
                }
            )
        txn_ids = ledger.post_many(conn, txns, now_s=now_s) if txns else []
        for line in lines:
            index = line["txn_id"]
            line["txn_id"] = None if index is None else txn_ids[int(str(index))]
        if lines:
            conn.execute(sa.insert(settlement_lines), lines)
        try:
            files = sepa.build_files(
                config.debtor, transfers, when=when, schema=schema, max_per_file=config.max_per_file
            )
        except sepa.SepaFileInvalidError as error:
            raise HCardError(Code.SEPA_FILE_INVALID, reason=str(error)[:300]) from None
        for number, content in enumerate(files, start=1):
            conn.execute(
                sa.insert(settlement_files).values(run_id=run_id, number=number, content=content)
            )
    return get_run(ctx, actor, run_id)


def preview_run(ctx: Context, actor: Staff, period: Period) -> dict[str, object]:
    """What `create_run` would settle for `period` if it ran now, booked nowhere: the
    figures to check before the run is made (the same rules, `_decide`). Refused like the
    run itself (a period not yet ended, settled already, or out of order)."""
    actor.require(*OFFICE)
    config = ctx.settings.settlement
    with db_engine.read(ctx.engine) as conn:
        _check_period(conn, period, ctx.now())
        decided = _decide(conn, config, _tallies(conn, _unsettled(period.end_s).subquery()))
    lines = [decision.figures() for decision in decided]
    paid = [d.result.payout_cents for d in decided if d.result.outcome is PayoutOutcome.TRANSFER]
    return {
        "first_day": period.first.isoformat(),
        "last_day": period.last.isoformat(),
        "vat_bp": config.vat_bp,
        "minimum_payout_cents": config.minimum_payout_cents,
        "merchants": len(lines),
        "transfers": len(paid),
        "payout_cents": sum(paid),
        "fee_net_cents": sum(d.result.fee.net_cents for d in decided),
        "vat_cents": sum(d.result.fee.vat_cents for d in decided),
        "carry_out_cents": sum(d.result.carry_out_cents for d in decided),
        "lines": lines,
    }


def _address_lines(row: AnyRow) -> list[str]:
    street = f"{row.street} {row.building_number}".strip()
    town = f"{row.postcode} {row.town}".strip()
    lines = [line for line in (street, town) if line]
    return lines or [line for line in row.address.splitlines() if line.strip()]


def _run_json(conn: sa.Connection, run: AnyRow) -> dict[str, object]:
    totals = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(settlement_lines.c.payout_cents), 0),
            sa.func.coalesce(sa.func.sum(settlement_lines.c.fee_net_cents), 0),
            sa.func.coalesce(sa.func.sum(settlement_lines.c.vat_cents), 0),
            sa.func.coalesce(sa.func.sum(settlement_lines.c.carry_out_cents), 0),
            sa.func.count(settlement_lines.c.end_to_end_id),
        ).where(settlement_lines.c.run_id == run.id)
    ).one()
    files = conn.execute(
        sa.select(settlement_files.c.number)
        .where(settlement_files.c.run_id == run.id)
        .order_by(settlement_files.c.number)
    ).scalars()
    done = conn.execute(
        sa.select(sa.func.count())
        .select_from(statement_files.join(settlement_lines))
        .where(settlement_lines.c.run_id == run.id)
    ).scalar_one()
    return {
        "run_id": run.id,
        "first_day": run.first_day,
        "last_day": run.last_day,
        "status": run.status,
        "schema": run.schema,
        "execution_date": run.execution_date,
        "vat_bp": run.vat_bp,
        "minimum_payout_cents": run.minimum_payout_cents,
        "created_s": run.created_s,
        "created_by": run.created_by,
        "downloaded_s": run.downloaded_s,
        "downloaded_by": run.downloaded_by,
        "cancelled_s": run.cancelled_s,
        "cancelled_by": run.cancelled_by,
        "merchants": totals[0],
        "transfers": totals[5],
        "payout_cents": int(totals[1]),
        "fee_net_cents": int(totals[2]),
        "vat_cents": int(totals[3]),
        "carry_out_cents": int(totals[4]),
        "files": list(files),
        "statements_done": int(done),
    }


def _run(conn: sa.Connection, run_id: int) -> AnyRow:
    query = sa.select(settlement_runs).where(settlement_runs.c.id == run_id)
    row = conn.execute(query).first()
    if row is None:
        raise HCardError(Code.NOT_FOUND, what="settlement run")
    return row


def get_run(ctx: Context, actor: Staff, run_id: int) -> dict[str, object]:
    actor.require(*OFFICE)
    with db_engine.read(ctx.engine) as conn:
        run = _run(conn, run_id)
        answer = _run_json(conn, run)
        answer["lines"] = [
            _line_json(row)
            for row in conn.execute(
                sa.select(settlement_lines)
                .where(settlement_lines.c.run_id == run_id)
                .order_by(settlement_lines.c.merchant_id)
            )
        ]
    return answer


def list_runs(ctx: Context, actor: Staff) -> list[dict[str, object]]:
    actor.require(*OFFICE)
    with db_engine.read(ctx.engine) as conn:
        runs = conn.execute(sa.select(settlement_runs).order_by(settlement_runs.c.id.desc()))
        return [_run_json(conn, run) for run in runs.all()]


_LINE_FIELDS = (
    "merchant_id", "merchant_name", "holder_name", "iban", "carry_in_cents", "payments_cents",
    "voids_cents", "topups_cents", "returns_cents", "fee_rate_bp", "fee_net_cents", "vat_cents",
    "payout_cents", "carry_out_cents", "outcome", "hold_reason", "end_to_end_id",
    "invoice_number", "payout_status", "return_reason",
)  # fmt: skip


def _line_json(row: AnyRow) -> dict[str, object]:
    return {name: getattr(row, name) for name in _LINE_FIELDS}


def sepa_file(ctx: Context, actor: Staff, run_id: int, number: int) -> bytes:
    """The run's bank file `number` (from 1), as stored; the first download is recorded, its
    payouts count as sent from then on, and the run can no longer be cancelled. Under the
    settlement lock: a download and a cancellation never both win."""
    actor.require(*OFFICE)
    with db_engine.write(ctx.engine) as conn:
        locking.settlement(conn)
        run = _run(conn, run_id)
        if run.status == RunStatus.CANCELLED:
            raise HCardError(Code.RUN_CANCELLED, run_id=run_id)
        content = conn.execute(
            sa.select(settlement_files.c.content).where(
                settlement_files.c.run_id == run_id, settlement_files.c.number == number
            )
        ).scalar_one_or_none()
        if content is None:
            raise HCardError(Code.NOT_FOUND, what="bank file")
        first = conn.execute(
            sa.update(settlement_runs)
            .where(settlement_runs.c.id == run_id, settlement_runs.c.status == RunStatus.CREATED)
            .values(
                status=RunStatus.DOWNLOADED, downloaded_s=ctx.now(), downloaded_by=actor.user_id
            )
        ).rowcount
        if first:
            conn.execute(
                sa.update(settlement_lines)
                .where(
                    settlement_lines.c.run_id == run_id,
                    settlement_lines.c.payout_status == PayoutStatus.PENDING,
                )
                .values(payout_status=PayoutStatus.SENT)
            )
    return bytes(content)


def cancel_run(ctx: Context, actor: Staff, run_id: int) -> dict[str, object]:
    """Undo a run whose bank file nobody has downloaded: the reverse of every booking, its
    items free for the next run, the run kept (cancelled, by whom, when)."""
    actor.require(*OFFICE)
    now_s = ctx.now()
    with db_engine.write(ctx.engine) as conn:
        locking.settlement(conn)
        run = _run(conn, run_id)
        if run.status != RunStatus.CREATED:
            code = Code.RUN_CANCELLED if run.status == RunStatus.CANCELLED else Code.RUN_DOWNLOADED
            raise HCardError(code, run_id=run_id)
        later = conn.execute(
            sa.select(settlement_runs.c.id).where(
                settlement_runs.c.id > run_id, settlement_runs.c.status != RunStatus.CANCELLED
            )
        ).first()
        if later is not None:  # its carry-overs were computed from this run's
            raise HCardError(Code.RUN_NOT_LAST, run_id=run_id, later_run_id=later.id)
        booked = conn.execute(
            sa.select(settlement_lines.c.txn_id).where(
                settlement_lines.c.run_id == run_id, settlement_lines.c.txn_id.is_not(None)
            )
        ).scalars()
        reversals = [
            booking.reverse(
                [(p.account_id, p.amount_cents) for p in entries],
                label=f"Storno Abrechnung {run.first_day} – {run.last_day}",
                user_id=actor.user_id,
            )
            for entries in _postings_of(conn, list(booked))
        ]
        if reversals:
            ledger.post_many(conn, reversals, now_s=now_s)
        conn.execute(sa.delete(settlement_items).where(settlement_items.c.run_id == run_id))
        conn.execute(
            sa.update(settlement_lines)
            .where(settlement_lines.c.run_id == run_id)
            .values(payout_status=PayoutStatus.CANCELLED)
        )
        conn.execute(
            sa.update(settlement_runs)
            .where(settlement_runs.c.id == run_id, settlement_runs.c.status == RunStatus.CREATED)
            .values(status=RunStatus.CANCELLED, cancelled_s=now_s, cancelled_by=actor.user_id)
        )
    return get_run(ctx, actor, run_id)


def _postings_of(conn: sa.Connection, txn_ids: Sequence[int]) -> list[list[AnyRow]]:
    grouped: dict[int, list[AnyRow]] = defaultdict(list)
    for row in conn.execute(
        sa.select(postings.c.txn_id, postings.c.account_id, postings.c.amount_cents)
        .where(postings.c.txn_id.in_(txn_ids))
        .order_by(postings.c.txn_id, postings.c.id)
    ):
        grouped[row.txn_id].append(row)
    return [grouped[txn_id] for txn_id in txn_ids]


# --- statements ------------------------------------------------------------------------

_ITEM_KIND = {
    TxnKind.PAYMENT: statements.ItemKind.PAYMENT,
    TxnKind.TILL_TOPUP: statements.ItemKind.TILL_TOPUP,
    TxnKind.PAYOUT_RETURN: statements.ItemKind.RETURN,
}


def statement_data(conn: sa.Connection, ctx: Context, line: AnyRow) -> statements.StatementData:
    """Everything the statement of one merchant in one run shows, read in one go."""
    run = _run(conn, line.run_id)
    period = Period(dt.date.fromisoformat(run.first_day), dt.date.fromisoformat(run.last_day))
    rows = conn.execute(
        sa.select(
            transactions.c.kind,
            transactions.c.created_s,
            transactions.c.seq,
            terminals.c.name.label("terminal"),
            journal.c.recorded_s,
            postings.c.amount_cents,
        )
        .select_from(
            settlement_items.join(transactions, transactions.c.id == settlement_items.c.txn_id)
            .join(postings, postings.c.txn_id == transactions.c.id)
            .join(merchants, merchants.c.account_id == postings.c.account_id)
            .outerjoin(terminals, terminals.c.id == transactions.c.terminal_id)
            .outerjoin(
                journal,
                sa.and_(
                    journal.c.terminal_id == transactions.c.terminal_id,
                    journal.c.seq == transactions.c.seq,
                ),
            )
        )
        .where(
            settlement_items.c.run_id == line.run_id,
            settlement_items.c.merchant_id == line.merchant_id,
            merchants.c.id == line.merchant_id,
        )
        .order_by(transactions.c.id)
    )
    items = []
    for row in rows:
        if row.kind == TxnKind.VOID:
            kind = (
                statements.ItemKind.VOID
                if row.amount_cents < 0
                else statements.ItemKind.TILL_TOPUP_VOID
            )
        else:
            kind = _ITEM_KIND[row.kind]
        # late: the till recorded it before the period (synced after the last cut-off);
        # without the till's date (an older till), booked before the period at least
        day = local_day(row.recorded_s if row.recorded_s is not None else row.created_s)
        items.append(
            statements.Item(
                when=dt.datetime.fromtimestamp(row.created_s, LOCAL).replace(tzinfo=None),
                kind=kind,
                label="",
                amount_cents=int(row.amount_cents),
                terminal=row.terminal or "",
                receipt=f"#{row.seq}" if row.seq is not None else "",
                late_recorded=day if day < period.first else None,
            )
        )
    config = ctx.settings.settlement
    notes = []
    if line.payout_status == PayoutStatus.CANCELLED:
        notes.append("STORNIERT: diese Abrechnung gilt nicht / CANCELLED: this statement is void")
    if line.hold_reason:
        notes.append(f"Auszahlung zurückgehalten / payout held back: {line.hold_reason}")
    elif line.outcome == PayoutOutcome.BELOW_MINIMUM:
        notes.append("Unter dem Mindestbetrag: vorgetragen / below the minimum: carried forward")
    elif line.outcome == PayoutOutcome.NOTHING_DUE:
        notes.append("Kein Guthaben: vorgetragen / nothing due: carried forward")
    return statements.StatementData(
        invoice_number=line.invoice_number,
        issued=local_day(run.created_s),
        period_start=period.first,
        period_end=period.last,
        operator=statements.Party(
            config.operator_name,
            list(config.operator_address_lines),
            tax_number=config.operator_tax_number,
            iban=config.debtor.iban,
        ),
        merchant=statements.Party(line.merchant_name, json.loads(line.address), iban=line.iban),
        merchant_id=line.merchant_id,
        items=items,
        payments_cents=line.payments_cents,
        voids_cents=line.voids_cents,
        topups_cents=line.topups_cents,
        returns_cents=line.returns_cents,
        carry_in_cents=line.carry_in_cents,
        fee_rate_bp=line.fee_rate_bp,
        fee_net_cents=line.fee_net_cents,
        vat_bp=run.vat_bp,
        vat_cents=line.vat_cents,
        payout_cents=line.payout_cents,
        carry_out_cents=line.carry_out_cents,
        outcome=line.outcome,
        execution_date=dt.date.fromisoformat(run.execution_date) if line.end_to_end_id else None,
        end_to_end_id=line.end_to_end_id or "",
        notes=notes,
    )


def _line(conn: sa.Connection, actor: Staff, run_id: int, merchant_id: int) -> AnyRow:
    """The statement's line; a cancelled run's is no invoice: a merchant never sees it, the
    office sees it marked cancelled."""
    actor.require_merchant_access(merchant_id)
    line = conn.execute(
        sa.select(settlement_lines).where(
            settlement_lines.c.run_id == run_id, settlement_lines.c.merchant_id == merchant_id
        )
    ).first()
    if line is None or (
        actor.role == Role.MERCHANT and line.payout_status == PayoutStatus.CANCELLED
    ):
        raise HCardError(Code.NOT_FOUND, what="statement")
    return line


def statement_html(ctx: Context, actor: Staff, run_id: int, merchant_id: int) -> str:
    with db_engine.read(ctx.engine) as conn:
        return statements.render_html(
            statement_data(conn, ctx, _line(conn, actor, run_id, merchant_id))
        )


def statement_csv(ctx: Context, actor: Staff, run_id: int, merchant_id: int) -> str:
    with db_engine.read(ctx.engine) as conn:
        data = statement_data(conn, ctx, _line(conn, actor, run_id, merchant_id))
    return statements.render_csv(data)


def statement_pdf(ctx: Context, actor: Staff, run_id: int, merchant_id: int) -> bytes:
    """The stored PDF (made in the background after the run), else made now; a cancelled
    run's is made now, so it carries its STORNIERT mark like the HTML (the stored one was
    made before the run was cancelled)."""
    with db_engine.read(ctx.engine) as conn:
        line = _line(conn, actor, run_id, merchant_id)
        stored = conn.execute(
            sa.select(statement_files.c.pdf).where(statement_files.c.line_id == line.id)
        ).scalar_one_or_none()
        if stored is not None and line.payout_status != PayoutStatus.CANCELLED:
            return bytes(stored)
        data = statement_data(conn, ctx, line)
    return statements.render_pdf(data)


#: the fewest statements a worker is started for (`make_statements`)
STATEMENTS_PER_WORKER = 4


def make_statements(
    ctx: Context,
    run_id: int,
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Render every statement PDF of the run on every core and store them; return how many
    were made now. Safe to run again: statements already stored are skipped."""
    with db_engine.read(ctx.engine) as conn:
        _run(conn, run_id)
        missing = conn.execute(
            sa.select(settlement_lines)
            .outerjoin(statement_files, statement_files.c.line_id == settlement_lines.c.id)
            .where(settlement_lines.c.run_id == run_id, statement_files.c.line_id.is_(None))
            .order_by(settlement_lines.c.id)
        ).all()
        work = [(line.id, statement_data(conn, ctx, line)) for line in missing]
    done = 0
    if not work:
        return 0
    # spawned, not forked: a fork of the threaded server can inherit a lock held by another
    # thread and hang for ever (and with it the server's shutdown); and each worker dies
    # with the server, so a server stopped mid-run leaves none behind. A worker is a new
    # interpreter that imports the server and WeasyPrint (1.6 s) before its first statement
    # (0.7 s each): a few statements are made by fewer workers.
    processes = min(workers or os.cpu_count() or 1, -(-len(work) // STATEMENTS_PER_WORKER))
    with ProcessPoolExecutor(
        max_workers=processes, mp_context=_SPAWN, initializer=statements.die_with_parent
    ) as pool:
        for (line_id, _data), pdf in zip(
            work, pool.map(statements.render_pdf, [data for _, data in work]), strict=True
        ):
            with db_engine.write(ctx.engine) as conn:
                conn.execute(
                    sa.insert(statement_files).values(line_id=line_id, pdf=pdf, created_s=ctx.now())
                )
            done += 1
            if progress is not None:
                progress(done, len(work))
    return done


def payments_last_12_months(ctx: Context, actor: Staff) -> dict[str, object]:
    """The running sum of card payments (less voids) over the last 365 days, against the
    €1 million above which the issuer must notify BaFin (ZAG § 2 (1) no. 10)."""
    actor.require(*OFFICE)
    since_s = ctx.now() - 365 * 86_400
    with db_engine.read(ctx.engine) as conn:
        merchant_postings = (
            sa.select(sa.func.coalesce(sa.func.sum(postings.c.amount_cents), 0))
            .select_from(
                postings.join(transactions, transactions.c.id == postings.c.txn_id).join(
                    merchants, merchants.c.account_id == postings.c.account_id
                )
            )
            .where(transactions.c.created_s >= since_s)
        )
        paid = conn.execute(
            merchant_postings.where(transactions.c.kind == TxnKind.PAYMENT)
        ).scalar_one()
        voided = conn.execute(
            merchant_postings.where(
                transactions.c.kind == TxnKind.VOID, postings.c.amount_cents < 0
            )
        ).scalar_one()
    total = int(paid) + int(voided)
    return {
        "payments_12_months_cents": total,
        "threshold_cents": BAFIN_THRESHOLD_CENTS,
        "share_of_threshold": round(total / BAFIN_THRESHOLD_CENTS, 4),
        "above_threshold": total > BAFIN_THRESHOLD_CENTS,
    }


BAFIN_THRESHOLD_CENTS = 100_000_000  # €1 million


def merchant_statements(ctx: Context, actor: Staff, merchant_id: int) -> list[dict[str, object]]:
    """The runs a merchant was in (merchants: only their own), newest first."""
    actor.require_merchant_access(merchant_id)
    with db_engine.read(ctx.engine) as conn:
        rows = conn.execute(
            sa.select(settlement_lines, settlement_runs.c.first_day, settlement_runs.c.last_day)
            .join(settlement_runs, settlement_runs.c.id == settlement_lines.c.run_id)
            .where(
                settlement_lines.c.merchant_id == merchant_id,
                settlement_runs.c.status != RunStatus.CANCELLED,
            )
            .order_by(settlement_lines.c.run_id.desc())
        )
        return [
            {
                **_line_json(row),
                "run_id": row.run_id,
                "first_day": row.first_day,
                "last_day": row.last_day,
            }
            for row in rows
        ]


# --- exports for the tax adviser -------------------------------------------------------


def _bookings(conn: sa.Connection, period: Period) -> list[exports.Booking]:
    """Every transaction booked in the period with its postings, in booking order."""
    rows = conn.execute(
        sa.select(
            transactions.c.id,
            transactions.c.created_s,
            transactions.c.kind,
            transactions.c.label,
            transactions.c.terminal_id,
            transactions.c.seq,
            transactions.c.reason,
            users.c.username,
            accounts.c.key,
            postings.c.amount_cents,
        )
        .select_from(
            transactions.join(postings, postings.c.txn_id == transactions.c.id)
            .join(accounts, accounts.c.id == postings.c.account_id)
            .outerjoin(users, users.c.id == transactions.c.user_id)
        )
        .where(transactions.c.created_s >= period.start_s, transactions.c.created_s < period.end_s)
        .order_by(transactions.c.id, postings.c.id)
    )
    bookings: list[exports.Booking] = []
    for txn_id, group in itertools.groupby(rows, key=lambda row: row.id):
        entries = list(group)
        first = entries[0]
        bookings.append(
            exports.Booking(
                txn_id=txn_id,
                created_s=first.created_s,
                kind=first.kind,
                label=first.label,
                postings=[exports.Entry(e.key, int(e.amount_cents)) for e in entries],
                terminal_id=first.terminal_id,
                seq=first.seq,
                user=first.username,
                reason=first.reason,
            )
        )
    return bookings


def datev_export(ctx: Context, actor: Staff, period: Period) -> str:
    actor.require(*OFFICE)
    with db_engine.read(ctx.engine) as conn:
        bookings = _bookings(conn, period)
    return exports.datev(
        bookings,
        ctx.settings.settlement.datev,
        period_start=period.first,
        period_end=period.last,
        created=dt.datetime.fromtimestamp(ctx.now(), LOCAL).replace(tzinfo=None),
        fiscal_year_start=period.first.replace(month=1, day=1),
    )


def transactions_export(ctx: Context, actor: Staff, period: Period) -> str:
    actor.require(*OFFICE)
    with db_engine.read(ctx.engine) as conn:
        return exports.plain_csv(_bookings(conn, period))
