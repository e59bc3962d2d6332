"""The offline decision, case by case (`hcard.terminal.offline`, pure: no journal, no card).

Each limit is tried below, at and above its edge. The base case: the snapshot has seen every
purse write of the card (counter 5) and both say 100 €; limits 50 € per payment, 80 € per
card and day, 3 consecutive offline payments. The e2e tests (test_e2e_cards.py,
test_e2e_tills.py, ...) prove the till uses it unchanged.
"""

import subprocess
import sys
from dataclasses import replace

import pytest

from hcard.errors import Code
from hcard.records import PaymentMode
from hcard.terminal.offline import (
    CardFacts,
    CardPayment,
    Decision,
    JournalFacts,
    Limits,
    Repair,
    SnapshotFacts,
    Verdict,
    decide,
    repair,
)
from hcard.terminal.states import State

APPROVE, PARTIAL, DECLINE = Verdict.APPROVE, Verdict.PARTIAL, Verdict.DECLINE
NUMBER = "9276000000000016"
US, OTHER = 7, 8  # this till, another till
TODAY, YESTERDAY = "2026-12-01", "2026-11-30"
LIMITS = Limits(per_payment_cents=5_000, per_card_day_cents=8_000, consecutive_offline=3)

CARD = CardFacts(NUMBER, counter=5, purse_cents=10_000, purse_terminal_id=US)
SNAPSHOT = SnapshotFacts(LIMITS, balance_cents=10_000, counter=5, trusted_counter=5)
JOURNAL = JournalFacts(today=TODAY)


def card(**changes) -> CardFacts:
    return replace(CARD, **changes)


def snapshot(**changes) -> SnapshotFacts:
    return replace(SNAPSHOT, **changes)


def paid(
    seq: int,
    counter: int,
    amount_cents: int,
    state: State = State.FINAL,
    mode: PaymentMode = PaymentMode.OFFLINE,
    day: str = TODAY,
) -> CardPayment:
    return CardPayment(seq, mode, counter, amount_cents, state, day)


def journal(*payments: CardPayment, **changes) -> JournalFacts:
    return replace(JOURNAL, payments=payments, **changes)


def spent(amount_cents: int, day: str = TODAY, state: State = State.FINAL) -> JournalFacts:
    """This till took `amount_cents` offline from the card (acknowledged: the counter is seen)."""
    return journal(paid(1, 5, amount_cents, state=state, day=day), acked_seq=1)


def approve(balance: int, amount: int, available: int) -> Decision:
    return Decision(APPROVE, None, balance, available, purse_after_cents=balance - amount)


