"""Initial schema: ledger, cards, merchants, users, terminals, journal, alerts.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Generated from `hcard.server.db.tables` and then frozen: later schema changes
get a new migration, this one never changes. Also creates the system accounts
and the counters every installation starts with.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "accounts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("balance_cents", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "kind IN ('card', 'merchant', 'cash', 'bank', 'online', 'bonus_pool', 'fees', "
            "'correction')",
            name=op.f("ck_accounts_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("key", name=op.f("uq_accounts_key")),
    )
    op.create_table(
        "alerts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("terminal_id", sa.BigInteger(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("card", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_s", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('chain_gap', 'chain_fork', 'bad_signature', 'bad_record', 'journal_foreign', "
            "'card_rollback', 'overdraw', 'unknown_card')",
            name=op.f("ck_alerts_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_counters")),
    )
    op.create_table(
        "nonces",
        sa.Column("terminal_id", sa.BigInteger(), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("seen_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("terminal_id", "nonce", name=op.f("pk_nonces")),
    )
    with op.batch_alter_table("nonces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nonces_seen_s"), ["seen_s"], unique=False)

    op.create_table(
        "cards",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("uid", sa.String(length=14), nullable=True),
        sa.Column("issuer_sig", sa.String(length=128), nullable=True),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("blocked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("flagged", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("flag_reason", sa.String(length=40), nullable=True),
        sa.Column("counter", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("replaced_by", sa.BigInteger(), nullable=True),
        sa.Column("created_s", sa.Float(), nullable=False),
        sa.CheckConstraint("(uid IS NULL) = (issuer_sig IS NULL)", name=op.f("ck_cards_issued")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cards_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["replaced_by"], ["cards.id"], name=op.f("fk_cards_replaced_by_cards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cards")),
        sa.UniqueConstraint("account_id", name=op.f("uq_cards_account_id")),
        sa.UniqueConstraint("number", name=op.f("uq_cards_number")),
        sa.UniqueConstraint("serial", name=op.f("uq_cards_serial")),
        sa.UniqueConstraint("uid", name=op.f("uq_cards_uid")),
    )
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cards_version"), ["version"], unique=False)

    op.create_table(
        "merchants",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.Text(), server_default="", nullable=False),
        sa.Column("iban", sa.String(length=34), nullable=False),
        sa.Column("bic", sa.String(length=11), server_default="", nullable=False),
        sa.Column("contact", sa.Text(), server_default="", nullable=False),
        sa.Column("fee_bp", sa.Integer(), server_default="0", nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("created_s", sa.Float(), nullable=False),
        sa.CheckConstraint("fee_bp BETWEEN 0 AND 10000", name=op.f("ck_merchants_fee_bp")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_merchants_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchants")),
        sa.UniqueConstraint("account_id", name=op.f("uq_merchants_account_id")),
    )
    op.create_table(
        "terminals",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("merchant_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=10), server_default="pending", nullable=False),
        sa.Column("last_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "last_hash",
            sa.String(length=64),
            server_default="0000000000000000000000000000000000000000000000000000000000000000",
            nullable=False,
        ),
        sa.Column("created_s", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "status = 'pending' OR public_key IS NOT NULL", name=op.f("ck_terminals_key")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'active', 'revoked')", name=op.f("ck_terminals_status")
        ),
        sa.CheckConstraint("last_seq >= 0", name=op.f("ck_terminals_last_seq")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_terminals_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminals")),
        sa.UniqueConstraint("public_key", name=op.f("uq_terminals_public_key")),
    )
    op.create_table(
        "users",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("merchant_id", sa.BigInteger(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_s", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "(role = 'merchant') = (merchant_id IS NOT NULL)", name=op.f("ck_users_merchant_role")
        ),
        sa.CheckConstraint(
            "role IN ('admin', 'marketing', 'merchant')", name=op.f("ck_users_role")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_users_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "enrolment_codes",
        sa.Column("code_sha256", sa.String(length=64), nullable=False),
        sa.Column("terminal_id", sa.BigInteger(), nullable=False),
        sa.Column("expires_s", sa.Float(), nullable=False),
        sa.Column("used_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["terminal_id"], ["terminals.id"], name=op.f("fk_enrolment_codes_terminal_id_terminals")
        ),
        sa.PrimaryKeyConstraint("code_sha256", name=op.f("pk_enrolment_codes")),
    )
    op.create_table(
        "sessions",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("expires_s", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users")),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_sessions")),
    )
    op.create_table(
        "transactions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("created_s", sa.Float(), nullable=False),
        sa.Column("terminal_id", sa.BigInteger(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("label", sa.String(length=200), server_default="", nullable=False),
        sa.CheckConstraint(
            "kind <> 'correction' OR (reason IS NOT NULL AND user_id IS NOT NULL)",
            name=op.f("ck_transactions_correction_reason"),
        ),
        sa.CheckConstraint(
            "kind IN ('topup', 'payment', 'void', 'transfer', 'correction', 'till_topup')",
            name=op.f("ck_transactions_kind"),
        ),
        sa.CheckConstraint(
            "(terminal_id IS NULL) = (seq IS NULL)", name=op.f("ck_transactions_record_ref")
        ),
        sa.ForeignKeyConstraint(
            ["terminal_id"], ["terminals.id"], name=op.f("fk_transactions_terminal_id_terminals")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_transactions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint("terminal_id", "seq", name=op.f("uq_transactions_terminal_id_seq")),
    )
    op.create_table(
        "authorisations",
        sa.Column("terminal_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("answer", sa.LargeBinary(), nullable=False),
        sa.Column("txn_id", sa.BigInteger(), nullable=True),
        sa.Column("created_s", sa.Float(), nullable=False),
        sa.CheckConstraint(
            "(outcome = 'approved') = (txn_id IS NOT NULL)", name=op.f("ck_authorisations_booked")
        ),
        sa.CheckConstraint(
            "outcome IN ('approved', 'declined')", name=op.f("ck_authorisations_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["terminal_id"], ["terminals.id"], name=op.f("fk_authorisations_terminal_id_terminals")
        ),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["transactions.id"], name=op.f("fk_authorisations_txn_id_transactions")
        ),
        sa.PrimaryKeyConstraint("terminal_id", "seq", name=op.f("pk_authorisations")),
    )
    op.create_table(
        "journal",
        sa.Column("terminal_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("card", sa.String(length=16), nullable=True),
        sa.Column("counter", sa.BigInteger(), nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=True),
        sa.Column("mode", sa.String(length=10), nullable=True),
        sa.Column("signed", sa.Text(), nullable=False),
        sa.Column("sig", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=True),
        sa.Column("txn_id", sa.BigInteger(), nullable=True),
        sa.Column("voided_by_seq", sa.BigInteger(), nullable=True),
        sa.Column("received_s", sa.Float(), nullable=False),
        sa.CheckConstraint("status IN ('applied', 'refused')", name=op.f("ck_journal_status")),
        sa.ForeignKeyConstraint(
            ["terminal_id"], ["terminals.id"], name=op.f("fk_journal_terminal_id_terminals")
        ),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["transactions.id"], name=op.f("fk_journal_txn_id_transactions")
        ),
        sa.PrimaryKeyConstraint("terminal_id", "seq", name=op.f("pk_journal")),
    )
    with op.batch_alter_table("journal", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_journal_card_counter"), ["card", "counter"], unique=False
        )

    op.create_table(
        "postings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("txn_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount_cents <> 0", name=op.f("ck_postings_nonzero")),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_postings_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["txn_id"], ["transactions.id"], name=op.f("fk_postings_txn_id_transactions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postings")),
        sa.UniqueConstraint("txn_id", "account_id", name=op.f("uq_postings_txn_id_account_id")),
    )
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_postings_account_id"), ["account_id"], unique=False)

    accounts = sa.table("accounts", sa.column("key"), sa.column("kind"))
    op.bulk_insert(accounts, [{"key": kind, "kind": kind} for kind in SYSTEM_ACCOUNTS])
    counters = sa.table("counters", sa.column("name"), sa.column("value"))
    op.bulk_insert(counters, [{"name": "card_serial", "value": 0}, {"name": "version", "value": 0}])


SYSTEM_ACCOUNTS = ("cash", "bank", "online", "bonus_pool", "fees", "correction")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("postings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_postings_account_id"))

    op.drop_table("postings")
    with op.batch_alter_table("journal", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_journal_card_counter"))

    op.drop_table("journal")
    op.drop_table("authorisations")
    op.drop_table("transactions")
    op.drop_table("sessions")
    op.drop_table("enrolment_codes")
    op.drop_table("users")
    op.drop_table("terminals")
    op.drop_table("merchants")
    with op.batch_alter_table("cards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cards_version"))

    op.drop_table("cards")
    with op.batch_alter_table("nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nonces_seen_s"))

    op.drop_table("nonces")
    op.drop_table("counters")
    op.drop_table("alerts")
    op.drop_table("accounts")
