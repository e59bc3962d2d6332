"""The bank's side: statements imported, each line matched and booked once; the float check.

Importing a camt.053/054 statement (`import_statement`) matches each line, and books it:

| line | matched by | booked |
|---|---|---|
| a payout executed (debit) | its EndToEndId, the same amount | in transit → bank |
| a payout returned (credit with a reason code) | its EndToEndId | → the merchant, alerted |
| a transfer naming a card ("HC 9276 …") | the card number in the text | bank → the card |
| … naming a replaced card | the card that replaced it | bank → the new card |
| the office's till cash paid in | the bank's cash deposit code | cash → bank |
| anything else (a blocked or flagged card too) | nothing | kept for a person, never guessed |

A return comes out of payouts in transit, or out of the bank when the bank had executed it
first. Every line has a stable key (`settlement.camt.Line.key`): importing the same statement again
books nothing twice. A statement of another account is refused whole, and so is one with a
line that matches two payouts (nothing is booked then). Every import records who did it.

The float check (`float_check`) is the promise that the cardholders' money is there: the
bank account's closing balance on the last statement equals what the ledger says the bank
holds, which is everything the operator owes (money on cards, merchant payables, payouts in
transit, fees not yet taken out) less what is still in the office's cash box. Each
difference is named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import sqlalchemy as sa

from hcard import cardnumber
from hcard.errors import Code, HCardError
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db import locking
from hcard.server.db.tables import (
    AnyRow,
    accounts,
    bank_lines,
    bank_statements,
    cards,
    merchants,
    postings,
    settlement_lines,
)
from hcard.server.services import alerts, booking, ledger
from hcard.server.services import cards as cards_service
from hcard.server.services.users import Staff
from hcard.server.settlement import camt
from hcard.server.vocabulary import (
    OFFICE,
    AccountKind,
    AlertKind,
    LineMatch,
    PayoutStatus,
    TopupSource,
)

#: "HC 9276 0000 0000 0018" (spaces or not) in a transfer's text names the card to top up
_CARD_REFERENCE = re.compile(r"\bHC\s*((?:\d\s*){16})\b", re.IGNORECASE)
#: a payout's EndToEndId written into the text where the bank dropped the reference
_PAYOUT_REFERENCE = re.compile(r"\bHC-R\d+-M\d+\b")
_CASH_DEPOSIT_CODES = ("/CNTR/CDPT", "+082")
#: more replacements of one card in a row than anyone makes: a loop in the data ends here
_MAX_REPLACEMENTS = 100
_LIVE_COLUMNS = (
    cards.c.number,
    cards.c.account_id,
    cards.c.uid,
    cards.c.blocked,
    cards.c.flagged,
    cards.c.replaced_by,
)


def _card_in(text: str) -> str | None:
    for match in _CARD_REFERENCE.finditer(text):
        number = re.sub(r"\s", "", match.group(1))
        if cardnumber.is_valid(number):
            return number
    return None


def _live_card(conn: sa.Connection, number: str) -> AnyRow | None:
    """The card a transfer naming `number` tops up: that card, or the card that replaced it
    (and the one that replaced that): the cardholder may still quote an old card.

    None when there is no such card, or the card at the end is not written yet, blocked or
    flagged by the server: the line then waits for a person (`assign_to_card`), and money
    never goes by itself onto a card the tills refuse."""
    card = conn.execute(sa.select(*_LIVE_COLUMNS).where(cards.c.number == number)).first()
    for _hop in range(_MAX_REPLACEMENTS):
        if card is None or card.replaced_by is None:
            break
        card = conn.execute(sa.select(*_LIVE_COLUMNS).where(cards.c.id == card.replaced_by)).first()
    if card is None or card.replaced_by is not None or card.uid is None:
        return None
    return None if card.blocked or card.flagged else card


def _payout_ids(line: camt.Line) -> list[str]:
    if line.end_to_end_id:
        return [line.end_to_end_id]
    return sorted(set(_PAYOUT_REFERENCE.findall(line.remittance)))


@dataclass
class ImportReport:
    statement_id: str
    #: the statement's row (`bank_statements.id`): its lines are `statement_lines(row)`
    statement_row: int = 0
    lines: int = 0
    already_imported: int = 0
    booked: dict[str, int] = field(default_factory=dict)
    unmatched: list[dict[str, object]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "statement_id": self.statement_id,
            "statement_row": self.statement_row,
            "lines": self.lines,
            "already_imported": self.already_imported,
            "booked": self.booked,
            "unmatched": self.unmatched,
        }


def import_statement(ctx: Context, actor: Staff, data: bytes) -> dict[str, object]:
    """Import one camt.053/054 file; see the module's table. One transaction."""
    actor.require(*OFFICE)
    try:
        parsed = camt.parse(data)
    except camt.StatementInvalidError as error:
        raise HCardError(Code.STATEMENT_INVALID, reason=str(error)[:200]) from None
    operator_iban = ctx.settings.settlement.operator_iban
    if parsed.iban != operator_iban:
        raise HCardError(Code.STATEMENT_OTHER_ACCOUNT, iban=parsed.iban)
    report = ImportReport(statement_id=parsed.statement_id, lines=len(parsed.lines))
    now_s = ctx.now()
    with db_engine.write(ctx.engine) as conn:
        locking.settlement(conn)  # one import at a time: a payout is matched once
        statement_row = report.statement_row = _statement_row(conn, parsed, actor, now_s)
        known = set(
            conn.execute(
                sa.select(bank_lines.c.key).where(
                    bank_lines.c.key.in_([line.key for line in parsed.lines])
                )
            ).scalars()
        )
        report.already_imported = len(known)
        fresh = [line for line in parsed.lines if line.key not in known]
        for line in fresh:
            if len(_payout_ids(line)) > 1:
                raise HCardError(Code.STATEMENT_AMBIGUOUS, line=line.remittance[:100])
        rows: list[dict[str, object]] = []
        txns: list[ledger.Txn] = []
        for line in fresh:
            match, txn, line_id, card = _match(conn, ctx, actor, line)
            report.booked[match] = report.booked.get(match, 0) + 1
            if match == LineMatch.UNMATCHED:
                report.unmatched.append(_line_json(line))
            rows.append(
                {
                    "key": line.key,
                    "statement_row": statement_row,
                    "booking_date": line.booking_date.isoformat() if line.booking_date else None,
                    "amount_cents": line.signed_cents,
                    "end_to_end_id": line.end_to_end_id,
                    "remittance": line.remittance[:2000],
                    "counterparty": line.counterparty[:140],
                    "return_reason": line.return_reason,
                    "bank_code": line.bank_code[:40],
                    "match": match,
                    "txn_id": None if txn is None else len(txns),  # index until booked
                    "line_id": line_id,
                    "card_number": card,
                }
            )
            if txn is not None:
                txns.append(txn)
        # one booking for the whole statement: the ledger locks its accounts once, in order
        txn_ids = ledger.post_many(conn, txns, now_s=now_s) if txns else []
        for row in rows:
            index = row["txn_id"]
            row["txn_id"] = None if index is None else txn_ids[int(str(index))]
        if rows:
            conn.execute(sa.insert(bank_lines), rows)
    return report.as_json()


