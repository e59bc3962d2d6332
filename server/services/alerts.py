"""Alerts: what the server saw and a person must look at (gaps, forks, rollbacks, overdraws).

Written by `sync` inside the transaction that found the problem, so an alert
exists exactly when the refusal or booking that it explains does.
"""

from __future__ import annotations

import sqlalchemy as sa

from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import alerts
from hcard.server.services.users import Staff


def list_alerts(ctx: Context, actor: Staff, limit: int = 200) -> list[dict[str, object]]:
    actor.require("admin", "marketing")
    with db_engine.read(ctx.engine) as conn:
        rows = conn.execute(
            sa.select(alerts).order_by(alerts.c.id.desc()).limit(max(1, min(limit, 1000)))
        ).mappings()
        return [dict(row) for row in rows]
