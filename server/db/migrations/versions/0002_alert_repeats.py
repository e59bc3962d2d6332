"""Alerts: a kind for a revoked terminal that still calls, and a repeat count.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

A revoked (lost or stolen) terminal that keeps calling is one alert per terminal whose
`count` and `last_s` go up, instead of a row per request filling the table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS_BEFORE = (
    "kind IN ('chain_gap', 'chain_fork', 'bad_signature', 'bad_record', 'journal_foreign', "
    "'card_rollback', 'overdraw', 'unknown_card')"
)
_KINDS_AFTER = (
    "kind IN ('chain_gap', 'chain_fork', 'bad_signature', 'bad_record', 'journal_foreign', "
    "'card_rollback', 'overdraw', 'unknown_card', 'revoked_terminal')"
)


def upgrade() -> None:
    """Upgrade schema."""
    # batch: on SQLite the table is copied (it cannot alter a CHECK constraint in place)
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("count", sa.Integer(), server_default="1", nullable=False))
        batch.add_column(sa.Column("last_s", sa.Float(), nullable=True))
        batch.drop_constraint(op.f("ck_alerts_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_alerts_kind"), _KINDS_AFTER)
        batch.create_check_constraint(op.f("ck_alerts_count"), "count >= 1")


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM alerts WHERE kind = 'revoked_terminal'")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint(op.f("ck_alerts_count"), type_="check")
        batch.drop_constraint(op.f("ck_alerts_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_alerts_kind"), _KINDS_BEFORE)
        batch.drop_column("last_s")
        batch.drop_column("count")