def _statement_row(conn: sa.Connection, parsed: camt.Statement, actor: Staff, now_s: float) -> int:
    existing = conn.execute(
        sa.select(bank_statements.c.id).where(
            bank_statements.c.iban == parsed.iban,
            bank_statements.c.message == parsed.message,
            bank_statements.c.statement_id == parsed.statement_id,
        )
    ).scalar_one_or_none()
    if existing is not None:
        return int(existing)
    return int(
        conn.execute(
            sa.insert(bank_statements)
            .values(
                message=parsed.message,
                statement_id=parsed.statement_id,
                iban=parsed.iban,
                closing_balance_cents=parsed.closing_balance_cents,
                closing_date=parsed.closing_date.isoformat() if parsed.closing_date else None,
                imported_s=now_s,
                imported_by=actor.user_id,
            )
            .returning(bank_statements.c.id)
        ).scalar_one()
    )


def _line_json(line: camt.Line) -> dict[str, object]:
    return {
        "amount_cents": line.signed_cents,
        "booking_date": line.booking_date.isoformat() if line.booking_date else None,
        "end_to_end_id": line.end_to_end_id,
        "remittance": line.remittance,
        "counterparty": line.counterparty,
    }


def _payout(conn: sa.Connection, end_to_end_id: str) -> AnyRow | None:
    return conn.execute(
        sa.select(settlement_lines, merchants.c.account_id)
        .join(merchants, merchants.c.id == settlement_lines.c.merchant_id)
        .where(settlement_lines.c.end_to_end_id == end_to_end_id)
    ).first()


