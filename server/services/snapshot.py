"""The snapshot terminals cache for offline decisions, signed with the issuer key.

Versioned by one counter that every change a terminal must learn about bumps
(a card's balance, its deny status, its counter): `since=<version>` returns only
cards changed after that version. `cards_changed` is the one function that moves
it (the ledger for balances, `cards.bump` for status, sync for counters). The
counter is read before the cards, so a change committed in between is sent again
next time rather than missed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from hcard import signed
from hcard.server.context import Context
from hcard.server.db import counters, locking
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import accounts, cards, terminals
from hcard.server.vocabulary import CounterName, TerminalStatus


def cards_changed(
    conn: sa.Connection,
    where: sa.ColumnElement[bool],
    values: Mapping[str, Any] | None = None,
    *,
    rows: Sequence[Mapping[str, Any]] = (),
) -> int:
    """Update the cards `where` selects with `values` and give them a new snapshot version,
    so that the tills learn the change from their next snapshot; return that version.

    The one place the version moves: one new version per call, however many cards.
    `rows` runs the statement once per row (executemany) with bound parameters.
    """
    locking.version_counter(conn)
    version = counters.next_value(conn, CounterName.VERSION)
    statement = sa.update(cards).where(where).values(version=version, **(values or {}))
    if rows:
        conn.execute(statement, list(rows))
    else:
        conn.execute(statement)
    return version


def build(ctx: Context, since: int) -> dict[str, object]:
    with db_engine.read(ctx.engine) as conn:
        version = counters.current(conn, CounterName.VERSION)
        full = since <= 0 or since > version
        query = (
            sa.select(
                cards.c.number,
                cards.c.blocked,
                cards.c.flagged,
                cards.c.counter,
                accounts.c.balance_cents,
            )
            .select_from(cards.join(accounts, accounts.c.id == cards.c.account_id))
            .where(cards.c.uid.is_not(None))
            .order_by(cards.c.id)
        )
        if not full:
            query = query.where(cards.c.version > since)
        rows = conn.execute(query).all()
        keys = conn.execute(
            sa.select(terminals.c.id, terminals.c.public_key).where(
                terminals.c.status == TerminalStatus.ACTIVE
            )
        ).all()
    denied = [row.number for row in rows if row.blocked or row.flagged]
    snapshot = {
        "version": version,
        "full": full,
        "deny_add": denied,
        "deny_remove": [] if full else [r.number for r in rows if not (r.blocked or r.flagged)],
        "balances": {
            row.number: {"balance_cents": row.balance_cents, "counter": row.counter} for row in rows
        },
        "limits": ctx.settings.limits.as_json(),
        "terminal_keys": {str(row.id): row.public_key for row in keys},
        "issuer_public_key": ctx.issuer_public_hex,
        "server_time_s": int(ctx.now()),
    }
    return {
        "snapshot": snapshot,
        "sig": signed.sign_document(ctx.issuer_key, signed.DOMAIN_SNAPSHOT, snapshot),
    }
