"""The ledger's invariants are checks that stay on in production: a booking that breaks one
raises `LedgerInvariantError` before anything is written, also under `python -O`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hcard.server.db import engine as db_engine
from hcard.server.services import ledger
from hcard.server.services.ledger import LedgerInvariantError, Posting
from hcard.server.vocabulary import AccountKind, TxnKind

P = Posting


def _accounts(db) -> tuple[int, int, int]:
    with db_engine.write(db) as conn:
        card = ledger.create_account(conn, "card:1", AccountKind.CARD)
        other = ledger.create_account(conn, "card:2", AccountKind.CARD)
        shop = ledger.create_account(conn, "merchant:1", AccountKind.MERCHANT)
    return card, other, shop


BROKEN = {
    "one posting": (lambda a, b, c: [P(a, 5)], "at least two accounts"),
    "no postings": (lambda a, b, c: [], "at least two accounts"),
    "account twice": (lambda a, b, c: [P(a, -5), P(a, 5)], "each account at most once"),
    "zero posting": (lambda a, b, c: [P(a, -5), P(b, 5), P(c, 0)], "no zero postings"),
    "does not sum to zero": (lambda a, b, c: [P(a, -5), P(c, 4)], "sum to zero, not -1"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_transaction_is_refused_before_anything_is_written(db, case):
    accounts = _accounts(db)
    make, reason = BROKEN[case]
    with pytest.raises(LedgerInvariantError, match=reason), db_engine.write(db) as conn:
        ledger.post_many(
            conn,
            [
                ledger.Txn(TxnKind.TOPUP, [P(accounts[0], 7), P(accounts[2], -7)]),  # fine
                ledger.Txn(TxnKind.PAYMENT, make(*accounts)),
            ],
            now_s=0.0,
        )
    report = ledger.check(db)
    assert report.ok
    assert (report.transactions, report.postings) == (0, 0)


def test_two_guarded_debits_in_one_call_are_refused(db):
    card, other, shop = _accounts(db)
    txns = [
        ledger.Txn(TxnKind.PAYMENT, [P(card, -1, floor_cents=0), P(shop, 1)]),
        ledger.Txn(TxnKind.PAYMENT, [P(other, -1, floor_cents=0), P(shop, 1)]),
    ]
    with pytest.raises(LedgerInvariantError, match="guarded"), db_engine.write(db) as conn:
        ledger.post_many(conn, txns, now_s=0.0)
    assert ledger.check(db).transactions == 0


def test_a_balanced_transaction_is_booked(db):
    card, _other, shop = _accounts(db)
    with db_engine.write(db) as conn:
        ledger.post(conn, ledger.Txn(TxnKind.TOPUP, [P(shop, -5), P(card, 5)]), now_s=0.0)
    report = ledger.check(db)
    assert report.ok
    assert (report.transactions, report.postings) == (1, 2)


def test_checks_stay_on_under_python_O():
    """`python -O` strips `assert`: the ledger's checks must not be asserts."""
    script = (
        "from hcard.server.services import ledger\n"
        "try:\n"
        "    assert False\n"
        "except AssertionError:\n"
        "    raise SystemExit('not running with -O')\n"
        "for entries in ([], [ledger.Posting(1, -5), ledger.Posting(2, 4)]):\n"
        "    try:\n"
        "        ledger.check_balanced(entries)\n"
        "    except ledger.LedgerInvariantError as exc:\n"
        "        print('refused:', exc)\n"
        "    else:\n"
        "        raise SystemExit('booked an unbalanced transaction')\n"
    )
    run = subprocess.run(
        [sys.executable, "-O", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.stdout.count("refused:") == 2
