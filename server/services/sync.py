"""Journal sync: a terminal's signed, hash-chained records, each applied exactly once.

One batch is one write transaction, with the terminal's row locked (SQLite:
`BEGIN IMMEDIATE`), so the same batch sent three times at once is applied by
the first and answered `already_applied` to the others.

For each record, in order:
- seq at or below what the server already has: `already_applied` (with the
  original code/outcome) when it is the same record, else a fork.
- the rest is checked with `hcard.chain.first_problem` continuing from the
  terminal's last seq and hash: a gap, fork, bad signature or foreign record
  refuses that record and every one after it, and is recorded as an alert;
  nothing after the problem is applied.
- applied records are booked by kind (see docs/protocol.md): offline payments
  debit the card even below zero (then the card is flagged and deny-listed),
  voids reverse their payment once, online payments and till top-ups were
  booked at authorisation and must be the very record that was authorised.
  A void of an unknown payment or of an unknown card is refused for that
  record alone (`refused` with its code); the chain still moves on, since the
  terminal has the record and will never send another with that seq.
- every payment's card counter is compared with all payments seen: the same
  card and counter twice means the card's memory was rolled back or copied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hcard.chain import first_problem
from hcard.encoding import canonical_bytes
from hcard.errors import Code, HCardError
from hcard.records import Record, RecordError
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import authorisations, journal, merchants, terminals
from hcard.server.services import alerts, authorise, ledger
from hcard.server.services import cards as card_service
from hcard.server.services.terminals import Terminal, chain_head

_ALERT_FOR = {
    Code.CHAIN_GAP: "chain_gap",
    Code.CHAIN_FORK: "chain_fork",
    Code.BAD_SIGNATURE: "bad_signature",
    Code.BAD_RECORD: "bad_record",
    Code.JOURNAL_FOREIGN: "journal_foreign",
    Code.SEQUENCE_CONFLICT: "chain_fork",
}


@dataclass
class _Booked:
    status: str  # applied | refused
    code: Code | None = None
    txn_id: int | None = None
    outcome: dict[str, Any] | None = None


def _result(seq: Any, status: str, code: str | None, outcome: Any = None) -> dict[str, Any]:
    return {"seq": seq, "status": status, "code": code, "outcome": outcome}


def parse_batch(payload: Any, max_records: int) -> tuple[list[Record], list[Any], str | None]:
    """(records parsed up to the first bad one, the raw rest, why the first of the rest is bad)."""
    if not isinstance(payload, dict) or set(payload) != {"records"}:
        raise HCardError(Code.MALFORMED_REQUEST, reason='body must be {"records": [...]}')
    raw = payload["records"]
    if not isinstance(raw, list):
        raise HCardError(Code.MALFORMED_REQUEST, reason="records must be a list")
    if len(raw) > max_records:
        raise HCardError(Code.BATCH_TOO_LARGE, maximum=max_records, got=len(raw))
    parsed: list[Record] = []
    for index, item in enumerate(raw):
        try:
            parsed.append(Record.from_wire(item))
        except RecordError as exc:
            return parsed, raw[index:], str(exc)
    return parsed, [], None


def sync(ctx: Context, terminal: Terminal, payload: Any) -> dict[str, Any]:
    records, unparsed, parse_error = parse_batch(payload, ctx.settings.max_batch_records)
    now = ctx.now()
    results: list[dict[str, Any]] = []
    with db_engine.write(ctx.engine) as conn:
        last_seq, last_hash = chain_head(conn, terminal.id, lock=True)
        # 1. records the server already has: answer as before, or catch a rewrite
        index = 0
        stop: tuple[int, Code, str] | None = None
        while index < len(records) and records[index].seq <= last_seq:
            record = records[index]
            previous = _previous(conn, terminal.id, record.seq)
            if previous is None or previous["hash"] != record.hash:
                stop = (record.seq, Code.CHAIN_FORK, "differs from the record applied before")
                break
            results.append(
                _result(record.seq, "already_applied", previous["code"], previous["outcome"])
            )
            index += 1
        # 2. new records continue the chain; apply up to the first problem
        fresh = records[index:] if stop is None else []
        if stop is None:
            problem = first_problem(fresh, terminal.public, terminal.id, last_seq, last_hash)
            if problem is not None:
                stop = (problem.seq, problem.code, problem.detail)
        for record in fresh:
            if stop is not None and record.seq >= stop[0]:
                break
            booked = _apply(conn, ctx, terminal, record, now)
            if booked.status == "refused" and booked.code is Code.SEQUENCE_CONFLICT:
                stop = (record.seq, booked.code, "synced record differs from the authorised one")
                break
            conn.execute(
                sa.insert(journal).values(
                    terminal_id=terminal.id,
                    seq=record.seq,
                    hash=record.hash,
                    kind=record.kind,
                    card=record.body.get("card"),
                    counter=record.body.get("counter"),
                    amount_cents=record.body.get("amount_cents"),
                    mode=record.body.get("mode"),
                    record=json.dumps(record.to_wire(), sort_keys=True),
                    status=booked.status,
                    code=booked.code.value if booked.code else None,
                    txn_id=booked.txn_id,
                    received_s=now,
                )
            )
            status = "applied" if booked.status == "applied" else "refused"
            code = booked.code.value if booked.code else None
            results.append(_result(record.seq, status, code, booked.outcome))
            last_seq, last_hash = record.seq, record.hash
            index += 1
        # 3. the problem record and everything after it: refused, reported, alerted
        if stop is None and parse_error is not None:
            stop = (last_seq + 1, Code.BAD_RECORD, parse_error)
        if stop is not None:
            seq, code, detail = stop
            alerts.record(
                conn, _ALERT_FOR[code], detail, now_s=now, terminal_id=terminal.id, seq=seq
            )
            for record in records[index:]:
                results.append(_result(record.seq, "refused", code.value))
            for item in unparsed:
                raw_seq = item.get("seq") if isinstance(item, dict) else None
                results.append(
                    _result(raw_seq if isinstance(raw_seq, int) else None, "refused", code.value)
                )
        conn.execute(
            sa.update(terminals)
            .where(terminals.c.id == terminal.id)
            .values(last_seq=last_seq, last_hash=last_hash)
        )
    return {"results": results, "last_seq": last_seq, "last_hash": last_hash}


def _previous(conn: sa.Connection, terminal_id: int, seq: int) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(journal.c.hash, journal.c.code, authorisations.c.answer)
        .select_from(
            journal.outerjoin(
                authorisations,
                sa.and_(
                    authorisations.c.terminal_id == journal.c.terminal_id,
                    authorisations.c.seq == journal.c.seq,
                ),
            )
        )
        .where(journal.c.terminal_id == terminal_id, journal.c.seq == seq)
    ).first()
    if row is None:
        return None
    outcome = json.loads(bytes(row.answer)) if row.answer is not None else None
    return {"hash": row.hash, "code": row.code, "outcome": outcome}


def _apply(
    conn: sa.Connection, ctx: Context, terminal: Terminal, record: Record, now: float
) -> _Booked:
    body = record.body
    if record.kind == "payment":
        _check_counter(conn, terminal, record, now)
    if record.kind == "topup_request" or (record.kind == "payment" and body["mode"] == "online"):
        return _confirm_authorised(conn, ctx, terminal, record)
    if record.kind == "payment":
        return _book_offline_payment(conn, terminal, record, now)
    if record.kind == "void":
        return _book_void(conn, terminal, record, now)
    return _Booked("applied")  # day_close: stored for the statement


def _confirm_authorised(
    conn: sa.Connection, ctx: Context, terminal: Terminal, record: Record
) -> _Booked:
    """The record was booked (or declined) at authorisation; it must be that very record.

    A record the server never saw at authorisation (the request never arrived)
    is declined now and booked as such, so a later authorise of the same seq
    answers the same: a customer is never charged for what the till could not
    show as approved.
    """
    row = conn.execute(
        sa.select(
            authorisations.c.record_hash, authorisations.c.answer, authorisations.c.txn_id
        ).where(authorisations.c.terminal_id == terminal.id, authorisations.c.seq == record.seq)
    ).first()
    if row is None:
        result = authorise.answer(record.seq, "declined", Code.PAYMENT_NOT_FOUND)
        conn.execute(
            sa.insert(authorisations).values(
                terminal_id=terminal.id,
                seq=record.seq,
                record_hash=record.hash,
                outcome="declined",
                answer=canonical_bytes(result),
                txn_id=None,
                created_s=ctx.now(),
            )
        )
        return _Booked("applied", outcome=result)
    if row.record_hash != record.hash:
        return _Booked("refused", Code.SEQUENCE_CONFLICT)
    return _Booked("applied", txn_id=row.txn_id, outcome=json.loads(bytes(row.answer)))


def _merchant(conn: sa.Connection, merchant_id: int) -> sa.Row:
    return conn.execute(
        sa.select(merchants.c.name, merchants.c.account_id).where(merchants.c.id == merchant_id)
    ).one()


def _book_offline_payment(
    conn: sa.Connection, terminal: Terminal, record: Record, now: float
) -> _Booked:
    """Booked even below zero: the till promised the merchant; then deny-list the card."""
    body = record.body
    card = card_service.find(conn, body["card"])
    if card is None or card.uid is None:
        alerts.record(
            conn,
            "unknown_card",
            "offline payment with a card the server does not know",
            now_s=now,
            terminal_id=terminal.id,
            seq=record.seq,
            card=body["card"],
        )
        return _Booked("refused", Code.UNKNOWN_CARD)
    merchant = _merchant(conn, terminal.merchant_id)
    amount = body["amount_cents"]
    txn_id = ledger.post(
        conn,
        "payment",
        [ledger.Posting(card.account_id, -amount), ledger.Posting(merchant.account_id, amount)],
        now_s=now,
        label=merchant.name,
        terminal_id=terminal.id,
        seq=record.seq,
    )
    if card.balance_cents - amount < 0:
        alerts.record(
            conn,
            "overdraw",
            f"offline payment overdrew the card to {card.balance_cents - amount} cents",
            now_s=now,
            terminal_id=terminal.id,
            seq=record.seq,
            card=card.number,
        )
        card_service.flag(conn, card.id, "overdraw")
    return _Booked("applied", txn_id=txn_id)


def _book_void(conn: sa.Connection, terminal: Terminal, record: Record, now: float) -> _Booked:
    body = record.body
    payment = conn.execute(
        sa.select(
            journal.c.card, journal.c.amount_cents, journal.c.txn_id, journal.c.voided_by_seq
        ).where(
            journal.c.terminal_id == terminal.id,
            journal.c.seq == body["voids_seq"],
            journal.c.kind == "payment",
        )
    ).first()
    if payment is None or payment.txn_id is None or payment.card != body["card"]:
        return _Booked("refused", Code.PAYMENT_NOT_FOUND)
    if payment.voided_by_seq is not None:
        return _Booked("refused", Code.ALREADY_VOIDED)
    if payment.amount_cents != body["amount_cents"]:
        return _Booked("refused", Code.INVALID_AMOUNT)
    card = card_service.find(conn, payment.card)
    assert card is not None, "a booked payment's card exists"
    merchant = _merchant(conn, terminal.merchant_id)
    amount = body["amount_cents"]
    txn_id = ledger.post(
        conn,
        "void",
        [ledger.Posting(merchant.account_id, -amount), ledger.Posting(card.account_id, amount)],
        now_s=now,
        label=f"Storno {merchant.name}",
        terminal_id=terminal.id,
        seq=record.seq,
    )
    conn.execute(
        sa.update(journal)
        .where(journal.c.terminal_id == terminal.id, journal.c.seq == body["voids_seq"])
        .values(voided_by_seq=record.seq)
    )
    return _Booked("applied", txn_id=txn_id)


def _check_counter(conn: sa.Connection, terminal: Terminal, record: Record, now: float) -> None:
    """Same card + counter twice: the card's memory was rolled back or copied."""
    body = record.body
    seen = conn.execute(
        sa.select(journal.c.terminal_id, journal.c.seq)
        .where(
            journal.c.card == body["card"],
            journal.c.counter == body["counter"],
            journal.c.kind == "payment",
        )
        .limit(1)
    ).first()
    card = card_service.find(conn, body["card"])
    if card is None:
        return
    if seen is not None:
        alerts.record(
            conn,
            "card_rollback",
            f"counter {body['counter']} already used by terminal {seen.terminal_id} seq {seen.seq}",
            now_s=now,
            terminal_id=terminal.id,
            seq=record.seq,
            card=body["card"],
        )
        card_service.flag(conn, card.id, "card_rollback")
    if body["counter"] > card.counter:
        card_service.bump(conn, card.id, counter=body["counter"])