def _match(
    conn: sa.Connection, ctx: Context, actor: Staff, line: camt.Line
) -> tuple[LineMatch, ledger.Txn | None, int | None, str | None]:
    """(what the line is, the transaction to book, its payout line, its card)."""
    bank = ledger.system_account(conn, AccountKind.BANK)
    ids = _payout_ids(line)
    payout = _payout(conn, ids[0]) if ids else None
    if payout is not None and not line.credit and not line.reversal:
        # only a payout whose file was downloaded can have left the bank
        if payout.payout_status != PayoutStatus.SENT or payout.payout_cents != line.amount_cents:
            return LineMatch.UNMATCHED, None, None, None
        txn = booking.payout_executed(
            ledger.system_account(conn, AccountKind.IN_TRANSIT),
            bank,
            line.amount_cents,
            f"Auszahlung {payout.end_to_end_id} {payout.merchant_name}",
            actor.user_id,
        )
        _set_status(conn, payout.id, PayoutStatus.EXECUTED)
        return LineMatch.PAYOUT_EXECUTED, txn, payout.id, None
    if payout is not None and line.credit and (line.return_reason or line.reversal):
        if payout.payout_status not in (PayoutStatus.SENT, PayoutStatus.EXECUTED) or (
            payout.payout_cents != line.amount_cents
        ):
            return LineMatch.UNMATCHED, None, None, None
        source = (
            bank
            if payout.payout_status == PayoutStatus.EXECUTED
            else ledger.system_account(conn, AccountKind.IN_TRANSIT)
        )
        reason = line.return_reason or "reversal"
        txn = booking.payout_returned(
            source,
            payout.account_id,
            line.amount_cents,
            f"Rücküberweisung {payout.end_to_end_id} {payout.merchant_name}",
            actor.user_id,
            reason,
        )
        _set_status(conn, payout.id, PayoutStatus.RETURNED, return_reason=reason)
        alerts.record(
            conn,
            ctx,
            AlertKind.PAYOUT_RETURNED,
            f"payout {payout.end_to_end_id} of {payout.payout_cents} cents to merchant "
            f"{payout.merchant_id} returned: {reason}",
        )
        return LineMatch.PAYOUT_RETURNED, txn, payout.id, None
    if line.credit and not line.reversal:
        number = _card_in(line.remittance)
        card = None if number is None else _live_card(conn, number)
        if card is not None:
            txn = booking.topup(
                TopupSource.BANK, bank, card.account_id, line.amount_cents, actor.user_id
            )
            return LineMatch.CARD_TOPUP, txn, None, card.number
        if any(line.bank_code.endswith(code) for code in _CASH_DEPOSIT_CODES):
            txn = booking.cash_deposit(
                ledger.system_account(conn, AccountKind.CASH),
                bank,
                line.amount_cents,
                actor.user_id,
            )
            return LineMatch.CASH_DEPOSIT, txn, None, None
    return LineMatch.UNMATCHED, None, None, None


