"""The ledger's invariants are checks that stay on in production: a booking that breaks one
raises `LedgerInvariantError` before anything is written, also under `python -O`."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

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


def test_the_check_reads_one_snapshot_and_lets_the_tills_book_meanwhile(db):
    """`ledger check` takes seconds on a big database: it must neither stop a till's booking
    (no write lock) nor see half of one that commits while it runs (one snapshot). The
    check is held after its first query while a booking commits."""
    card, _other, shop = _accounts(db)
    topup = ledger.Txn(TxnKind.TOPUP, [P(shop, -5), P(card, 5)])
    with db_engine.write(db) as conn:
        ledger.post(conn, topup, now_s=0.0)
    first_query_done, go_on = threading.Event(), threading.Event()
    reports: list[ledger.CheckReport] = []

    def hold_after_first_query(_conn, _cursor, statement, *_args) -> None:
        if threading.current_thread() is checker and statement.lstrip().upper().startswith(
            "SELECT"
        ):
            first_query_done.set()
            go_on.wait(timeout=60)

    checker = threading.Thread(target=lambda: reports.append(ledger.check(db)))
    booking = threading.Thread(target=_book, args=(db, topup))
    sa.event.listen(db, "after_cursor_execute", hold_after_first_query)
    try:
        checker.start()
        assert first_query_done.wait(timeout=30)
        booking.start()
        booking.join(timeout=10)
        booked_meanwhile = not booking.is_alive()
    finally:
        go_on.set()
        checker.join(timeout=60)
        if booking.ident is not None:
            booking.join(timeout=60)
        sa.event.remove(db, "after_cursor_execute", hold_after_first_query)
    assert booked_meanwhile, "the booking waited for the ledger check"
    (report,) = reports
    assert report.ok
    assert (report.transactions, report.postings) == (1, 2)  # as when the check began
    assert (ledger.check(db).transactions, ledger.check(db).postings) == (2, 4)


def _book(db, txn: ledger.Txn) -> None:
    with db_engine.write(db) as conn:
        ledger.post(conn, txn, now_s=0.0)
