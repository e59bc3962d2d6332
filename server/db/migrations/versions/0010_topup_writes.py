"""A till top-up's card write, kept past its void while the card may still hold it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

- `pending_topups.counter`: the purse counter of the card write the till was about to try
  (the authorise request's `counter`; NULL from a till that does not say).
- `pending_topups.voided`: the till voided the top-up (it never showed it), but its write
  may have landed on the card (the card pulled away as the write finished). The row stays
  when its counter is known: another till takes its amount off a purse that till wrote at
  that counter (docs/protocol.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("pending_topups") as batch:
        batch.add_column(sa.Column("counter", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("voided", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.execute(sa.text("DELETE FROM pending_topups WHERE voided"))
    with op.batch_alter_table("pending_topups") as batch:
        batch.drop_column("voided")
        batch.drop_column("counter")