def _set_status(
    conn: sa.Connection, line_id: int, status: PayoutStatus, return_reason: str | None = None
) -> None:
    """Move a payout on; only from the states it can come from (sent → executed, sent or
    executed → returned), or the import fails whole."""
    values: dict[str, object] = {"payout_status": status}
    if return_reason is not None:
        values["return_reason"] = return_reason
    before = (
        (PayoutStatus.SENT,)
        if status == PayoutStatus.EXECUTED
        else (PayoutStatus.SENT, PayoutStatus.EXECUTED)
    )
    moved = conn.execute(
        sa.update(settlement_lines)
        .where(settlement_lines.c.id == line_id, settlement_lines.c.payout_status.in_(before))
        .values(values)
    ).rowcount
    if moved != 1:
        raise ledger.LedgerInvariantError(f"payout {line_id} is not {before} any more")


def unmatched_lines(ctx: Context, actor: Staff) -> list[dict[str, object]]:
    """The statement lines a person must look at, newest first."""
    actor.require(*OFFICE)
    with db_engine.read(ctx.engine) as conn:
        rows = conn.execute(
            sa.select(bank_lines)
            .where(bank_lines.c.match == LineMatch.UNMATCHED)
            .order_by(bank_lines.c.booking_date.desc(), bank_lines.c.key)
        ).mappings()
        return [dict(row) for row in rows]


def statement_lines(ctx: Context, actor: Staff, statement_row: int) -> list[dict[str, object]]:
    """The lines booked from one imported statement, each with what it was found to be and,
    for a payout, whose (what the office reads after an import)."""
    actor.require(*OFFICE)
    with db_engine.read(ctx.engine) as conn:
        rows = conn.execute(
            sa.select(
                bank_lines,
                settlement_lines.c.merchant_name,
                settlement_lines.c.run_id,
            )
            .outerjoin(settlement_lines, settlement_lines.c.id == bank_lines.c.line_id)
            .where(bank_lines.c.statement_row == statement_row)
            .order_by(bank_lines.c.booking_date, bank_lines.c.key)
        ).mappings()
        return [dict(row) for row in rows]


# --- the float check -------------------------------------------------------------------


class Difference(StrEnum):
    """What the float check found wrong (`differences[].name`)."""

    NO_STATEMENT = "no_statement"
    BANK_BALANCE = "bank_balance"
    IN_TRANSIT = "in_transit"
    UNMATCHED_OUTFLOW = "unmatched_outflow"
    LEDGER = "ledger"


@dataclass
class FloatReport:
    statement_id: str | None
    closing_date: str | None
    bank_closing_cents: int | None
    ledger_bank_cents: int  # what the ledger says the bank held on the statement's day
    owed_cents: dict[str, int]  # cards, merchants, in transit, fees
    cash_on_hand_cents: int  # the office's till cash not yet paid in
    other_cents: int  # correction and bonus pool accounts
    #: money in the bank from statement lines nobody has booked yet (to look at, no breach)
    unmatched_in_cents: int
    differences: list[dict[str, object]]
    ledger_ok: bool

    @property
    def ok(self) -> bool:
        return self.ledger_ok and not self.differences and self.bank_closing_cents is not None

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "statement_id": self.statement_id,
            "closing_date": self.closing_date,
            "bank_closing_cents": self.bank_closing_cents,
            "ledger_bank_cents": self.ledger_bank_cents,
            "owed_cents": self.owed_cents,
            "owed_total_cents": sum(self.owed_cents.values()),
            "cash_on_hand_cents": self.cash_on_hand_cents,
            "other_cents": self.other_cents,
            "unmatched_in_cents": self.unmatched_in_cents,
            "differences": self.differences,
            "ledger_ok": self.ledger_ok,
        }


def _balances(conn: sa.Connection) -> dict[str, int]:
    rows = conn.execute(
        sa.select(
            accounts.c.kind, sa.func.coalesce(sa.func.sum(accounts.c.balance_cents), 0)
        ).group_by(accounts.c.kind)
    )
    return {str(kind): int(total) for kind, total in rows}


