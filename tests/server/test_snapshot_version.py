"""The snapshot version moves in one place (`snapshot.cards_changed`): one new version per
change, on the cards changed, whether the ledger, a status change or a sync moved them."""

from __future__ import annotations

import ast
from pathlib import Path

import sqlalchemy as sa

from hcard.server.db import counters
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import cards, users
from hcard.server.services import booking, ledger, snapshot
from hcard.server.services import cards as card_service
from hcard.server.vocabulary import AccountKind, CounterName, Role, TopupSource

SERVER = Path(__file__).resolve().parents[2] / "server"


def _versions(conn: sa.Connection) -> dict[int, int]:
    return dict(conn.execute(sa.select(cards.c.id, cards.c.version)).all())


def test_each_change_is_one_new_version_on_the_cards_it_changed(db):
    with db_engine.write(db) as conn:
        (a, _), (b, _) = card_service._new_card(conn, 0.0), card_service._new_card(conn, 0.0)
        start = counters.current(conn, CounterName.VERSION)
        assert _versions(conn) == {a: 0, b: 0}
        account = conn.execute(sa.select(cards.c.account_id).where(cards.c.id == b)).scalar_one()
        user = conn.execute(
            sa.insert(users)
            .values(username="office", password_hash="-", role=Role.MARKETING, created_s=0.0)
            .returning(users.c.id)
        ).scalar_one()

    with db_engine.write(db) as conn:  # a status change (cards.bump)
        card_service.bump(conn, a, blocked=True)
        assert _versions(conn) == {a: start + 1, b: 0}

    with db_engine.write(db) as conn:  # a balance change (ledger.post_many): the cards it moved
        cash = ledger.system_account(conn, AccountKind.CASH)
        ledger.post(conn, booking.topup(TopupSource.CASH, cash, account, 100, user), now_s=0.0)
        assert _versions(conn) == {a: start + 1, b: start + 2}

    with db_engine.write(db) as conn:  # a sync batch's counters: one version, only rising ones
        version = snapshot.cards_changed(
            conn,
            sa.and_(
                cards.c.id == sa.bindparam("card_id"), cards.c.counter < sa.bindparam("counter")
            ),
            {"counter": sa.bindparam("counter")},
            rows=[{"card_id": a, "counter": 4}, {"card_id": b, "counter": 0}],
        )
        assert version == start + 3 == counters.current(conn, CounterName.VERSION)
        assert _versions(conn) == {a: start + 3, b: start + 2}
        assert conn.execute(sa.select(cards.c.counter).where(cards.c.id == a)).scalar_one() == 4


def test_only_the_snapshot_module_moves_the_version():
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        if path.name in ("snapshot.py", "vocabulary.py") or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # `CounterName.VERSION` (or `vocabulary.CounterName.VERSION`), not another
            # VERSION such as the record format's (`records.VERSION`)
            if (
                isinstance(node, ast.Attribute)
                and node.attr == CounterName.VERSION.name
                and ast.unparse(node.value).split(".")[-1] == CounterName.__name__
            ):
                found.append(f"{path.relative_to(SERVER)}:{node.lineno}")
    assert not found, found
