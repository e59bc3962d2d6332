"""Alerts: a kind for an online record booked because the till showed it approved while the
server had no authorisation for it (`shown_not_authorised`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

A server restored from a backup taken before it approved a payment books it from the till's
`shown` list (the customer saw "paid"); honest running never gets there, so each such
booking is shown to the office.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = (
    "'chain_gap', 'chain_fork', 'bad_signature', 'bad_record', 'journal_foreign', "
    "'card_rollback', 'overdraw', 'unknown_card', 'revoked_terminal', 'card_copied', "
    "'payout_returned'"
)
_KINDS_BEFORE = f"kind IN ({_KINDS})"
_KINDS_AFTER = f"kind IN ({_KINDS}, 'shown_not_authorised')"


def upgrade() -> None:
    """Upgrade schema."""
    # batch: on SQLite the table is copied (it cannot alter a CHECK constraint in place)
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint(op.f("ck_alerts_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_alerts_kind"), _KINDS_AFTER)


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM alerts WHERE kind = 'shown_not_authorised'")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint(op.f("ck_alerts_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_alerts_kind"), _KINDS_BEFORE)
