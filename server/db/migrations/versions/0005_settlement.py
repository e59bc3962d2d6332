"""Settlement: runs, their lines and items, bank files, statements, bank statements.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

- New tables for settlement runs (`settlement_runs`, `settlement_lines`, `settlement_items`,
  `settlement_files`, `statement_files`) and the bank's statements (`bank_statements`,
  `bank_lines`).
- `merchants`: the account holder's name and a structured address for the SEPA file.
- `journal.recorded_s`: when the till says it journalled the record (late payments).
- `transactions.created_s` indexed: every period query goes by booking time.
- New words: account `in_transit` (created here), transactions `settlement`, `payout`,
  `payout_return`, `deposit`, alert `payout_returned`, counter `invoice`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_ACCOUNTS_BEFORE = (
    "kind IN ('card', 'merchant', 'cash', 'bank', 'online', 'bonus_pool', 'fees', 'correction')"
)
_ACCOUNTS_AFTER = (
    "kind IN ('card', 'merchant', 'cash', 'bank', 'online', 'bonus_pool', 'fees', 'correction', "
    "'in_transit')"
)
_TXNS_BEFORE = "kind IN ('topup', 'payment', 'void', 'transfer', 'correction', 'till_topup')"
_TXNS_AFTER = (
    "kind IN ('topup', 'payment', 'void', 'transfer', 'correction', 'till_topup', "
    "'settlement', 'payout', 'payout_return', 'deposit', 'fee_withdrawal')"
)
_ALERTS_BEFORE = (
    "kind IN ('chain_gap', 'chain_fork', 'bad_signature', 'bad_record', 'journal_foreign', "
    "'card_rollback', 'overdraw', 'unknown_card', 'revoked_terminal', 'card_copied')"
)
_ALERTS_AFTER = (
    "kind IN ('chain_gap', 'chain_fork', 'bad_signature', 'bad_record', 'journal_foreign', "
    "'card_rollback', 'overdraw', 'unknown_card', 'revoked_terminal', 'card_copied', "
    "'payout_returned')"
)


def _check(table: str, name: str, condition: str) -> None:
    # batch: on SQLite the table is copied (it cannot alter a CHECK constraint in place)
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
        batch.create_check_constraint(op.f(f"ck_{table}_{name}"), condition)


def upgrade() -> None:
    """Upgrade schema."""
    _check("accounts", "kind", _ACCOUNTS_AFTER)
    _check("transactions", "kind", _TXNS_AFTER)
    _check("alerts", "kind", _ALERTS_AFTER)
    accounts = sa.table("accounts", sa.column("key"), sa.column("kind"))
    op.bulk_insert(accounts, [{"key": "in_transit", "kind": "in_transit"}])
    counters = sa.table("counters", sa.column("name"), sa.column("value"))
    op.bulk_insert(counters, [{"name": "invoice", "value": 0}])
    op.create_table(
        "bank_statements",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("message", sa.String(length=10), nullable=False),
        sa.Column("statement_id", sa.String(length=100), nullable=False),
        sa.Column("iban", sa.String(length=34), nullable=False),
        sa.Column("closing_balance_cents", sa.BigInteger(), nullable=True),
        sa.Column("closing_date", sa.String(length=10), nullable=True),
        sa.Column("imported_s", sa.Float(), nullable=False),
        sa.Column("imported_by", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["imported_by"], ["users.id"], name=op.f("fk_bank_statements_imported_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_statements")),
        sa.UniqueConstraint(
            "iban",
            "message",
            "statement_id",
            name=op.f("uq_bank_statements_iban_message_statement_id"),
        ),
    )
    op.create_table(
        "settlement_runs",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("first_day", sa.String(length=10), nullable=False),
        sa.Column("last_day", sa.String(length=10), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("schema", sa.String(length=20), nullable=False),
        sa.Column("execution_date", sa.String(length=10), nullable=False),
        sa.Column("vat_bp", sa.Integer(), nullable=False),
        sa.Column("minimum_payout_cents", sa.BigInteger(), nullable=False),
        sa.Column("created_s", sa.Float(), nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=False),
        sa.Column("downloaded_s", sa.Float(), nullable=True),
        sa.Column("downloaded_by", sa.BigInteger(), nullable=True),
        sa.Column("cancelled_s", sa.Float(), nullable=True),
        sa.Column("cancelled_by", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "status IN ('created', 'downloaded', 'cancelled')",
            name=op.f("ck_settlement_runs_status"),
        ),
        sa.CheckConstraint("start_s < end_s", name=op.f("ck_settlement_runs_period")),
        sa.ForeignKeyConstraint(
            ["cancelled_by"], ["users.id"], name=op.f("fk_settlement_runs_cancelled_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_settlement_runs_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["downloaded_by"], ["users.id"], name=op.f("fk_settlement_runs_downloaded_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_runs")),
    )
    op.create_table(
        "settlement_files",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["settlement_runs.id"],
            name=op.f("fk_settlement_files_run_id_settlement_runs"),
        ),
        sa.PrimaryKeyConstraint("run_id", "number", name=op.f("pk_settlement_files")),
    )
    op.create_table(
        "settlement_items",
        sa.Column("txn_id", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("merchant_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_settlement_items_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["settlement_runs.id"],
            name=op.f("fk_settlement_items_run_id_settlement_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["transactions.id"], name=op.f("fk_settlement_items_txn_id_transactions")
        ),
        sa.PrimaryKeyConstraint("txn_id", name=op.f("pk_settlement_items")),
    )
    with op.batch_alter_table("settlement_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_settlement_items_run_id_merchant_id"),
            ["run_id", "merchant_id"],
            unique=False,
        )

    op.create_table(
        "settlement_lines",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("merchant_id", sa.BigInteger(), nullable=False),
        sa.Column("merchant_name", sa.String(length=200), nullable=False),
        sa.Column("holder_name", sa.String(length=200), nullable=False),
        sa.Column("iban", sa.String(length=34), nullable=False),
        sa.Column("bic", sa.String(length=11), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("carry_in_cents", sa.BigInteger(), nullable=False),
        sa.Column("payments_cents", sa.BigInteger(), nullable=False),
        sa.Column("voids_cents", sa.BigInteger(), nullable=False),
        sa.Column("topups_cents", sa.BigInteger(), nullable=False),
        sa.Column("returns_cents", sa.BigInteger(), nullable=False),
        sa.Column("fee_rate_bp", sa.Integer(), nullable=False),
        sa.Column("fee_net_cents", sa.BigInteger(), nullable=False),
        sa.Column("vat_cents", sa.BigInteger(), nullable=False),
        sa.Column("payout_cents", sa.BigInteger(), nullable=False),
        sa.Column("carry_out_cents", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("hold_reason", sa.String(length=200), nullable=True),
        sa.Column("end_to_end_id", sa.String(length=35), nullable=True),
        sa.Column("invoice_number", sa.String(length=20), nullable=False),
        sa.Column("payout_status", sa.String(length=10), nullable=False),
        sa.Column("txn_id", sa.BigInteger(), nullable=True),
        sa.Column("return_reason", sa.String(length=10), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('transfer', 'nothing_due', 'below_minimum', 'no_valid_iban')",
            name=op.f("ck_settlement_lines_outcome"),
        ),
        sa.CheckConstraint(
            "payout_status IN ('none', 'pending', 'sent', 'executed', 'returned', 'cancelled')",
            name=op.f("ck_settlement_lines_payout_status"),
        ),
        sa.CheckConstraint(
            "carry_in_cents + payments_cents - voids_cents - topups_cents + returns_cents"
            " = fee_net_cents + vat_cents + payout_cents + carry_out_cents",
            name=op.f("ck_settlement_lines_adds_up"),
        ),
        sa.CheckConstraint(
            "payout_cents >= 0", name=op.f("ck_settlement_lines_payout_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_settlement_lines_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["settlement_runs.id"],
            name=op.f("fk_settlement_lines_run_id_settlement_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["transactions.id"], name=op.f("fk_settlement_lines_txn_id_transactions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_lines")),
        sa.UniqueConstraint("end_to_end_id", name=op.f("uq_settlement_lines_end_to_end_id")),
        sa.UniqueConstraint("invoice_number", name=op.f("uq_settlement_lines_invoice_number")),
        sa.UniqueConstraint(
            "run_id", "merchant_id", name=op.f("uq_settlement_lines_run_id_merchant_id")
        ),
    )
    with op.batch_alter_table("settlement_lines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_settlement_lines_merchant_id"), ["merchant_id"], unique=False
        )

    op.create_table(
        "bank_lines",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("statement_row", sa.BigInteger(), nullable=False),
        sa.Column("booking_date", sa.String(length=10), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("end_to_end_id", sa.String(length=35), nullable=True),
        sa.Column("remittance", sa.Text(), nullable=False),
        sa.Column("counterparty", sa.String(length=140), nullable=False),
        sa.Column("return_reason", sa.String(length=10), nullable=True),
        sa.Column("bank_code", sa.String(length=40), nullable=False),
        sa.Column("match", sa.String(length=20), nullable=False),
        sa.Column("txn_id", sa.BigInteger(), nullable=True),
        sa.Column("line_id", sa.BigInteger(), nullable=True),
        sa.Column("card_number", sa.String(length=16), nullable=True),
        sa.CheckConstraint(
            "match IN ('payout_executed', 'payout_returned', 'card_topup', 'cash_deposit',"
            " 'fee_withdrawal',"
            " 'unmatched')",
            name=op.f("ck_bank_lines_match"),
        ),
        sa.CheckConstraint("amount_cents <> 0", name=op.f("ck_bank_lines_nonzero")),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["settlement_lines.id"],
            name=op.f("fk_bank_lines_line_id_settlement_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["statement_row"],
            ["bank_statements.id"],
            name=op.f("fk_bank_lines_statement_row_bank_statements"),
        ),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["transactions.id"], name=op.f("fk_bank_lines_txn_id_transactions")
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_bank_lines")),
    )
    with op.batch_alter_table("bank_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bank_lines_match"), ["match"], unique=False)

    op.create_table(
        "statement_files",
        sa.Column("line_id", sa.BigInteger(), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.Column("created_s", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["settlement_lines.id"],
            name=op.f("fk_statement_files_line_id_settlement_lines"),
        ),
        sa.PrimaryKeyConstraint("line_id", name=op.f("pk_statement_files")),
    )
    with op.batch_alter_table("journal", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recorded_s", sa.Float(), nullable=True))

    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("holder_name", sa.String(length=70), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("street", sa.String(length=70), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("building_number", sa.String(length=16), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("postcode", sa.String(length=16), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("town", sa.String(length=35), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("country", sa.String(length=2), server_default="DE", nullable=False)
        )

    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transactions_created_s"), ["created_s"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transactions_created_s"))

    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.drop_column("country")
        batch_op.drop_column("town")
        batch_op.drop_column("postcode")
        batch_op.drop_column("building_number")
        batch_op.drop_column("street")
        batch_op.drop_column("holder_name")

    with op.batch_alter_table("journal", schema=None) as batch_op:
        batch_op.drop_column("recorded_s")

    op.drop_table("statement_files")
    with op.batch_alter_table("bank_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bank_lines_match"))

    op.drop_table("bank_lines")
    with op.batch_alter_table("settlement_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settlement_lines_merchant_id"))

    op.drop_table("settlement_lines")
    with op.batch_alter_table("settlement_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_settlement_items_run_id_merchant_id"))

    op.drop_table("settlement_items")
    op.drop_table("settlement_files")
    op.drop_table("settlement_runs")
    op.drop_table("bank_statements")
    op.execute("DELETE FROM counters WHERE name = 'invoice'")
    op.execute("DELETE FROM accounts WHERE key = 'in_transit' AND balance_cents = 0")
    _check("alerts", "kind", _ALERTS_BEFORE)
    _check("transactions", "kind", _TXNS_BEFORE)
    _check("accounts", "kind", _ACCOUNTS_BEFORE)
