"""`services/booking.py`: every transaction's postings, from what happened (pure, no database).

Authorisation and sync book payments, voids and till top-ups only through these functions,
the staff services top-ups, transfers and corrections; a test below keeps it that way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hcard.records import PaymentMode, RecordKind
from hcard.server.services import booking, ledger
from hcard.server.services.ledger import Posting, Txn
from hcard.server.vocabulary import TopupSource, TxnKind

CARD, MERCHANT, OTHER, FLOAT = 11, 22, 33, 44
TILL = booking.Till(terminal_id=7, merchant_account_id=MERCHANT, merchant_name="Eiscafé")


def _postings(txn: Txn) -> list[tuple[int, int, int | None]]:
    return [(e.account_id, e.amount_cents, e.floor_cents) for e in txn.entries]


def test_online_payment_guards_the_card_offline_does_not():
    online = booking.payment(TILL, 5, CARD, 250, PaymentMode.ONLINE)
    offline = booking.payment(TILL, 6, CARD, 250, PaymentMode.OFFLINE)
    assert _postings(online) == [(CARD, -250, 0), (MERCHANT, 250, None)]
    assert _postings(offline) == [(CARD, -250, None), (MERCHANT, 250, None)]
    for txn, seq in ((online, 5), (offline, 6)):
        assert (txn.kind, txn.label, txn.terminal_id, txn.seq) == (
            TxnKind.PAYMENT,
            "Eiscafé",
            7,
            seq,
        )
        assert (txn.user_id, txn.reason) == (None, None)


def test_till_topup_and_its_void_move_cash_between_merchant_and_card():
    topup = booking.till_topup(TILL, 8, CARD, 1_000)
    assert _postings(topup) == [(MERCHANT, -1_000, None), (CARD, 1_000, None)]
    assert (topup.kind, topup.label, topup.seq) == (TxnKind.TILL_TOPUP, "Aufladung Eiscafé", 8)
    void = booking.void(TILL, 9, CARD, 1_000, RecordKind.TOPUP_REQUEST)
    assert _postings(void) == [(MERCHANT, 1_000, None), (CARD, -1_000, None)]
    assert (void.kind, void.label, void.seq) == (TxnKind.VOID, "Storno Aufladung Eiscafé", 9)


def test_void_of_a_payment_gives_it_back():
    void = booking.void(TILL, 10, CARD, 250, "payment")  # as read from the journal table
    assert _postings(void) == [(MERCHANT, -250, None), (CARD, 250, None)]
    assert (void.kind, void.label, void.terminal_id) == (TxnKind.VOID, "Storno Eiscafé", 7)


def test_only_payments_and_till_topups_are_voided():
    with pytest.raises(ValueError, match="day_close"):
        booking.void(TILL, 11, CARD, 1, RecordKind.DAY_CLOSE)


@pytest.mark.parametrize(
    ("source", "label"),
    [
        (TopupSource.CASH, "Aufladung (bar)"),
        (TopupSource.BANK, "Aufladung (Überweisung)"),
        (TopupSource.ONLINE, "Aufladung (online)"),
    ],
)
def test_office_topup(source, label):
    txn = booking.topup(source, FLOAT, CARD, 2_000, user_id=3)
    assert _postings(txn) == [(FLOAT, -2_000, None), (CARD, 2_000, None)]
    assert (txn.kind, txn.label, txn.user_id, txn.terminal_id) == (TxnKind.TOPUP, label, 3, None)


def test_transfer_guards_the_old_card():
    txn = booking.transfer(CARD, OTHER, 700, "9276000000000018", "9276000000000026", 3)
    assert _postings(txn) == [(CARD, -700, 0), (OTHER, 700, None)]
    assert txn.label == "Übertrag 9276000000000018 → 9276000000000026"
    assert (txn.kind, txn.user_id) == (TxnKind.TRANSFER, 3)


@pytest.mark.parametrize(
    ("amount", "allow", "floor"),
    [(500, False, None), (-500, False, 0), (-500, True, None), (500, True, None)],
)
def test_correction_guards_an_unconfirmed_debit(amount, allow, floor):
    txn = booking.correction(CARD, FLOAT, amount, "Fehlbuchung", 1, allow_below_zero=allow)
    assert _postings(txn) == [(CARD, amount, floor), (FLOAT, -amount, None)]
    assert (txn.kind, txn.label, txn.reason, txn.user_id) == (
        TxnKind.CORRECTION,
        "Korrektur",
        "Fehlbuchung",
        1,
    )


def test_every_transaction_is_balanced_and_says_what_it_does_to_the_card():
    txns = [
        booking.payment(TILL, 1, CARD, 5, PaymentMode.ONLINE),
        booking.payment(TILL, 2, CARD, 5, PaymentMode.OFFLINE),
        booking.till_topup(TILL, 3, CARD, 5),
        booking.void(TILL, 4, CARD, 5, RecordKind.PAYMENT),
        booking.void(TILL, 5, CARD, 5, RecordKind.TOPUP_REQUEST),
        booking.topup(TopupSource.CASH, FLOAT, CARD, 5, 1),
        booking.transfer(OTHER, CARD, 5, "a", "b", 1),
        booking.correction(CARD, FLOAT, -5, "r", 1, allow_below_zero=True),
    ]
    for txn in txns:
        ledger.check_balanced(txn.entries)
    assert [txn.change_of(CARD) for txn in txns] == [-5, -5, 5, 5, -5, 5, 5, -5]
    assert txns[0].change_of(999) == 0


SERVER = Path(__file__).resolve().parents[2] / "server"


def test_postings_are_built_only_in_the_booking_module():
    """No service builds a `Posting` or a `Txn` itself: one place says what moves."""
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        if path.name in ("booking.py", "ledger.py") and path.parent.name == "services":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if name in (Posting.__name__, Txn.__name__):
                    found.append(f"{path.relative_to(SERVER)}:{node.lineno}")
    assert not found, found
