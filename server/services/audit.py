"""The audit log: every staff action, who did it, what, to which, when and from where.

Written by `api/audit.py` for every request that changes something and was made by a
logged-in user (the JSON API and the office pages alike), and for every login attempt.
It records the route's name and its path parameters, never a form's values (a password,
an IBAN): what happened is in the ledger and the tables; this says who asked.
"""

from __future__ import annotations

import sqlalchemy as sa

from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import audit_log, users
from hcard.server.services.users import Staff
from hcard.server.vocabulary import Role

_TARGET_MAX_CHARS = 200
_ACTION_MAX_CHARS = 60
_USERNAME_MAX_CHARS = 80
MAX_ROWS = 500


def record(
    ctx: Context,
    *,
    user_id: int | None,
    username: str,
    action: str,
    target: str,
    address: str,
    status: int,
) -> None:
    """One row, in its own transaction (after the answer: the action itself is done)."""
    with db_engine.write(ctx.engine) as conn:
        conn.execute(
            sa.insert(audit_log).values(
                at_s=ctx.now(),
                user_id=user_id,
                username=username[:_USERNAME_MAX_CHARS],
                action=action[:_ACTION_MAX_CHARS],
                target=target[:_TARGET_MAX_CHARS],
                address=address[:64],
                status=status,
            )
        )


def entries(
    ctx: Context, actor: Staff, *, before_id: int | None = None, limit: int = 100
) -> list[dict[str, object]]:
    """Newest first, a page at a time (`before_id`: the last id of the previous page)."""
    actor.require(Role.ADMIN)
    query = (
        sa.select(audit_log, users.c.role)
        .select_from(audit_log.outerjoin(users, users.c.id == audit_log.c.user_id))
        .order_by(audit_log.c.id.desc())
        .limit(max(1, min(limit, MAX_ROWS)))
    )
    if before_id is not None:
        query = query.where(audit_log.c.id < before_id)
    with db_engine.read(ctx.engine) as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
