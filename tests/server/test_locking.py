"""`server/db/locking.py`: locks only inside a write transaction, only in the one order
(terminal → accounts by id, cards' accounts by number, then merchants' accounts by id →
version row), on both engines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sqlalchemy as sa

from hcard.server.db import engine as db_engine
from hcard.server.db import locking
from hcard.server.db.tables import merchants, terminals
from hcard.server.services import cards, ledger
from hcard.server.services.snapshot import cards_changed
from hcard.server.vocabulary import AccountKind, TerminalStatus

SERVER = Path(__file__).resolve().parents[2] / "server"


@pytest.fixture
def rows(db):
    """Two terminals, a merchant's account (the lowest id), three other accounts and two
    cards (their accounts have the highest ids)."""
    with db_engine.write(db) as conn:
        shop = ledger.create_account(conn, "merchant:1", AccountKind.MERCHANT)
        low = [ledger.create_account(conn, f"card:x{i}", AccountKind.CARD) for i in range(3)]
        merchant = conn.execute(
            sa.insert(merchants)
            .values(name="Laden", iban="DE89370400440532013000", account_id=shop, created_s=0)
            .returning(merchants.c.id)
        ).scalar_one()
        tills = [
            conn.execute(
                sa.insert(terminals)
                .values(
                    merchant_id=merchant, name=f"K{i}", status=TerminalStatus.PENDING, created_s=0
                )
                .returning(terminals.c.id)
            ).scalar_one()
            for i in range(2)
        ]
        numbers = [cards._new_card(conn, 0.0)[1] for _ in range(2)]
    return {"accounts": low, "merchant": shop, "terminals": tills, "cards": numbers}


def test_locks_only_in_a_write_transaction(db, rows):
    terminal = rows["terminals"][0]
    with db_engine.read(db) as conn:
        with pytest.raises(locking.NotInWriteTransactionError):
            locking.terminal(conn, terminal)
        with pytest.raises(locking.NotInWriteTransactionError):
            locking.accounts(conn, rows["accounts"])
        with pytest.raises(locking.NotInWriteTransactionError):
            cards_changed(conn, sa.false())
    with db.begin() as conn, pytest.raises(locking.NotInWriteTransactionError):
        locking.terminal(conn, terminal)  # a transaction, but not through db_engine.write
    with db.connect() as conn, pytest.raises(locking.NotInWriteTransactionError):
        locking.accounts(conn.execution_options(hcard_write=True), rows["accounts"])
    with db_engine.write(db) as conn:
        assert locking.terminal(conn, terminal, terminals.c.name).name == "K0"
        assert locking.terminal(conn, 10**9) is None


def test_the_one_order_is_allowed_and_may_repeat(db, rows):
    a, b, _c = rows["accounts"]
    with db_engine.write(db) as conn:
        locking.terminal(conn, rows["terminals"][0])
        locking.terminal(conn, rows["terminals"][0])
        locking.accounts(conn, [a, b])
        locking.accounts(conn, [b], rows["cards"])  # held again, and higher ids
        locking.accounts(conn, [a])
        locking.accounts(conn, [rows["merchant"]])  # a merchant's last, whatever its id
        locking.accounts(conn, [a, rows["merchant"]])
        locking.version_counter(conn)
        locking.version_counter(conn)


@pytest.mark.parametrize(
    "steps",
    [
        ["accounts a", "terminal 0"],
        ["version", "accounts a"],
        ["version", "terminal 0"],
        ["accounts c", "accounts a"],
        ["cards", "accounts a"],  # a card's account has a higher id than `a`
        ["merchant", "accounts a"],  # its id is lower, but a merchant's account comes last
        ["terminal 1", "terminal 0"],
    ],
    ids=lambda steps: " then ".join(steps),
)
def test_against_the_order_is_refused(db, rows, steps):
    a, _b, c = rows["accounts"]
    do = {
        "terminal 0": lambda conn: locking.terminal(conn, rows["terminals"][0]),
        "terminal 1": lambda conn: locking.terminal(conn, rows["terminals"][1]),
        "accounts a": lambda conn: locking.accounts(conn, [a]),
        "accounts c": lambda conn: locking.accounts(conn, [c]),
        "merchant": lambda conn: locking.accounts(conn, [rows["merchant"]]),
        "cards": lambda conn: locking.accounts(conn, (), rows["cards"]),
        "version": locking.version_counter,
    }
    if steps[0] == "cards" and db_engine.is_sqlite(db):
        pytest.skip("SQLite does not look a card's account up (no row lock to take)")
    with db_engine.write(db) as conn:
        do[steps[0]](conn)
        with pytest.raises(locking.LockOrderError):
            do[steps[1]](conn)


def test_after_cards_by_number_sqlite_checks_the_kinds_only(db, rows):
    a, _b, _c = rows["accounts"]
    with db_engine.write(db) as conn:
        locking.accounts(conn, (), rows["cards"])
        if db_engine.is_sqlite(db):
            locking.accounts(conn, [a])  # its id is below the cards' accounts: not known here
        locking.version_counter(conn)
        with pytest.raises(locking.LockOrderError):
            locking.accounts(conn, [a])


def test_each_savepoint_unit_is_its_own_sequence(db, rows):
    """The SQLite group writer runs units one after another in SAVEPOINTs of one
    transaction: a unit that took accounts does not stop the next one taking a terminal."""
    a, _b, _c = rows["accounts"]
    with db_engine.write(db) as conn:
        with conn.begin_nested():
            locking.accounts(conn, [a])
            locking.version_counter(conn)
        with conn.begin_nested():
            locking.terminal(conn, rows["terminals"][0])
            locking.accounts(conn, [a])


def test_no_lock_is_taken_outside_the_locking_module():
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        if path.name == "locking.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "with_for_update":
                found.append(f"{path.relative_to(SERVER)}:{node.lineno}")
    assert not found, found