# (id, amount, card, snapshot, journal, expected)
CASES = [
    # --- refused before any balance: deny-list, untrusted purse, unknown card
    ("deny-listed", 100, CARD, snapshot(deny_listed=True), JOURNAL,
     Decision(DECLINE, Code.CARD_BLOCKED, None)),
    ("deny-list before purse check", 100, card(purse_code=Code.PURSE_INVALID),
     snapshot(deny_listed=True), JOURNAL, Decision(DECLINE, Code.CARD_BLOCKED, None)),
    ("untrusted purse", 100, card(purse_code=Code.PURSE_INVALID), SNAPSHOT, JOURNAL,
     Decision(DECLINE, Code.PURSE_INVALID, None)),
    ("no purse, not in snapshot", 100, card(purse_cents=None, counter=0),
     snapshot(balance_cents=None, counter=0), JOURNAL, Decision(DECLINE, Code.UNKNOWN_CARD, None)),
    # --- per payment (50 €): below, at, above
    ("per payment below", 4_999, CARD, SNAPSHOT, JOURNAL, approve(10_000, 4_999, 5_000)),
    ("per payment at", 5_000, CARD, SNAPSHOT, JOURNAL, approve(10_000, 5_000, 5_000)),
    ("per payment above", 5_001, CARD, SNAPSHOT, JOURNAL,
     Decision(PARTIAL, Code.OFFLINE_LIMIT_PAYMENT, 10_000, 5_000)),
    # --- per card and day (80 €), 40 € spent today: 40 € left
    ("per day below", 3_999, CARD, SNAPSHOT, spent(4_000), approve(10_000, 3_999, 4_000)),
    ("per day at", 4_000, CARD, SNAPSHOT, spent(4_000), approve(10_000, 4_000, 4_000)),
    ("per day above", 4_001, CARD, SNAPSHOT, spent(4_000),
     Decision(PARTIAL, Code.OFFLINE_LIMIT_DAY, 10_000, 4_000)),
    ("per day: 1 cent left", 1, CARD, SNAPSHOT, spent(7_999), approve(10_000, 1, 1)),
    ("per day: used up", 1, CARD, SNAPSHOT, spent(8_000),
     Decision(DECLINE, Code.OFFLINE_LIMIT_DAY, 10_000)),
    ("per day: over", 1, CARD, SNAPSHOT, spent(8_001),
     Decision(DECLINE, Code.OFFLINE_LIMIT_DAY, 10_000)),
    ("per day: yesterday's does not count", 4_500, CARD, SNAPSHOT, spent(8_000, YESTERDAY),
     approve(10_000, 4_500, 5_000)),
    ("per day: a voided payment counts", 1, CARD, SNAPSHOT,
     spent(8_000, state=State.VOIDED), Decision(DECLINE, Code.OFFLINE_LIMIT_DAY, 10_000)),
    ("per day: a cancelled one does not", 4_500, CARD, SNAPSHOT,
     spent(8_000, state=State.CANCELLED), approve(10_000, 4_500, 5_000)),
    ("per day: online payments do not", 4_500, CARD, SNAPSHOT,
     journal(paid(1, 5, 8_000, mode=PaymentMode.ONLINE)), approve(10_000, 4_500, 5_000)),
    # --- consecutive offline (3): writes the server has not seen = card 5 - snapshot's
    ("consecutive below", 100, CARD, snapshot(counter=3), JOURNAL,
     approve(10_000, 100, 5_000)),
    ("consecutive at", 100, CARD, snapshot(counter=2), JOURNAL,
     Decision(DECLINE, Code.OFFLINE_LIMIT_COUNT, 10_000)),
    ("consecutive above", 100, CARD, snapshot(counter=1), JOURNAL,
     Decision(DECLINE, Code.OFFLINE_LIMIT_COUNT, 10_000)),
    ("consecutive: card not in snapshot counts from 0", 100, card(counter=3),
     snapshot(balance_cents=None, counter=0), JOURNAL,
     Decision(DECLINE, Code.OFFLINE_LIMIT_COUNT, 10_000)),
    ("consecutive: our acknowledged record is seen", 100, CARD, snapshot(counter=1),
     journal(paid(9, 3, 100), acked_seq=9), approve(10_000, 100, 5_000)),
    ("consecutive: our online record is seen", 100, CARD, snapshot(counter=1),
     journal(paid(9, 3, 100, mode=PaymentMode.ONLINE)), approve(10_000, 100, 5_000)),
    ("consecutive: our cancelled offline write is skipped", 100, CARD, snapshot(counter=2),
     journal(paid(9, 4, 100, state=State.CANCELLED)), approve(10_000, 100, 5_000)),
    ("consecutive: a skipped counter beyond the card's is not", 100, CARD,
     snapshot(counter=2), journal(paid(9, 6, 100, state=State.CANCELLED)),
     Decision(DECLINE, Code.OFFLINE_LIMIT_COUNT, 10_000)),
    ("consecutive: 2 unsynced of ours", 100, CARD, SNAPSHOT,
     journal(paid(1, 4, 100), paid(2, 5, 100)), approve(10_000, 100, 5_000)),
    ("consecutive: 3 unsynced of ours", 100, CARD, SNAPSHOT,
     journal(paid(1, 3, 100), paid(2, 4, 100), paid(3, 5, 100)),
     Decision(DECLINE, Code.OFFLINE_LIMIT_COUNT, 10_000)),
    ("consecutive: 3 of ours, acknowledged", 100, CARD, SNAPSHOT,
     journal(paid(1, 3, 100), paid(2, 4, 100), paid(3, 5, 100), acked_seq=3),
     approve(10_000, 100, 5_000)),
    ("before the first snapshot: no offline payments", 100, CARD,
     SnapshotFacts(), JOURNAL, Decision(DECLINE, Code.OFFLINE_LIMIT_COUNT, 10_000)),
    # --- balance: below, at, above (30 €)
    ("balance below", 2_999, CARD, snapshot(balance_cents=3_000), JOURNAL,
     approve(3_000, 2_999, 3_000)),
    ("balance at", 3_000, CARD, snapshot(balance_cents=3_000), JOURNAL,
     approve(3_000, 3_000, 3_000)),
    ("balance above", 3_001, CARD, snapshot(balance_cents=3_000), JOURNAL,
     Decision(PARTIAL, Code.INSUFFICIENT_FUNDS, 3_000, 3_000)),
    ("balance empty", 1, CARD, snapshot(balance_cents=0), JOURNAL,
     Decision(DECLINE, Code.INSUFFICIENT_FUNDS, 0, 0)),
    ("balance below zero", 1, CARD, snapshot(balance_cents=-500), JOURNAL,
     Decision(DECLINE, Code.INSUFFICIENT_FUNDS, -500, 0)),
    # --- which balance: the snapshot's when its trusted counter covers the card's, else the lower
    ("snapshot covers the card: its balance, though the purse says more", 100,
     card(purse_cents=9_000), snapshot(balance_cents=2_000), JOURNAL,
     approve(2_000, 100, 2_000)),
    ("snapshot covers the card: its balance, though the purse says less", 100,
     card(purse_cents=1_000), snapshot(balance_cents=2_000), JOURNAL,
     approve(2_000, 100, 2_000)),
    ("a write seen above one not known (trusted below the card): the purse when lower", 100,
     card(purse_cents=1_000), snapshot(balance_cents=2_000, counter=5, trusted_counter=3),
     JOURNAL, approve(1_000, 100, 1_000)),
    ("the limits count from the highest counter seen, not the trusted one", 100,
     card(purse_cents=1_000), snapshot(balance_cents=2_000, counter=5, trusted_counter=0),
     JOURNAL, approve(1_000, 100, 1_000)),
    ("offline writes since the snapshot: the purse when lower", 100,
     card(purse_cents=1_000), snapshot(balance_cents=2_000, counter=4, trusted_counter=4), JOURNAL,
     approve(1_000, 100, 1_000)),
    ("offline writes since the snapshot: the snapshot when lower", 100,
     card(purse_cents=3_000), snapshot(balance_cents=2_000, counter=4, trusted_counter=4), JOURNAL,
     approve(2_000, 100, 2_000)),
    ("another till's unconfirmed top-up comes off a purse it wrote", 100,
     card(purse_cents=3_000, purse_terminal_id=OTHER),
     snapshot(balance_cents=2_000, counter=4, trusted_counter=4, pending_in_purse_cents=1_500),
     JOURNAL, approve(1_500, 100, 1_500)),
    ("card not in the snapshot: the purse", 100, card(counter=1, purse_cents=1_500),
     snapshot(balance_cents=None, counter=0), JOURNAL, approve(1_500, 100, 1_500)),
    ("card never written: the snapshot", 100, card(counter=0, purse_cents=None),
     snapshot(balance_cents=1_500, counter=0), JOURNAL, approve(1_500, 100, 1_500)),
    ("unsettled top-ups come off the snapshot's balance", 1_001, CARD,
     snapshot(balance_cents=2_000), journal(unsettled_topups_cents=1_000),
     Decision(PARTIAL, Code.INSUFFICIENT_FUNDS, 1_000, 1_000)),
    ("a refund owed goes onto the purse", 1_200, card(purse_cents=1_000),
     snapshot(balance_cents=5_000, counter=4, trusted_counter=4), journal(refund_cents=200),
     approve(1_200, 1_200, 1_200)),
    ("no refund onto the server's balance", 1_200, card(purse_cents=1_000),
     snapshot(balance_cents=1_000), journal(refund_cents=200),
     Decision(PARTIAL, Code.INSUFFICIENT_FUNDS, 1_000, 1_000)),
    # --- order: count, then day, then per payment, then balance
    ("count before day", 100, CARD, snapshot(counter=2),
     journal(paid(1, 2, 8_000), acked_seq=1),
     Decision(DECLINE, Code.OFFLINE_LIMIT_COUNT, 10_000)),
    ("per payment before day", 5_001, CARD, SNAPSHOT, spent(4_000),
     Decision(PARTIAL, Code.OFFLINE_LIMIT_PAYMENT, 10_000, 4_000)),
    ("per payment before balance", 5_001, CARD, snapshot(balance_cents=3_000), JOURNAL,
     Decision(PARTIAL, Code.OFFLINE_LIMIT_PAYMENT, 3_000, 3_000)),
    ("day before balance", 4_001, CARD, snapshot(balance_cents=3_000), spent(4_000),
     Decision(PARTIAL, Code.OFFLINE_LIMIT_DAY, 3_000, 3_000)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("amount", "card_facts", "snapshot_facts", "journal_facts", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide(amount, card_facts, snapshot_facts, journal_facts, expected):
    decision = decide(amount, card_facts, snapshot_facts, journal_facts)
    assert decision == expected
    # the named decision is consistent with itself
    assert (decision.code is None) == (decision.verdict == APPROVE)
    assert (decision.verdict == PARTIAL) == (
        decision.code is not None and decision.available_cents > 0
    )


# (id, card, payments, expected)
REPAIRS = [
    ("nothing unfinished", CARD, [paid(1, 4, 100), paid(2, 5, 100)], Repair(0, 0)),
    ("unanswered, declined and waiting counters are never used again", CARD,
     [paid(1, 6, 100, State.UNSHOWN), paid(2, 8, 100, State.DECLINED),
      paid(3, 7, 100, State.INTENT), paid(4, 9, 100, State.FINAL)],
     Repair(8, 0)),
    ("cancelled, and our purse with its counter is on the card: refund", CARD,
     [paid(1, 5, 250, State.CANCELLED)], Repair(5, 250)),
    ("cancelled, the card has another counter: no refund", CARD,
     [paid(1, 6, 250, State.CANCELLED)], Repair(6, 0)),
    ("cancelled, the purse is another till's: no refund", card(purse_terminal_id=OTHER),
     [paid(1, 5, 250, State.CANCELLED)], Repair(5, 0)),
    ("cancelled, no trusted purse: no refund", card(purse_cents=None, purse_terminal_id=None),
     [paid(1, 5, 250, State.CANCELLED)], Repair(5, 0)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("card_facts", "payments", "expected"),
    [case[1:] for case in REPAIRS],
    ids=[case[0] for case in REPAIRS],
)
def test_repair(card_facts, payments, expected):
    assert repair(card_facts, payments, US) == expected


def test_the_decision_needs_no_database_reader_or_network():
    script = (
        "import sys, hcard.terminal.offline\n"
        "heavy = ('sqlite3', 'sqlite_utils', 'nfc', 'requests')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.stdout.strip() == "[]", run.stderr
