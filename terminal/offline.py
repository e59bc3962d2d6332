"""The offline decision: may this card pay this amount now, with no server to ask?

Pure: no SQLite, no card reader, no clock. The inputs are plain dataclasses, gathered by
`hcard.terminal.payment` at the tap: what the card said (`CardFacts`), what the last
snapshot says (`SnapshotFacts`) and what this till's journal says about the card
(`JournalFacts`); the answer is a named `Decision`. Every rule is here and nowhere else:

1. deny-listed → `CARD_BLOCKED`; purse data on the card that cannot be trusted →
   `PURSE_INVALID`; no purse and not in the snapshot → `UNKNOWN_CARD`.
2. The balance (`balance_cents`): when the snapshot's trusted counter for the card is at
   least the card's, the server knows every purse write and its balance is the truth (it
   includes credits the purse lacks, and unmasks a purse restored to an older state);
   otherwise a write the server does not know may be on the card (an offline payment at
   another till, not synced yet) and only the purse knows it, while the snapshot may know a
   debit the purse does not: the lower of the two. (The highest counter the server has seen
   is not enough: an online payment after such an offline one moves it past the gap.)
   This till's unsettled top-ups are taken off the snapshot's balance (the server still
   counts them until their void arrives; other tills' are left out by the server), a
   refund owed to the purse is added to it. Erring low can only refuse a payment; erring
   high would let a card overdraw.
3. Limits from the snapshot (`limit_counts`): consecutive offline payments, then per card
   and calendar day on this till, then per payment, then the balance.
4. Before the first snapshot the limits are zero: no offline payments at all.

A refused amount that the card could partly pay now is `PARTIAL` with `available_cents`
(what it may pay within balance and limits), so the front end can offer exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from hcard.errors import Code
from hcard.records import PaymentMode
from hcard.terminal.states import SPENT, UNWRITTEN, State


@dataclass(frozen=True)
class Limits:
    """The offline limits of the snapshot; all zero until the first one arrives."""

    per_payment_cents: int = 0
    per_card_day_cents: int = 0
    consecutive_offline: int = 0


@dataclass(frozen=True)
class CardPayment:
    """One of this till's payment records of a card, from the journal's bookkeeping."""

    seq: int
    mode: PaymentMode
    counter: int
    amount_cents: int
    state: State
    day: str


@dataclass(frozen=True)
class CardFacts:
    """What the card said at this tap (from `CardView`)."""

    card_number: str
    counter: int  # the highest purse counter on the card (0: never written)
    purse_cents: int | None = None  # the trusted purse's balance; None: no trusted purse
    purse_terminal_id: int | None = None  # the till that wrote that purse
    purse_code: Code | None = None  # PURSE_INVALID: purse data that cannot be trusted


@dataclass(frozen=True)
class SnapshotFacts:
    """What the last verified snapshot says about the card."""

    limits: Limits = Limits()
    deny_listed: bool = False
    balance_cents: int | None = None  # None: the card is not in the snapshot
    counter: int = 0  # the card's highest purse counter the server had seen
    trusted_counter: int = 0  # every purse write up to it known to the server (rule 2)
    # other tills' unconfirmed top-ups that the purse may hold (its writer's; rule 2)
    pending_in_purse_cents: int = 0

    @property
    def knows_card(self) -> bool:
        return self.balance_cents is not None


@dataclass(frozen=True)
class JournalFacts:
    """What this till's journal says about the card."""

    payments: Sequence[CardPayment] = ()  # this till's payment records of the card, by seq
    acked_seq: int = 0  # the server has every record up to this seq
    today: str = ""  # the (server-corrected) calendar day, as the journal writes it
    unsettled_topups_cents: int = 0  # top-ups the server may count, the till never showed
    refund_cents: int = 0  # owed back to the purse (`repair`)


class Verdict(StrEnum):
    APPROVE = "approve"  # pay the amount now: `purse_after_cents` goes onto the card
    PARTIAL = "partial"  # not this amount, but `available_cents` (more than 0) now
    DECLINE = "decline"  # nothing now: `code` says why


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    code: Code | None  # why not; None only on APPROVE
    # the balance the decision is based on; None when the till has none it can trust
    # (deny-listed, purse invalid, unknown card)
    balance_cents: int | None
    available_cents: int = 0  # what the card may pay offline now, limits applied
    purse_after_cents: int | None = None  # APPROVE: the purse the card is written with


@dataclass(frozen=True)
class Repair:
    """What this till's unfinished payments of a card mean for its next purse write."""

    counter_floor: int  # the highest counter our unwritten records used: never again
    refund_cents: int  # a cancelled payment's amount the purse still lacks: given back


