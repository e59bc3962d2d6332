"""The office in a browser: merchant listing, terminal status, handled alerts, audit log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

- `merchants`: `active` (deactivated: no new terminal, not listed), `listed` (on the public
  acceptance list), `category`, `opening_hours`.
- `terminals`: what a till said of itself with its last signed request: `last_seen_s`,
  `software_version`, `records_waiting`.
- `alerts`: handled by a named user with a note (`handled_s`, `handled_by`, `handled_note`).
- New tables `audit_log` (every staff action: who, what, when, from where),
  `daily_totals` (a closed day's top-ups and payments, summed once for the dashboard) and
  `form_submissions` (a money form of the office's pages booked once: its id and booking).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_CATEGORIES = (
    "category IN ('restaurant', 'food', 'retail', 'fashion', 'health', 'services', "
    "'culture', 'other')"
)


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(
            sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch.add_column(
            sa.Column("listed", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(
            sa.Column("category", sa.String(length=20), server_default="other", nullable=False)
        )
        batch.add_column(
            sa.Column("opening_hours", sa.String(length=500), server_default="", nullable=False)
        )
        batch.create_check_constraint(op.f("ck_merchants_category"), _CATEGORIES)
    with op.batch_alter_table("terminals") as batch:
        batch.add_column(sa.Column("last_seen_s", sa.Float(), nullable=True))
        batch.add_column(
            sa.Column("software_version", sa.String(length=40), server_default="", nullable=False)
        )
        batch.add_column(sa.Column("records_waiting", sa.Integer(), nullable=True))
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("handled_s", sa.Float(), nullable=True))
        batch.add_column(sa.Column("handled_by", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("handled_note", sa.Text(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_alerts_handled_by_users"), "users", ["handled_by"], ["id"]
        )
        batch.create_check_constraint(
            op.f("ck_alerts_handled"),
            "(handled_s IS NULL) = (handled_by IS NULL)"
            " AND (handled_s IS NULL) = (handled_note IS NULL)",
        )
    op.create_table(
        "audit_log",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("at_s", sa.Float(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("target", sa.String(length=200), server_default="", nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_audit_log_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log") as batch:
        batch.create_index(batch.f("ix_audit_log_at_s"), ["at_s"], unique=False)
    op.create_table(
        "daily_totals",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("kind IN ('topup', 'payment')", name=op.f("ck_daily_totals_kind")),
        sa.PrimaryKeyConstraint("day", "kind", name=op.f("pk_daily_totals")),
    )
    op.create_table(
        "form_submissions",
        sa.Column("form_id", sa.String(length=64), nullable=False),
        sa.Column("txn_id", sa.BigInteger(), nullable=True),
        sa.Column("created_s", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["transactions.id"], name=op.f("fk_form_submissions_txn_id_transactions")
        ),
        sa.PrimaryKeyConstraint("form_id", name=op.f("pk_form_submissions")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("form_submissions")
    op.drop_table("daily_totals")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_index(batch.f("ix_audit_log_at_s"))
    op.drop_table("audit_log")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint(op.f("ck_alerts_handled"), type_="check")
        batch.drop_constraint(op.f("fk_alerts_handled_by_users"), type_="foreignkey")
        batch.drop_column("handled_note")
        batch.drop_column("handled_by")
        batch.drop_column("handled_s")
    with op.batch_alter_table("terminals") as batch:
        batch.drop_column("records_waiting")
        batch.drop_column("software_version")
        batch.drop_column("last_seen_s")
    with op.batch_alter_table("merchants") as batch:
        batch.drop_constraint(op.f("ck_merchants_category"), type_="check")
        batch.drop_column("opening_hours")
        batch.drop_column("category")
        batch.drop_column("listed")
        batch.drop_column("active")
