"""NTAG 424 DNA links: the last tap counter the balance page accepted, per card.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

- `cards.sun_counter`: the SDMReadCtr of the last SUN link (`/k?p=…&m=…`) that showed the
  card's balance; a link whose counter is not above it is old (copied, bookmarked, reloaded)
  and shows nothing (`services/sun.py`). NULL: no link of the card seen yet (every NTAG215).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("cards") as batch:
        batch.add_column(sa.Column("sun_counter", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("cards") as batch:
        batch.drop_column("sun_counter")