def float_check(ctx: Context, actor: Staff | None) -> dict[str, object]:
    """Compare the last statement's closing balance with the ledger; name each difference.

    - `bank_balance`: the statement's closing balance is not what the ledger's bank account
      says (a posting missing or wrong, or a line not yet imported or still unmatched).
    - `in_transit`: payouts in transit on the ledger are not the payouts sent and neither
      executed nor returned.
    - `unmatched_outflow`: money left the bank on lines nobody has booked (a person must
      find out why). Money that came in on such lines is listed (`unmatched_in_cents`),
      not a difference: the bank then holds more than is owed.
    - `ledger`: the ledger's own check fails (`ledger check`).
    `actor` None: the daily check run by the server itself (`hcard-server settle float-check`).
    """
    if actor is not None:
        actor.require(*OFFICE)
    report = ledger.check(ctx.engine)
    with db_engine.read(ctx.engine) as conn:
        balances = _balances(conn)
        last = conn.execute(
            sa.select(bank_statements)
            .where(bank_statements.c.closing_balance_cents.is_not(None))
            .order_by(bank_statements.c.closing_date.desc(), bank_statements.c.id.desc())
            .limit(1)
        ).first()
        sent = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(settlement_lines.c.payout_cents), 0)).where(
                settlement_lines.c.payout_status.in_((PayoutStatus.PENDING, PayoutStatus.SENT))
            )
        ).scalar_one()
        # bookings from statement lines dated after the last closing balance (a camt.054
        # of today) are not in that balance yet
        after = "9999-12-31" if last is None or last.closing_date is None else last.closing_date
        bank_id = ledger.system_account(conn, AccountKind.BANK)
        later_bank_cents = int(
            conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(postings.c.amount_cents), 0))
                .select_from(bank_lines.join(postings, postings.c.txn_id == bank_lines.c.txn_id))
                .where(postings.c.account_id == bank_id, bank_lines.c.booking_date > after)
            ).scalar_one()
        )
        unmatched_in, unmatched_out = (
            int(
                conn.execute(
                    sa.select(sa.func.coalesce(sa.func.sum(bank_lines.c.amount_cents), 0)).where(
                        bank_lines.c.match == LineMatch.UNMATCHED,
                        sign,
                        sa.or_(
                            bank_lines.c.booking_date.is_(None), bank_lines.c.booking_date <= after
                        ),
                    )
                ).scalar_one()
            )
            for sign in (bank_lines.c.amount_cents > 0, bank_lines.c.amount_cents < 0)
        )
    owed = {
        "cards": balances.get(AccountKind.CARD, 0),
        "merchants": balances.get(AccountKind.MERCHANT, 0),
        "in_transit": balances.get(AccountKind.IN_TRANSIT, 0),
        "fees": balances.get(AccountKind.FEES, 0),
    }
    ledger_bank = -(balances.get(AccountKind.BANK, 0) - later_bank_cents)
    # lines on the statement nobody has booked yet are in the bank but not in the ledger
    expected_bank = ledger_bank + unmatched_in + unmatched_out
    differences: list[dict[str, object]] = []
    if last is None:
        differences.append({"name": Difference.NO_STATEMENT, "cents": None})
    elif last.closing_balance_cents != expected_bank:
        differences.append(
            {
                "name": Difference.BANK_BALANCE,
                "cents": int(last.closing_balance_cents) - expected_bank,
                "statement_cents": int(last.closing_balance_cents),
                "ledger_cents": ledger_bank,
                "unmatched_cents": unmatched_in + unmatched_out,
            }
        )
    if owed["in_transit"] != int(sent):
        differences.append(
            {
                "name": Difference.IN_TRANSIT,
                "cents": owed["in_transit"] - int(sent),
                "ledger_cents": owed["in_transit"],
                "payouts_sent_cents": int(sent),
            }
        )
    if unmatched_out:  # money left the bank and nobody knows why
        differences.append({"name": Difference.UNMATCHED_OUTFLOW, "cents": unmatched_out})
    if not report.ok:
        differences.append({"name": Difference.LEDGER, "check": report.as_json()})
    result = FloatReport(
        statement_id=last.statement_id if last is not None else None,
        closing_date=last.closing_date if last is not None else None,
        bank_closing_cents=int(last.closing_balance_cents) if last is not None else None,
        ledger_bank_cents=ledger_bank,
        owed_cents=owed,
        cash_on_hand_cents=-balances.get(AccountKind.CASH, 0),
        other_cents=_sum(
            balances, (AccountKind.CORRECTION, AccountKind.BONUS_POOL, AccountKind.ONLINE)
        ),
        unmatched_in_cents=unmatched_in,
        differences=differences,
        ledger_ok=report.ok,
    )
    return result.as_json()


