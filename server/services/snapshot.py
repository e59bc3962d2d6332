"""The snapshot terminals cache for offline decisions, signed with the issuer key.

Versioned by one counter that every change a terminal must learn about bumps
(a card's balance, its deny status): `since=<version>` returns only cards
changed after that version. The counter is read before the cards, so a change
committed in between is sent again next time rather than missed.
"""

from __future__ import annotations

import sqlalchemy as sa

from hcard import signed
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import accounts, cards, counters, terminals
from hcard.server.vocabulary import CounterName, TerminalStatus


def build(ctx: Context, since: int) -> dict[str, object]:
    with db_engine.read(ctx.engine) as conn:
        version = conn.execute(
            sa.select(counters.c.value).where(counters.c.name == CounterName.VERSION)
        ).scalar_one()
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
