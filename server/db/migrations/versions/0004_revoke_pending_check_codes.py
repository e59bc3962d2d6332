"""A terminal can be revoked before it enrolled; check codes come from the server's secret.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

- `terminals`: the CHECK said every non-pending terminal has a key, so revoking a pending
  one failed and its one-time code kept working. Now only an *active* terminal must have
  a key.
- `cards.legacy_check_code`: the printed check code used to be derived from the issuer
  signature, which anyone can read off the chip. New codes are an HMAC under a server
  secret. Cards issued before this revision keep their old code working (flag set here)
  until staff print them a new one.
- Top-up labels said "Aufladung (cash)": English in German text on the balance page. The
  label is display text, not money (amounts and postings stay untouched): it is rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_TOPUP_LABELS = (
    ("Aufladung (cash)", "Aufladung (bar)"),
    ("Aufladung (bank)", "Aufladung (Überweisung)"),
)


def upgrade() -> None:
    """Upgrade schema."""
    # batch: on SQLite the table is copied (it cannot alter a CHECK constraint in place)
    with op.batch_alter_table("terminals") as batch:
        batch.drop_constraint(op.f("ck_terminals_key"), type_="check")
        batch.create_check_constraint(
            op.f("ck_terminals_key"), "status <> 'active' OR public_key IS NOT NULL"
        )
    with op.batch_alter_table("cards") as batch:
        batch.add_column(
            sa.Column("legacy_check_code", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.execute("UPDATE cards SET legacy_check_code = TRUE WHERE issuer_sig IS NOT NULL")
    for old, new in _TOPUP_LABELS:
        op.execute(
            sa.text(
                "UPDATE transactions SET label = :new WHERE kind = 'topup' AND label = :old"
            ).bindparams(old=old, new=new)
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("cards") as batch:
        batch.drop_column("legacy_check_code")
    op.execute(
        "DELETE FROM enrolment_codes WHERE terminal_id IN "
        "(SELECT id FROM terminals WHERE public_key IS NULL AND status = 'revoked')"
    )
    op.execute("DELETE FROM terminals WHERE public_key IS NULL AND status = 'revoked'")
    with op.batch_alter_table("terminals") as batch:
        batch.drop_constraint(op.f("ck_terminals_key"), type_="check")
        batch.create_check_constraint(
            op.f("ck_terminals_key"), "status = 'pending' OR public_key IS NOT NULL"
        )