def _sum(balances: dict[str, int], kinds: Iterable[AccountKind]) -> int:
    return sum(balances.get(kind, 0) for kind in kinds)


# --- a person books what the import could not ------------------------------------------


def _open_line(conn: sa.Connection, key: str) -> AnyRow:
    line = conn.execute(sa.select(bank_lines).where(bank_lines.c.key == key)).first()
    if line is None:
        raise HCardError(Code.NOT_FOUND, what="statement line")
    if line.match != LineMatch.UNMATCHED:
        raise HCardError(Code.LINE_ALREADY_BOOKED, match=line.match)
    return line


def assign_to_card(ctx: Context, actor: Staff, key: str, card_number: str) -> dict[str, object]:
    """A transfer the import could not book onto a card: top up the card a person chose,
    like a top-up at the office (a written card, not blocked: CARD_BLOCKED)."""
    actor.require(*OFFICE)
    number = cards_service.normalize_number(card_number)
    with db_engine.write(ctx.engine) as conn:
        locking.settlement(conn)
        line = _open_line(conn, key)
        if line.amount_cents <= 0:
            raise HCardError(Code.INVALID_AMOUNT, reason="only money that came in tops a card up")
        card = conn.execute(sa.select(*_LIVE_COLUMNS).where(cards.c.number == number)).first()
        if card is None:
            raise HCardError(Code.UNKNOWN_CARD)
        cards_service.require_usable(card)
        bank = ledger.system_account(conn, AccountKind.BANK)
        txn = booking.topup(
            TopupSource.BANK, bank, card.account_id, line.amount_cents, actor.user_id
        )
        txn_id = ledger.post(conn, txn, now_s=ctx.now())
        conn.execute(
            sa.update(bank_lines)
            .where(bank_lines.c.key == key)
            .values(match=LineMatch.CARD_TOPUP, txn_id=txn_id, card_number=number)
        )
    return {"key": key, "match": LineMatch.CARD_TOPUP, "card_number": number, "txn_id": txn_id}


def book_fee_withdrawal(ctx: Context, actor: Staff, key: str) -> dict[str, object]:
    """Money that left the bank as the operator's own (its fees taken out, bank charges):
    booked against the fees account."""
    actor.require(*OFFICE)
    with db_engine.write(ctx.engine) as conn:
        locking.settlement(conn)
        line = _open_line(conn, key)
        if line.amount_cents >= 0:
            raise HCardError(Code.INVALID_AMOUNT, reason="only money that went out")
        txn = booking.fee_withdrawal(
            ledger.system_account(conn, AccountKind.FEES),
            ledger.system_account(conn, AccountKind.BANK),
            -line.amount_cents,
            (line.remittance or line.counterparty or "Bank")[:150],
            actor.user_id,
        )
        txn_id = ledger.post(conn, txn, now_s=ctx.now())
        conn.execute(
            sa.update(bank_lines)
            .where(bank_lines.c.key == key)
            .values(match=LineMatch.FEE_WITHDRAWAL, txn_id=txn_id)
        )
    return {"key": key, "match": LineMatch.FEE_WITHDRAWAL, "txn_id": txn_id}
