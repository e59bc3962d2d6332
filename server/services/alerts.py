"""Alerts: what the server saw and a person must look at (gaps, forks, rollbacks, overdraws,
a revoked terminal that still calls).

Written by `sync` inside the transaction that found the problem, so an alert
exists exactly when the refusal or booking that it explains does.
"""

from __future__ import annotations

import sqlalchemy as sa

from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db import locking
from hcard.server.db.tables import alerts
from hcard.server.services.users import Staff
from hcard.server.vocabulary import OFFICE, AlertKind

#: what an alert's detail keeps of the request path (the query is the terminal's own text)
_DETAIL_MAX = 200


def record(
    conn: sa.Connection, ctx: Context, kind: AlertKind, detail: str, *, card: str | None = None
) -> None:
    """One alert written in the caller's transaction (a staff action that needs a look)."""
    conn.execute(
        sa.insert(alerts).values(
            kind=kind, card=card, detail=detail[:_DETAIL_MAX], created_s=ctx.now()
        )
    )


def revoked_terminal_called(ctx: Context, terminal_id: int, method: str, path: str) -> None:
    """Record that a revoked terminal made a request that its own key signed.

    The caller checks the signature first: only the lost or stolen device itself can
    make this row change, never unauthenticated noise. One alert per terminal, counting
    repeats (`count`, `last_s`, `detail` = the latest request), so a till that keeps
    retrying its sync cannot fill the table.
    """
    now = ctx.now()
    detail = f"revoked terminal {terminal_id} called {method} {path}"[:_DETAIL_MAX]

    def record(conn: sa.Connection) -> None:
        # The terminal's row lock (PostgreSQL; SQLite writers are serialised anyway) makes
        # two requests at once find or make the same one alert.
        locking.terminal(conn, terminal_id)
        repeated = conn.execute(
            sa.update(alerts)
            .where(alerts.c.kind == AlertKind.REVOKED_TERMINAL, alerts.c.terminal_id == terminal_id)
            .values(count=alerts.c.count + 1, last_s=now, detail=detail)
        ).rowcount
        if not repeated:
            conn.execute(
                sa.insert(alerts).values(
                    kind=AlertKind.REVOKED_TERMINAL,
                    terminal_id=terminal_id,
                    detail=detail,
                    created_s=now,
                )
            )

    db_engine.unit(ctx.engine, record)


def list_alerts(ctx: Context, actor: Staff, limit: int = 200) -> list[dict[str, object]]:
    """Newest activity first: an old alert that just happened again comes back to the top."""
    actor.require(*OFFICE)
    latest = sa.func.coalesce(alerts.c.last_s, alerts.c.created_s)
    with db_engine.read(ctx.engine) as conn:
        rows = conn.execute(
            sa.select(alerts)
            .order_by(latest.desc(), alerts.c.id.desc())
            .limit(max(1, min(limit, 1000)))
        ).mappings()
        return [dict(row) for row in rows]
