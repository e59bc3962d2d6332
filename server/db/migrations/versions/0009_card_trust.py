"""What the tills may trust of a card's balance on the server (docs/protocol.md, snapshot).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

- `cards.trusted_counter`: every purse write up to this counter is known to the server
  (`services/trust.py`), the snapshot's `trusted_counter`. The snapshot's `counter` is the
  highest counter seen, which can be above an offline write at another till not synced
  yet; a till that trusted the server's balance for it let the card spend that money
  twice. 0 for the cards already there: the journal kept no word on which writes the
  tills showed, so their tills take the lower of purse and balance.
- `journal.shown`: the till showed the record as approved (the sync batch's `shown`): its
  purse write reached the card.
- `pending_topups`: till top-ups approved and not yet confirmed as written to the card
  (shown) nor voided. A top-up whose write was torn is voided later; until it is
  confirmed, other tills are given the card's balance without it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("cards") as batch:
        batch.add_column(
            sa.Column("trusted_counter", sa.BigInteger(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("journal") as batch:
        batch.add_column(
            sa.Column("shown", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "pending_topups",
        sa.Column("terminal_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("card_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"], ["cards.id"], name=op.f("fk_pending_topups_card_id_cards")
        ),
        sa.ForeignKeyConstraint(
            ["terminal_id"], ["terminals.id"], name=op.f("fk_pending_topups_terminal_id_terminals")
        ),
        sa.PrimaryKeyConstraint("terminal_id", "seq", name=op.f("pk_pending_topups")),
    )
    op.create_index(op.f("ix_pending_topups_card_id"), "pending_topups", ["card_id"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f("ix_pending_topups_card_id"), table_name="pending_topups")
    op.drop_table("pending_topups")
    with op.batch_alter_table("journal") as batch:
        batch.drop_column("shown")
    with op.batch_alter_table("cards") as batch:
        batch.drop_column("trusted_counter")
