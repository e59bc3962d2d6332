"""Alerts: a kind for an offline payment whose tag UID is not the card's (`card_copied`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Online authorisation declines such a tag; an offline payment with it is still booked (the
merchant was promised the money), and the card is flagged, deny-listed and alerted.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS_BEFORE = (
    "kind IN ('chain_gap', 'chain_fork', 'bad_signature', 'bad_record', 'journal_foreign', "
    "'card_rollback', 'overdraw', 'unknown_card', 'revoked_terminal')"
)
_KINDS_AFTER = (
    "kind IN ('chain_gap', 'chain_fork', 'bad_signature', 'bad_record', 'journal_foreign', "
    "'card_rollback', 'overdraw', 'unknown_card', 'revoked_terminal', 'card_copied')"
)


def upgrade() -> None:
    """Upgrade schema."""
    # batch: on SQLite the table is copied (it cannot alter a CHECK constraint in place)
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint(op.f("ck_alerts_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_alerts_kind"), _KINDS_AFTER)


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM alerts WHERE kind = 'card_copied'")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint(op.f("ck_alerts_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_alerts_kind"), _KINDS_BEFORE)
