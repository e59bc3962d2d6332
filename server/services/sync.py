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
  debit the card even below zero or when the tag's UID is not the card's (then
  the card is flagged and deny-listed, alert `overdraw` / `card_copied`),
  voids reverse their payment once, online payments and till top-ups were
  booked at authorisation and must be the very record that was authorised.
  A void may also name an approved till top-up of the same terminal (the till
  could not show it): it takes the money back from the card, even below zero
  when it was spent elsewhere meanwhile, then the card is flagged and
  deny-listed like an offline overdraw.
  A void of an unknown payment or an offline payment of an unknown card is
  refused for that record alone (`refused` with its code); the chain still
  moves on, since the terminal has the record and will never send another
  with that seq.
- after every record is decided, each payment that wrote the card and was not
  voided (in this batch or before) has its card counter compared with all such
  payments seen: the same card and counter twice means the card's memory was
  rolled back or copied. (A voided payment still moves the card's counter on.)

Speed: the batch is decided in Python against state loaded with a few bulk
queries, then written with a few bulk statements (`ledger.post_many`), so the
cost per record is dominated by its signature check, not by the database.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from hcard.chain import ChainProblem, first_problem
from hcard.encoding import MAX_ID, canonical_bytes, canonical_bytes_checked
from hcard.errors import Code, HCardError
from hcard.records import PaymentMode, Record, RecordError, RecordKind
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db import locking
from hcard.server.db.tables import (
    AnyRow,
    alerts,
    authorisations,
    cards,
    journal,
    merchants,
    pending_topups,
)
from hcard.server.db.tables import terminals as terminal_table
from hcard.server.services import authorise, booking, ledger, snapshot, trust
from hcard.server.services import cards as card_service
from hcard.server.services.terminals import SignedRequest, Terminal, chain_head
from hcard.server.vocabulary import (
    AlertKind,
    FlagReason,
    Outcome,
    SyncStatus,
)

# The members the batch loop compares, bound once: reading a member off its Enum class costs
# ~60 ns on Python 3.11, and a batch of a thousand records compares a dozen per record.
_PAYMENT, _VOID, _TOPUP_REQUEST = RecordKind.PAYMENT, RecordKind.VOID, RecordKind.TOPUP_REQUEST
_ONLINE, _OFFLINE = PaymentMode.ONLINE, PaymentMode.OFFLINE
_APPLIED, _REFUSED = SyncStatus.APPLIED, SyncStatus.REFUSED
_CONFLICT = Code.SEQUENCE_CONFLICT

#: Signature checks of a batch run on every core (Ed25519 releases the GIL).
_VERIFY_WORKERS = os.cpu_count() or 1

#: the alert raised for a chain problem that stops a batch
_ALERT_FOR = {
    Code.CHAIN_GAP: AlertKind.CHAIN_GAP,
    Code.CHAIN_FORK: AlertKind.CHAIN_FORK,
    Code.BAD_SIGNATURE: AlertKind.BAD_SIGNATURE,
    Code.BAD_RECORD: AlertKind.BAD_RECORD,
    Code.JOURNAL_FOREIGN: AlertKind.JOURNAL_FOREIGN,
    Code.SEQUENCE_CONFLICT: AlertKind.CHAIN_FORK,
}


class CachedRecord(Record):
    """A record that encodes itself once: signature check, hash and storage share the bytes.

    Made only by `from_wire` (`parse_batch`), which has checked the type of every field, so
    the encoding skips `canonical_bytes`' walk over them (the same bytes)."""

    def signed_bytes(self) -> bytes:
        cached = self.__dict__.get("_signed_bytes")
        if cached is None:
            cached = canonical_bytes_checked(self.unsigned())
            object.__setattr__(self, "_signed_bytes", cached)
        return cached

    @property
    def hash(self) -> str:
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = super().hash
            object.__setattr__(self, "_hash", cached)
        return cached


def _result(seq: Any, status: SyncStatus, code: str | None, outcome: Any = None) -> dict[str, Any]:
    return {"seq": seq, "status": status, "code": code, "outcome": outcome}


def parse_batch(payload: Any, max_records: int) -> tuple[list[Record], list[Any], str | None]:
    """(records parsed up to the first bad one, the raw rest, why the first of the rest is bad)."""
    if not isinstance(payload, dict) or "records" not in payload or set(payload) - _BODY_KEYS:
        raise HCardError(
            Code.MALFORMED_REQUEST,
            reason='body must be {"records": [...], "recorded_s"?: {...}, "shown"?: [...]}',
        )
    raw = payload["records"]
    if not isinstance(raw, list):
        raise HCardError(Code.MALFORMED_REQUEST, reason="records must be a list")
    if len(raw) > max_records:
        raise HCardError(Code.BATCH_TOO_LARGE, maximum=max_records, got=len(raw))
    parsed: list[Record] = []
    for index, item in enumerate(raw):
        try:
            parsed.append(CachedRecord.from_wire(item))
        except RecordError as exc:
            return parsed, raw[index:], str(exc)
    return parsed, [], None


_BODY_KEYS = {"records", "recorded_s", "shown"}


def recorded_times(payload: dict[str, Any]) -> dict[int, float]:
    """The till's optional `"recorded_s": {"<seq>": <epoch seconds>}`: when it says it
    journalled each record, by its own clock (unsigned, informational: settlement lists a
    late offline payment with it; nothing is decided on it)."""
    raw = payload.get("recorded_s", {})
    if not isinstance(raw, dict) or len(raw) > len(payload["records"]):
        raise HCardError(Code.MALFORMED_REQUEST, field="recorded_s")
    times: dict[int, float] = {}
    for key, value in raw.items():
        if not (isinstance(key, str) and key.isdigit() and len(key) <= 19):
            raise HCardError(Code.MALFORMED_REQUEST, field="recorded_s")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
            raise HCardError(Code.MALFORMED_REQUEST, field="recorded_s")
        times[int(key)] = float(value)
    return times


def shown_seqs(payload: dict[str, Any]) -> frozenset[int]:
    """The till's optional `"shown": [<seq>, ...]`: the payments and top-ups of the batch it
    showed as approved (their card write landed). Part of the signed request, so the till
    vouches for it as it vouches for an offline payment. A server restored from a backup
    taken before it approved an online one books it (`_Batch._book_shown`): without it such a
    record would be declined as never seen, and a customer shown "paid" would be charged on
    the card while the merchant is never paid. A shown write moves the card's trusted counter
    (`services/trust.py`), a shown till top-up is no longer pending."""
    raw = payload.get("shown", [])
    if not isinstance(raw, list) or len(raw) > len(payload["records"]):
        raise HCardError(Code.MALFORMED_REQUEST, field="shown")
    for seq in raw:
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq <= MAX_ID:
            raise HCardError(Code.MALFORMED_REQUEST, field="shown")
    shown = frozenset(raw)
    if len(shown) != len(raw):
        raise HCardError(Code.MALFORMED_REQUEST, field="shown")
    return shown


@dataclass(frozen=True)
class _Precheck:
    """The chain check done before the write transaction, valid if the head did not move."""

    head: tuple[int, str]
    problem: ChainProblem | None


def sync(ctx: Context, signed: SignedRequest, payload: Any) -> dict[str, Any]:
    """Apply a batch in the request's unit of work (its nonce recorded in the same commit)."""
    terminal = signed.terminal
    records, unparsed, parse_error = parse_batch(payload, ctx.settings.max_batch_records)
    recorded = recorded_times(payload)
    shown = shown_seqs(payload)
    # Signatures are checked here, in the request's thread, so the write
    # transaction (shared with other tills' authorisations) never waits for them.
    with db_engine.read(ctx.engine) as conn:
        head = chain_head(conn, terminal.id, lock=False)
    known = 0
    while known < len(records) and records[known].seq <= head[0]:
        known += 1
    fresh = records[known:]  # exactly what `_sync` checks when the head is unchanged
    precheck = _Precheck(
        head, first_problem(fresh, terminal.public, terminal.id, *head, workers=_VERIFY_WORKERS)
    )
    return signed.unit(
        lambda conn: _sync(
            conn, ctx, terminal, records, unparsed, parse_error, precheck, recorded, shown
        )
    )


def _sync(
    conn: sa.Connection,
    ctx: Context,
    terminal: Terminal,
    records: list[Record],
    unparsed: list[Any],
    parse_error: str | None,
    precheck: _Precheck,
    recorded: dict[int, float],
    shown: frozenset[int],
) -> dict[str, Any]:
    now = ctx.now()
    results: list[dict[str, Any]] = []
    last_seq, last_hash = chain_head(conn, terminal.id, lock=True)
    # 1. records the server already has: answer as before, or catch a rewrite
    known = [r for r in records if r.seq <= last_seq]
    previous = _previous(conn, terminal.id, [r.seq for r in known]) if known else {}
    index = 0
    stop: tuple[int, Code, str] | None = None
    while index < len(records) and records[index].seq <= last_seq:
        record = records[index]
        before = previous.get(record.seq)
        if before is None or before["hash"] != record.hash:
            stop = (record.seq, Code.CHAIN_FORK, "differs from the record applied before")
            break
        results.append(
            _result(record.seq, SyncStatus.ALREADY_APPLIED, before["code"], before["outcome"])
        )
        index += 1
    # 2. new records continue the chain; apply up to the first problem
    fresh = records[index:] if stop is None else []
    if fresh:
        if precheck.head == (last_seq, last_hash):
            problem = precheck.problem  # the same records from the same head
        else:
            problem = first_problem(
                fresh, terminal.public, terminal.id, last_seq, last_hash, workers=_VERIFY_WORKERS
            )
        if problem is not None:
            stop = (problem.seq, problem.code, problem.detail)
            # by position: the records before the problem continue the chain one by one
            # (a later record may carry a lower seq, e.g. [5, 1'], and was never checked)
            fresh = fresh[: problem.seq - last_seq - 1]
    if fresh:
        batch = _Batch(conn, ctx, terminal, fresh, now, recorded, shown)
        applied = batch.apply()
        for record, booked in zip(fresh, applied, strict=False):
            results.append(_result(record.seq, booked.status, booked.code_value, booked.outcome))
        index += len(applied)
        if applied:
            last_seq, last_hash = fresh[len(applied) - 1].seq, fresh[len(applied) - 1].hash
        if batch.conflict is not None:
            stop = (
                batch.conflict,
                Code.SEQUENCE_CONFLICT,
                "differs from the authorised record",
            )
    # 3. the problem record and everything after it: refused, reported, alerted
    if stop is None and parse_error is not None:
        stop = (last_seq + 1, Code.BAD_RECORD, parse_error)
    if stop is not None:
        seq, code, detail = stop
        conn.execute(
            sa.insert(alerts).values(
                kind=_ALERT_FOR[code],
                detail=detail,
                terminal_id=terminal.id,
                seq=seq,
                created_s=now,
            )
        )
        for record in records[index:]:
            results.append(_result(record.seq, _REFUSED, code.value))
        for item in unparsed:
            raw_seq = item.get("seq") if isinstance(item, dict) else None
            results.append(
                _result(raw_seq if isinstance(raw_seq, int) else None, _REFUSED, code.value)
            )
    conn.execute(
        sa.update(terminal_table)
        .where(terminal_table.c.id == terminal.id)
        .values(last_seq=last_seq, last_hash=last_hash)
    )
    return {"results": results, "last_seq": last_seq, "last_hash": last_hash}


def _previous(conn: sa.Connection, terminal_id: int, seqs: list[int]) -> dict[int, dict[str, Any]]:
    rows = conn.execute(
        sa.select(journal.c.seq, journal.c.hash, journal.c.code, authorisations.c.answer)
        .select_from(
            journal.outerjoin(
                authorisations,
                sa.and_(
                    authorisations.c.terminal_id == journal.c.terminal_id,
                    authorisations.c.seq == journal.c.seq,
                ),
            )
        )
        .where(journal.c.terminal_id == terminal_id, journal.c.seq.in_(seqs))
    )
    return {
        row.seq: {
            "hash": row.hash,
            "code": row.code,
            "outcome": json.loads(bytes(row.answer)) if row.answer is not None else None,
        }
        for row in rows
    }


@dataclass(slots=True)
class _Booked:
    status: SyncStatus  # APPLIED or REFUSED (what the journal stores)
    code: Code | None = None
    txn: int | None = None  # index into _Batch.txns, or
    txn_id: int | None = None  # an existing transaction (booked at authorisation)
    outcome: dict[str, Any] | None = None

    @property
    def code_value(self) -> str | None:
        return self.code.value if self.code else None


@dataclass(slots=True)
class _Card:
    id: int
    number: str
    uid: str | None
    account_id: int
    balance_cents: int
    counter: int
    trusted_counter: int
    flagged: bool


@dataclass
class _Batch:
    """One batch's records, decided against state loaded in bulk, then written in bulk."""

    conn: sa.Connection
    ctx: Context
    terminal: Terminal
    records: list[Record]
    now: float
    recorded: dict[int, float]
    shown: frozenset[int]
    txns: list[ledger.Txn] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    declined: list[dict[str, Any]] = field(default_factory=list)
    #: authorisation rows of shown records booked now (`_book_shown`), with their txn's index
    approved_late: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    flags: dict[int, FlagReason] = field(default_factory=dict)
    counters: dict[int, int] = field(default_factory=dict)
    #: card id → its trusted counter through the batch (`services/trust.py`)
    trusted: dict[int, trust.CardTrust] = field(default_factory=dict)
    #: till top-ups of this terminal confirmed (shown) or voided: seq → card id
    settled_topups: dict[int, int] = field(default_factory=dict)
    voided_topups: set[int] = field(default_factory=set)
    voided: dict[int, int] = field(default_factory=dict)  # payment/top-up seq → void seq
    conflict: int | None = None

    def apply(self) -> list[_Booked]:
        self._load()
        booked: list[_Booked] = []
        for record in self.records:
            outcome = self._decide(record)
            if outcome.code is _CONFLICT:
                self.conflict = record.seq
                break
            booked.append(outcome)
        # after every record is decided: a payment voided later in the batch is no rollback
        decided = self.records[: len(booked)]
        wrote = [
            _wrote_card(record, outcome) for record, outcome in zip(decided, booked, strict=True)
        ]
        for record, wrote_card in zip(decided, wrote, strict=True):
            if wrote_card:
                self._check_counter(record)
                if record.seq in self.shown:
                    self._trust_write(record)
        self._write(decided, booked, wrote)
        return booked

    # --- load ------------------------------------------------------------------------

    def _load(self) -> None:
        conn, tid = self.conn, self.terminal.id
        numbers = sorted({r.body["card"] for r in self.records if "card" in r.body})
        self.merchant = conn.execute(
            sa.select(merchants.c.name, merchants.c.account_id).where(
                merchants.c.id == self.terminal.merchant_id
            )
        ).one()
        # Before reading balances and counters seen: another till's batch on the
        # same card must commit first, or both miss the overdraw and the rollback.
        locking.accounts(conn, [self.merchant.account_id], numbers)
        self.till = booking.Till(tid, self.merchant.account_id, self.merchant.name)
        self.cards: dict[str, _Card] = {}
        if numbers:
            rows = _batch_cards(conn, numbers)
            self.cards = {
                number: _Card(
                    card_id, number, uid, account_id, balance, counter, trusted, bool(flagged)
                )
                for card_id, number, uid, account_id, counter, trusted, flagged, balance in rows
            }
        online = [r.seq for r in self.records if _authorised_kind(r)]
        self.authorised: dict[int, AnyRow] = {}
        if online:
            rows = conn.execute(
                sa.select(
                    authorisations.c.seq,
                    authorisations.c.record_hash,
                    authorisations.c.answer,
                    authorisations.c.txn_id,
                ).where(authorisations.c.terminal_id == tid, authorisations.c.seq.in_(online))
            )
            self.authorised = {row.seq: row for row in rows}
        # payments and till top-ups this batch may void: earlier ones from the
        # journal, the rest from the batch (`_confirm_authorised`, `_offline_payment`)
        targets = [r.body["voids_seq"] for r in self.records if r.kind == _VOID]
        self.payments: dict[int, dict[str, Any]] = {}
        if targets:
            rows = conn.execute(
                sa.select(
                    journal.c.seq,
                    journal.c.kind,
                    journal.c.card,
                    journal.c.amount_cents,
                    journal.c.txn_id,
                    journal.c.voided_by_seq,
                ).where(
                    journal.c.terminal_id == tid,
                    journal.c.seq.in_(targets),
                    journal.c.kind.in_((_PAYMENT, _TOPUP_REQUEST)),
                )
            )
            self.payments = {
                row.seq: {
                    "kind": row.kind,
                    "card": row.card,
                    "amount_cents": row.amount_cents,
                    "booked": row.txn_id is not None,
                    "voided": row.voided_by_seq is not None,
                }
                for row in rows
            }
        pairs = [(r.body["card"], r.body["counter"]) for r in self.records if r.kind == _PAYMENT]
        # (card, counter) → payments that wrote it, as (terminal id, seq); voided ones never count
        self.seen_counters: dict[tuple[str, int], list[tuple[int, int]]] = {}
        if pairs:
            for row in _seen_counters(conn, sorted(set(pairs))):
                self.seen_counters.setdefault((row.card, row.counter), []).append(
                    (row.terminal_id, row.seq)
                )

    # --- decide ----------------------------------------------------------------------

    def _decide(self, record: Record) -> _Booked:
        kind = record.kind
        if kind == _PAYMENT:
            if record.body["mode"] == _ONLINE:
                return self._confirm_authorised(record)
            return self._offline_payment(record)
        if kind == _TOPUP_REQUEST:
            return self._confirm_authorised(record)
        if kind == _VOID:
            return self._void(record)
        return _Booked(_APPLIED)  # day_close: stored for the statement

    def _alert(self, kind: AlertKind, detail: str, record: Record, card: str | None) -> None:
        self.alerts.append(
            {
                "kind": kind,
                "detail": detail,
                "terminal_id": self.terminal.id,
                "seq": record.seq,
                "card": card,
                "created_s": self.now,
            }
        )

    def _check_counter(self, record: Record) -> None:
        """Same card + counter twice: the card's memory was rolled back or copied.

        Voided payments are left out of the comparison: a till voids a payment
        whose card write failed, the card still holds the counter before it, so
        the next payment (at any till) honestly uses it again. The card's
        counter still moves on: a void of a shown payment (its write landed)
        must not make the tills count one more write the server has not seen.
        """
        number, counter = record.body["card"], record.body["counter"]
        card = self.cards.get(number)
        if card is None:
            return
        if counter > max(card.counter, self.counters.get(card.id, 0)):
            self.counters[card.id] = counter
        if record.seq in self.voided:
            return
        key, tid_now = (number, counter), self.terminal.id
        writers = self.seen_counters.get(key)
        if writers is None:  # nearly every payment: a pair never seen
            self.seen_counters[key] = [(tid_now, record.seq)]
            return
        seen = [
            (tid, seq)
            for tid, seq in writers
            if not (tid == tid_now and seq in self.voided)  # voided by this batch
        ]
        if seen:
            self._alert(
                AlertKind.CARD_ROLLBACK,
                f"counter {counter} already used by terminal {seen[0][0]} seq {seen[0][1]}",
                record,
                number,
            )
            self.flags[card.id] = FlagReason.CARD_ROLLBACK
        writers.append((tid_now, record.seq))

    def _trust_write(self, record: Record) -> None:
        """A payment the till showed wrote its counter to the card (`services/trust.py`)."""
        card = self.cards.get(record.body["card"])
        if card is None:
            return
        card_trust = self.trusted.get(card.id)
        if card_trust is None:
            card_trust = self.trusted[card.id] = trust.CardTrust(card.trusted_counter)
        card_trust.wrote(record.body["counter"])

    def _settle_topup(self, seq: int, number: str, *, voided: bool = False) -> None:
        """A till top-up of this terminal is on the card (shown) or voided: no longer pending,
        so the other tills get the card's balance with it (or without, voided). A voided
        one's write may still be on the card: its row stays, marked (`snapshot.PENDING_WRITES`)."""
        card = self.cards.get(number)
        if card is not None:
            # one shown in this very batch (then voided by the cashier, the card written
            # down at a higher counter) is settled, not kept
            if voided and seq not in self.settled_topups:
                self.voided_topups.add(seq)
            self.settled_topups[seq] = card.id

    def _confirm_authorised(self, record: Record) -> _Booked:
        """The record was booked (or declined) at authorisation; it must be that very record.

        A record the server never saw at authorisation (the request never
        arrived) is declined now and stored as such, so a later authorise of the
        same seq answers the same: a customer is never charged for what the till
        could not show as approved.
        """
        row = self.authorised.get(record.seq)
        if row is None and record.seq in self.shown:
            return self._book_shown(record)
        if row is None:
            result = authorise.answer(record.seq, Outcome.DECLINED, Code.PAYMENT_NOT_FOUND)
            self.declined.append(
                {
                    "terminal_id": self.terminal.id,
                    "seq": record.seq,
                    "record_hash": record.hash,
                    "outcome": Outcome.DECLINED,
                    "answer": canonical_bytes(result),
                    "txn_id": None,
                    "created_s": self.now,
                }
            )
            return _Booked(_APPLIED, outcome=result)
        if row.record_hash != record.hash:
            return _Booked(_REFUSED, Code.SEQUENCE_CONFLICT)
        if record.kind == _TOPUP_REQUEST and row.txn_id is not None and record.seq in self.shown:
            self._settle_topup(record.seq, record.body["card"])  # on the card: confirmed
        # a later void in this batch may reverse it
        self.payments[record.seq] = {
            "kind": record.kind,
            "card": record.body["card"],
            "amount_cents": record.body["amount_cents"],
            "booked": row.txn_id is not None,
            "voided": False,
        }
        return _Booked(_APPLIED, txn_id=row.txn_id, outcome=json.loads(bytes(row.answer)))

    def _book_shown(self, record: Record) -> _Booked:
        """Book an online record the till showed as approved and this server does not know:
        it was restored from a backup taken before it approved it. The customer saw "paid"
        and the card holds the lower purse (a top-up: the till took the cash), so it is booked
        as the till promised, even below zero (then alert and deny-list, as offline), and its
        authorisation is stored approved, so asking again answers the same. Honest running
        never gets here, so every such booking is an alert (`shown_not_authorised`): after
        no restore, the office looks at the till. A tag that is not the card's is alerted
        and flagged as offline."""
        body = record.body
        card = self._promised_card(record, "a shown online record")
        if card is None:
            return _Booked(_REFUSED, Code.UNKNOWN_CARD)
        self._alert(
            AlertKind.SHOWN_NOT_AUTHORISED,
            "booked as the till showed it approved; no authorisation on the server (restored?)",
            record,
            card.number,
        )
        amount = body["amount_cents"]
        if record.kind == _PAYMENT:
            # unguarded like an offline payment: the approval was given before the restore
            txn = booking.payment(self.till, record.seq, card.account_id, amount, _OFFLINE)
        else:
            txn = booking.till_topup(self.till, record.seq, card.account_id, amount)
        self._apply(card, txn, record, "shown online record after a restore")
        index = self._book(txn)
        result = authorise.answer(
            record.seq, Outcome.APPROVED, None, card.balance_cents, max(card.balance_cents, 0)
        )
        row = {
            "terminal_id": self.terminal.id,
            "seq": record.seq,
            "record_hash": record.hash,
            "outcome": Outcome.APPROVED,
            "answer": canonical_bytes(result),
            "created_s": self.now,
        }
        self.approved_late.append((row, index))
        self.payments[record.seq] = {
            "kind": record.kind,
            "card": card.number,
            "amount_cents": amount,
            "booked": True,
            "voided": False,
        }
        return _Booked(_APPLIED, txn=index, outcome=result)

    def _promised_card(self, record: Record, what: str) -> _Card | None:
        """The card of a record the till promised without the server (offline, or shown
        after a restore): None for a card the server does not know (alerted); a payment's
        tag that is not the card's is alerted and the card deny-listed (online such a tag
        is declined `card_copied`; here the merchant was promised)."""
        body = record.body
        card = self.cards.get(body["card"])
        if card is None or card.uid is None:
            self._alert(
                AlertKind.UNKNOWN_CARD,
                f"{what} with a card the server does not know",
                record,
                body["card"],
            )
            return None
        if record.kind == _PAYMENT and body["uid"] != card.uid:
            self._alert(
                AlertKind.CARD_COPIED,
                f"{what} with a tag that is not the card's",
                record,
                card.number,
            )
            self.flags[card.id] = FlagReason.CARD_COPIED
        return card

    def _book(self, txn: ledger.Txn) -> int:
        self.txns.append(txn)
        return len(self.txns) - 1

    def _offline_payment(self, record: Record) -> _Booked:
        """Booked even below zero or from a foreign tag (the till promised the merchant);
        then alert and deny-list the card."""
        body = record.body
        card = self._promised_card(record, "offline payment")
        if card is None:
            return _Booked(_REFUSED, Code.UNKNOWN_CARD)
        amount = body["amount_cents"]
        txn = booking.payment(self.till, record.seq, card.account_id, amount, _OFFLINE)
        self._apply(card, txn, record, "offline payment")
        self.payments[record.seq] = {
            "kind": _PAYMENT,
            "card": card.number,
            "amount_cents": amount,
            "booked": True,
            "voided": False,
        }
        return _Booked(_APPLIED, txn=self._book(txn))

    def _apply(self, card: _Card, txn: ledger.Txn, record: Record, what: str) -> None:
        """Follow the card's balance as `txn` will book it; a debit that leaves it below
        zero alerts and deny-lists the card."""
        change = txn.change_of(card.account_id)
        card.balance_cents += change
        if change < 0 and card.balance_cents < 0:
            self._alert(
                AlertKind.OVERDRAW,
                f"{what} overdrew the card to {card.balance_cents} cents",
                record,
                card.number,
            )
            self.flags.setdefault(card.id, FlagReason.OVERDRAW)

    def _void(self, record: Record) -> _Booked:
        body = record.body
        payment = self.payments.get(body["voids_seq"])
        if payment is None or not payment["booked"] or payment["card"] != body["card"]:
            return _Booked(_REFUSED, Code.PAYMENT_NOT_FOUND)
        if payment["voided"]:
            return _Booked(_REFUSED, Code.ALREADY_VOIDED)
        if payment["amount_cents"] != body["amount_cents"]:
            return _Booked(_REFUSED, Code.INVALID_AMOUNT)
        card = self.cards[payment["card"]]
        # a payment goes back to the card; a till top-up's cash goes back to the merchant
        txn = booking.void(
            self.till, record.seq, card.account_id, body["amount_cents"], payment["kind"]
        )
        self._apply(card, txn, record, "void of a till top-up")
        if payment["kind"] == _TOPUP_REQUEST:
            self._settle_topup(body["voids_seq"], card.number, voided=True)
        payment["voided"] = True
        self.voided[body["voids_seq"]] = record.seq
        return _Booked(_APPLIED, txn=self._book(txn))

    # --- write -----------------------------------------------------------------------

    def _write(self, records: list[Record], booked: list[_Booked], wrote: list[bool]) -> None:
        """Book the transactions, store every record (`wrote`: did it write its counter to
        the card, `_wrote_card`), the voids, alerts, flags and the cards' counters."""
        conn = self.conn
        txn_ids = ledger.post_many(conn, self.txns, now_s=self.now)
        if self.declined:
            conn.execute(sa.insert(authorisations), self.declined)
        if self.approved_late:
            conn.execute(
                sa.insert(authorisations),
                [{**row, "txn_id": txn_ids[index]} for row, index in self.approved_late],
            )
        tid, now, voided, recorded = self.terminal.id, self.now, self.voided, self.recorded
        shown = self.shown
        rows = [
            (
                tid,
                record.seq,
                record.hash,
                record.kind,
                record.body.get("card"),
                # only a counter the card really got counts for rollback detection
                record.body["counter"] if wrote_card else None,
                record.body.get("amount_cents"),
                record.body.get("mode"),
                record.signed_bytes().decode("utf-8"),
                record.sig,
                result.status,
                result.code_value,
                txn_ids[result.txn] if result.txn is not None else result.txn_id,
                voided.pop(record.seq, None),
                now,
                recorded.get(record.seq),
                record.seq in shown,
            )
            for record, result, wrote_card in zip(records, booked, wrote, strict=True)
        ]
        db_engine.bulk_insert(conn, journal, _JOURNAL_COLUMNS, rows)
        if self.voided:  # voids of payments synced in earlier batches
            conn.execute(
                sa.update(journal)
                .where(
                    journal.c.terminal_id == self.terminal.id,
                    journal.c.seq == sa.bindparam("payment_seq"),
                )
                .values(voided_by_seq=sa.bindparam("void_seq")),
                [{"payment_seq": p, "void_seq": v} for p, v in sorted(self.voided.items())],
            )
        if self.alerts:
            conn.execute(sa.insert(alerts), self.alerts)
        # Deny-list the cards this batch flagged, one statement per reason. A card flagged
        # before keeps its reason (as a correction keeps it) and its snapshot version: the
        # tills deny it already (a till's overdrawn card would otherwise be flagged, and
        # moved into every till's next delta, again with each batch that names it).
        flagged_before = {card.id for card in self.cards.values() if card.flagged}
        newly: dict[FlagReason, list[int]] = {}
        for card_id, reason in self.flags.items():
            if card_id not in flagged_before:
                newly.setdefault(reason, []).append(card_id)
        for reason, card_ids in sorted(newly.items()):
            card_service.flag_many(conn, sorted(card_ids), reason)
        if self.settled_topups:
            of_till = pending_topups.c.terminal_id == tid
            if self.voided_topups:
                conn.execute(
                    sa.update(pending_topups)
                    .where(
                        of_till,
                        pending_topups.c.seq.in_(sorted(self.voided_topups)),
                        pending_topups.c.counter.is_not(None),
                    )
                    .values(voided=True)
                )
            conn.execute(
                sa.delete(pending_topups).where(
                    of_till,
                    pending_topups.c.seq.in_(sorted(self.settled_topups)),
                    pending_topups.c.voided.is_(False),
                )
            )
        self._write_counters()

    def _write_counters(self) -> None:
        """The cards' counters this batch moved on (never back), and the cards whose pending
        top-up it settled, for the tills' next snapshot. After the journal rows: a card
        whose gap the batch closed, with writes seen above it, follows its shown writes
        there (only then: a card with a gap the batch left open would read them with every
        batch, and they cannot close it)."""
        by_id = {card.id: card for card in self.cards.values()}
        settled = set(self.settled_topups.values())
        touched = set(self.counters) | set(self.trusted) | settled
        changes = []
        for card_id in sorted(touched):
            card = by_id[card_id]
            counter = max(card.counter, self.counters.get(card_id, 0))
            trusted = card.trusted_counter
            card_trust = self.trusted.get(card_id)
            if card_trust is not None:
                trusted = card_trust.advance()
                if card.trusted_counter < trusted < counter:
                    trusted = card_trust.advance(_shown_writes(self.conn, card.number, trusted))
            unchanged = counter == card.counter and trusted == card.trusted_counter
            if unchanged and card_id not in settled:
                continue
            changes.append({"card_id": card_id, "counter": counter, "trusted": trusted})
        if not changes:
            return
        snapshot.cards_changed(
            self.conn,
            cards.c.id == sa.bindparam("card_id"),
            {"counter": sa.bindparam("counter"), "trusted_counter": sa.bindparam("trusted")},
            rows=changes,
        )


#: the journal row `_Batch._write` makes of a record, in this order
_JOURNAL_COLUMNS = (
    "terminal_id",
    "seq",
    "hash",
    "kind",
    "card",
    "counter",
    "amount_cents",
    "mode",
    "signed",
    "sig",
    "status",
    "code",
    "txn_id",
    "voided_by_seq",
    "received_s",
    "recorded_s",
    "shown",
)


def _batch_cards(conn: sa.Connection, numbers: list[str]) -> Any:
    """(id, number, uid, account_id, counter, trusted_counter, flagged, balance_cents) of the
    cards `numbers`.

    Plain SQL through the driver, like `_seen_counters`: a batch names up to a thousand
    cards, and SQLAlchemy's expanding IN and its rows cost more than SQLite's lookups."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    # only placeholders are put into the text
    sql = (
        "SELECT c.id, c.number, c.uid, c.account_id, c.counter, c.trusted_counter, c.flagged,"  # noqa: S608
        " a.balance_cents"
        " FROM cards AS c JOIN accounts AS a ON a.id = c.account_id"
        f" WHERE c.number IN ({', '.join([mark] * len(numbers))})"
    )
    return conn.exec_driver_sql(sql, tuple(numbers)).all()


def _seen_counters(conn: sa.Connection, pairs: list[tuple[str, int]]) -> sa.CursorResult[Any]:
    """The unvoided payments that wrote any of these (card, counter) pairs, in (terminal, seq)
    order.

    A join with the pairs as a VALUES list, in plain SQL: one lookup in the journal's
    (card, counter) index per pair on both engines. SQLAlchemy's `tuple_(...).in_(...)`
    becomes `(card, counter) IN (VALUES ...)`, which SQLite answers by scanning the whole
    journal (a year of a town: millions of rows, for every batch), and compiling its
    thousand pairs cost more than the query.
    """
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    values = ", ".join([f"({mark}, {mark})"] * len(pairs))
    # only placeholders are put into the text
    sql = (
        "SELECT j.card, j.counter, j.terminal_id, j.seq"  # noqa: S608
        f" FROM (VALUES {values}) AS v"
        " JOIN journal AS j ON j.card = v.column1 AND j.counter = v.column2"
        f" WHERE j.kind = {mark} AND j.voided_by_seq IS NULL"
        " ORDER BY j.terminal_id, j.seq"
    )
    params = (*[item for pair in pairs for item in pair], _PAYMENT.value)
    return conn.exec_driver_sql(sql, params)


def _shown_writes(conn: sa.Connection, number: str, above: int) -> list[int]:
    """The counters above `above` that payments the tills showed wrote to the card (the
    journal's (card, counter) index): read only for a card with a gap in its trusted chain."""
    return list(
        conn.execute(
            sa.select(journal.c.counter).where(
                journal.c.card == number,
                journal.c.counter > above,
                journal.c.kind == _PAYMENT,
                journal.c.shown,
            )
        ).scalars()
    )


def _wrote_card(record: Record, booked: _Booked) -> bool:
    """Did this payment write its counter to the card? Offline always; online if approved.

    A declined online payment never touched the card, so its counter will be
    written by the next payment, on this terminal or another: not a rollback.
    """
    if record.kind != _PAYMENT or booked.status != _APPLIED:
        return False
    return record.body["mode"] == _OFFLINE or booked.txn_id is not None or booked.txn is not None


def _authorised_kind(record: Record) -> bool:
    """Online payments and till top-ups are decided by `authorise`, not by sync."""
    return record.kind == _TOPUP_REQUEST or (
        record.kind == _PAYMENT and record.body["mode"] == _ONLINE
    )