def repair(card: CardFacts, payments: Sequence[CardPayment], terminal_id: int) -> Repair:
    """Counter floor and refund from this till's unfinished payments of the card.

    Counter floor: the highest counter used by our records of this card that never
    reached the card as a shown payment (declined, unanswered, cancelled): it must not be
    used again, or the server would see it twice and flag the card as rolled back.
    Counters of payments that did reach the card are not skipped, so a card whose memory
    was restored to an older state repeats a counter and is caught by the server.
    Refund: when the card holds exactly the purse of a payment that was cancelled before
    the till showed it (written by us, same counter), that payment's amount is owed back
    to the purse.
    """
    floor, refund_cents = 0, 0
    for paid in payments:
        if paid.state not in UNWRITTEN:
            continue
        floor = max(floor, paid.counter)
        if (
            paid.state == State.CANCELLED
            and paid.counter == card.counter
            and card.purse_cents is not None
            and card.purse_terminal_id == terminal_id
        ):
            refund_cents = paid.amount_cents
    return Repair(floor, refund_cents)


def balance_cents(card: CardFacts, snapshot: SnapshotFacts, journal: JournalFacts) -> int:
    """The balance an offline payment may use (rule 2). A card with neither a purse nor a
    place in the snapshot has none (ValueError; `decide` declines it `UNKNOWN_CARD`)."""
    server_cents = (
        None
        if snapshot.balance_cents is None
        else snapshot.balance_cents - journal.unsettled_topups_cents
    )
    if card.purse_cents is None:
        if server_cents is None:
            raise ValueError("no purse on the card and not in the snapshot")
        return server_cents
    purse_cents = card.purse_cents + journal.refund_cents - snapshot.pending_in_purse_cents
    if server_cents is None:
        return purse_cents
    if snapshot.trusted_counter >= card.counter:  # the server knows every purse write
        return server_cents
    return min(purse_cents, server_cents)


# module constants: an Enum member looked up on its class costs more than the comparison,
# and these loops run over every payment of the card at every tap
_ONLINE, _OFFLINE = PaymentMode.ONLINE, PaymentMode.OFFLINE


def limit_counts(
    card: CardFacts, snapshot: SnapshotFacts, journal: JournalFacts
) -> tuple[int, int]:
    """What counts toward the limits: (consecutive offline payments, cents spent today).

    Consecutive: offline purse writes of the card no server has seen yet, whichever till
    made them. The card's counter minus the highest counter the server is known to have
    seen (the snapshot's, our online records', our acknowledged records'), minus the
    counters our own unanswered, declined or cancelled records used up in between (they
    never meant a purse write the server will see); at least this till's own unsynced
    offline payments of the card. Another till's unanswered online try counts as an
    offline payment: the safe side.
    Spent today: this till's offline payments of the card today that took (or may take)
    money. One pass over the records (read at every tap), then one for the skipped ones.
    """
    acked_seq, today = journal.acked_seq, journal.today
    server_counter = snapshot.counter if snapshot.knows_card else 0
    unsynced, spent_today_cents = 0, 0
    for paid in journal.payments:
        seen = paid.mode == _ONLINE or paid.seq <= acked_seq
        if seen:  # the server has seen this counter (or it never reached the card)
            server_counter = max(server_counter, paid.counter)
        if paid.mode == _OFFLINE and paid.state in SPENT:
            spent_today_cents += paid.amount_cents if paid.day == today else 0
            unsynced += 0 if seen else 1
    skipped = sum(
        1
        for paid in journal.payments
        if paid.state in UNWRITTEN and server_counter < paid.counter <= card.counter
    )
    return max(card.counter - server_counter - skipped, unsynced), spent_today_cents


def decide(
    amount_cents: int, card: CardFacts, snapshot: SnapshotFacts, journal: JournalFacts
) -> Decision:
    """May the card pay `amount_cents` offline now? (module docstring, rules 1-4)"""
    if snapshot.deny_listed:
        return Decision(Verdict.DECLINE, Code.CARD_BLOCKED, None)
    if card.purse_code is not None:
        return Decision(Verdict.DECLINE, card.purse_code, None)
    if card.purse_cents is None and not snapshot.knows_card:
        return Decision(Verdict.DECLINE, Code.UNKNOWN_CARD, None)
    limits = snapshot.limits
    balance = balance_cents(card, snapshot, journal)
    consecutive, spent_today_cents = limit_counts(card, snapshot, journal)
    if consecutive >= limits.consecutive_offline:
        return Decision(Verdict.DECLINE, Code.OFFLINE_LIMIT_COUNT, balance)
    day_left_cents = limits.per_card_day_cents - spent_today_cents
    if day_left_cents <= 0:
        return Decision(Verdict.DECLINE, Code.OFFLINE_LIMIT_DAY, balance)
    available_cents = max(0, min(balance, limits.per_payment_cents, day_left_cents))
    if amount_cents > limits.per_payment_cents:
        code: Code | None = Code.OFFLINE_LIMIT_PAYMENT
    elif amount_cents > day_left_cents:
        code = Code.OFFLINE_LIMIT_DAY
    elif amount_cents > balance:
        code = Code.INSUFFICIENT_FUNDS
    else:
        return Decision(
            Verdict.APPROVE,
            None,
            balance,
            available_cents,
            purse_after_cents=balance - amount_cents,
        )
    verdict = Verdict.PARTIAL if available_cents > 0 else Verdict.DECLINE
    return Decision(verdict, code, balance, available_cents)
