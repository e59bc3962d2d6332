"""Online authorisation: the till asks, the server decides and books in one transaction.

Keyed by (terminal, seq): the answer's bytes are stored with the decision, so
a till that lost the answer (crash, timeout) asks again and gets the very same
bytes, and nothing is booked twice. The same seq with another record is a
`sequence_conflict` (409): a terminal must never reuse a sequence number. So is
a seq the terminal already synced without it having been authorised (an offline
payment, a void): every online record that reached sync has its row here.

Decisions: an unknown or unissued card → `unknown_card`; a tag whose UID is
not the card's → `card_copied`; a blocked or flagged card → `card_blocked`;
a payment the balance does not cover → `insufficient_funds` with
`available_cents` so the till can offer a partial payment. The postings come
from `booking` (the same as a payment booked at sync); the online debit is
guarded in `ledger.post`, so concurrent payments never overdraw.

The card's till top-ups that other tills had approved and not yet confirmed
(`pending_topups`) may still be voided (their card write was torn): they are left out of
the balance a payment may spend and of the answer's `balance_cents`, which the till
writes to the purse. The till leaves out its own that it never showed.
An approved top-up is pending until its till's sync shows or voids it (`services.sync`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hcard.encoding import canonical_bytes
from hcard.errors import Code, HCardError
from hcard.records import MAX_COUNTER, PaymentMode, Record, RecordError, RecordKind
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db import locking
from hcard.server.db.tables import authorisations, merchants, pending_topups, transactions
from hcard.server.services import booking, cards, ledger, snapshot
from hcard.server.services.ledger import Txn
from hcard.server.services.terminals import (
    ChainHead,
    SignedRequest,
    Terminal,
    chain_head_locked,
)
from hcard.server.vocabulary import Outcome

#: The statements of every authorisation, built once with bound parameters: building one
#: costs SQLAlchemy more than SQLite takes to run it (bench/server_auth.py).
_PREVIOUS = sa.select(authorisations.c.record_hash, authorisations.c.answer).where(
    authorisations.c.terminal_id == sa.bindparam("terminal_id"),
    authorisations.c.seq == sa.bindparam("seq"),
)
_MERCHANT = sa.select(merchants.c.name, merchants.c.account_id).where(
    merchants.c.id == sa.bindparam("merchant_id")
)
#: the transaction an approved record booked, found by the record
_BOOKED = (
    sa.select(transactions.c.id)
    .where(
        transactions.c.terminal_id == sa.bindparam("terminal_id"),
        transactions.c.seq == sa.bindparam("seq"),
    )
    .scalar_subquery()
)
_STORE = sa.insert(authorisations).values(
    terminal_id=sa.bindparam("terminal_id"),
    seq=sa.bindparam("seq"),
    record_hash=sa.bindparam("record_hash"),
    outcome=sa.bindparam("outcome"),
    answer=sa.bindparam("answer"),
    created_s=sa.bindparam("created_s"),
)
#: an approved answer, with the transaction its record booked (a declined one has none)
_STORE_BOOKED = _STORE.values(txn_id=_BOOKED)


def parse_online_record(payload: Any, terminal: Terminal) -> tuple[Record, int | None]:
    """The record of an authorise request, refused unless it is one the server may decide;
    beside a top-up, the purse counter of the card write the till will try (`counter`)."""
    if not isinstance(payload, dict) or set(payload) - {"counter"} != {"record"}:
        raise HCardError(Code.MALFORMED_REQUEST, reason='body must be {"record": ...}')
    counter = payload.get("counter")
    if counter is not None and (
        not isinstance(counter, int) or isinstance(counter, bool) or not 1 <= counter <= MAX_COUNTER
    ):
        raise HCardError(Code.MALFORMED_REQUEST, field="counter")
    try:
        record = Record.from_wire(payload["record"])
    except RecordError as exc:
        raise HCardError(Code.BAD_RECORD, reason=str(exc)) from None
    if record.terminal_id != terminal.id:
        raise HCardError(Code.JOURNAL_FOREIGN)
    online_payment = record.kind == RecordKind.PAYMENT and record.body["mode"] == PaymentMode.ONLINE
    if not (online_payment or record.kind == RecordKind.TOPUP_REQUEST):
        raise HCardError(Code.BAD_RECORD, reason="only online payments and top-ups are authorised")
    if counter is not None and record.kind != RecordKind.TOPUP_REQUEST:
        raise HCardError(Code.MALFORMED_REQUEST, field="counter", reason="a top-up's only")
    if not record.signature_ok(terminal.public):
        raise HCardError(Code.BAD_SIGNATURE, reason="record signature")
    return record, counter


def answer(
    seq: int,
    outcome: Outcome,
    code: Code | None = None,
    balance_cents: int | None = None,
    available_cents: int | None = None,
    pending: Sequence[dict[str, int | None]] = (),
) -> dict[str, Any]:
    """The answer's document; `pending` (other tills' top-ups whose write a purse of theirs
    may hold, `snapshot.PENDING_WRITES`) only when there are any, as `pending_topups`."""
    document: dict[str, Any] = {
        "seq": seq,
        "outcome": outcome,
        "code": code.value if code else None,
        "balance_cents": balance_cents,
        "available_cents": available_cents,
    }
    if pending:
        document["pending_topups"] = list(pending)
    return document


def authorise(ctx: Context, signed: SignedRequest, payload: Any) -> tuple[bytes, ChainHead]:
    """Decide (or repeat the decision on) one online record; return the answer's bytes and
    the terminal's chain head on the server.

    Booked in the request's unit of work, which records its nonce in the same commit. The
    head goes beside the answer (headers, not the stored bytes): a till that took records as
    acknowledged which a restored server no longer holds learns it here, before it writes a
    card from a balance that holds its voided top-ups again (docs/protocol.md)."""
    terminal = signed.terminal
    record, write_counter = parse_online_record(payload, terminal)
    record_hash = record.hash

    def book(conn: sa.Connection) -> tuple[bytes, ChainHead]:
        key = {"terminal_id": terminal.id, "seq": record.seq}
        head, (previous_rows,) = chain_head_locked(conn, terminal.id, (_PREVIOUS, key))
        last_seq = head[0]
        if previous_rows:
            previous = previous_rows[0]
            if previous.record_hash != record_hash:
                raise HCardError(Code.SEQUENCE_CONFLICT, seq=record.seq)
            return bytes(previous.answer), head
        if record.seq <= last_seq:
            # synced already as another record: every synced online record has a row above
            raise HCardError(Code.SEQUENCE_CONFLICT, seq=record.seq)
        decision = decide(conn, terminal, record)
        txn = decision.txn
        body = canonical_bytes(decision.answer)
        row = key | {
            "record_hash": record_hash,
            "outcome": decision.answer["outcome"],
            "answer": body,
            "created_s": ctx.now(),
        }
        stored = (_STORE if txn is None else _STORE_BOOKED, row)
        if txn is not None and record.kind == RecordKind.TOPUP_REQUEST:
            conn.execute(
                sa.insert(pending_topups).values(
                    terminal_id=terminal.id,
                    seq=record.seq,
                    card_id=decision.card_id,
                    amount_cents=record.body["amount_cents"],
                    counter=write_counter,
                )
            )
        # the last statements, committed with them on PostgreSQL (`ledger.post_last`)
        if txn is None:
            db_engine.commit_with(conn, stored)
        else:
            ledger.post_last(conn, txn, now_s=ctx.now(), then=stored)
        return body, head

    return signed.unit(book)


@dataclass(frozen=True)
class Decision:
    """What `decide` found: the answer, the transaction to book (None: declined)."""

    answer: dict[str, Any]
    txn: Txn | None = None
    card_id: int | None = None


def decide(conn: sa.Connection, terminal: Terminal, record: Record) -> Decision:
    """The answer to the record and the transaction to book for it.

    The card's account is locked before the card is read, so the balance the answer gives
    is the one the booking leaves (`ledger.post_last` books it with the commit)."""
    body = record.body
    locking.accounts(conn, (), [body["card"]])  # first: the balance read next stays
    card = cards.find(conn, body["card"])
    if card is None or card.uid is None:
        return Decision(answer(record.seq, Outcome.DECLINED, Code.UNKNOWN_CARD))
    if record.kind == RecordKind.PAYMENT and card.uid != body["uid"]:
        return Decision(answer(record.seq, Outcome.DECLINED, Code.CARD_COPIED))
    if card.blocked or card.flagged:
        return Decision(answer(record.seq, Outcome.DECLINED, Code.CARD_BLOCKED))
    (merchant,), pending = db_engine.pipelined(
        conn,
        (_MERCHANT, {"merchant_id": terminal.merchant_id}),
        cards.pending_writes_step(card.id, except_terminal=terminal.id),
    )
    till = booking.Till(terminal.id, merchant.account_id, merchant.name)
    amount = body["amount_cents"]
    if record.kind == RecordKind.PAYMENT:
        txn = booking.payment(till, record.seq, card.account_id, amount, body["mode"])
    else:
        txn = booking.till_topup(till, record.seq, card.account_id, amount)
    # other tills' top-ups not yet confirmed may still be voided (a torn card write): they
    # are neither spent nor written to a purse here; the asking till's own are counted (it
    # took the cash, and a till wakes its sync at once, so another's are seconds old)
    # The answer names them by till: a purse that till wrote may hold one that it voids
    # later, so the asking till leaves them out of that purse too (docs/protocol.md).
    balance = card.balance_cents - cards.unconfirmed_cents(pending)
    if not ledger.floors_hold(txn, {card.account_id: balance}):
        return Decision(
            answer(record.seq, Outcome.DECLINED, Code.INSUFFICIENT_FUNDS, balance, max(balance, 0))
        )
    balance += txn.change_of(card.account_id)
    approved = answer(
        record.seq,
        Outcome.APPROVED,
        None,
        balance,
        balance,
        [snapshot.pending_write(row) for row in pending],
    )
    return Decision(approved, txn, card.id)
