"""The schema in SQLAlchemy Core: one definition that SQLite and PostgreSQL both run.

What the schema can hold, it holds: CHECK constraints for kinds, roles, statuses
and signs, UNIQUE constraints for identities (a card number, a tag UID, a
terminal's key, one booking per journal record). What it cannot hold (postings
of a transaction sum to zero, a stored balance equals the sum of its postings)
is checked by `services.ledger.post` before it writes and proved by `services.ledger.check`.

The migrations in `migrations/versions` create exactly these tables; a test
compares the two so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

import sqlalchemy as sa

from hcard.server.vocabulary import (
    JOURNAL_STATUSES,
    AccountKind,
    AlertKind,
    Outcome,
    Role,
    TerminalStatus,
    TxnKind,
)

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _in(column: str, values: Iterable[StrEnum]) -> str:
    """`kind IN ('card', 'merchant', ...)`: the words of `hcard.server.vocabulary`."""
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.Float  # seconds since the epoch (the server has a real clock; terminals do not)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", BigInt, primary_key=True, autoincrement=True),
    # `card:<card id>`, `merchant:<merchant id>` or the system account's kind
    sa.Column("key", sa.String(40), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("balance_cents", sa.BigInteger, nullable=False, server_default="0"),
    sa.CheckConstraint(_in("kind", AccountKind), name="kind"),
)

transactions = sa.Table(
    "transactions",
    metadata,
    sa.Column("id", BigInt, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("created_s", Time, nullable=False),
    # The journal record that caused it: at most one booking per (terminal, seq).
    sa.Column("terminal_id", sa.BigInteger, sa.ForeignKey("terminals.id"), nullable=True),
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("label", sa.String(200), nullable=False, server_default=""),
    sa.UniqueConstraint("terminal_id", "seq"),
    sa.CheckConstraint(_in("kind", TxnKind), name="kind"),
    sa.CheckConstraint("(terminal_id IS NULL) = (seq IS NULL)", name="record_ref"),
    sa.CheckConstraint(
        f"kind <> '{TxnKind.CORRECTION}' OR (reason IS NOT NULL AND user_id IS NOT NULL)",
        name="correction_reason",
    ),
)

postings = sa.Table(
    "postings",
    metadata,
    sa.Column("id", BigInt, primary_key=True, autoincrement=True),
    sa.Column("txn_id", sa.BigInteger, sa.ForeignKey("transactions.id"), nullable=False),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("txn_id", "account_id"),
    sa.CheckConstraint("amount_cents <> 0", name="nonzero"),
    sa.Index(None, "account_id"),
)

merchants = sa.Table(
    "merchants",
    metadata,
    sa.Column("id", BigInt, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("address", sa.Text, nullable=False, server_default=""),
    sa.Column("iban", sa.String(34), nullable=False),
    sa.Column("bic", sa.String(11), nullable=False, server_default=""),
    sa.Column("contact", sa.Text, nullable=False, server_default=""),
    sa.Column("fee_bp", sa.Integer, nullable=False, server_default="0"),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("created_s", Time, nullable=False),
    sa.UniqueConstraint("account_id"),
    sa.CheckConstraint("fee_bp BETWEEN 0 AND 10000", name="fee_bp"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", BigInt, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(80), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("merchant_id", sa.BigInteger, sa.ForeignKey("merchants.id"), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_s", Time, nullable=False),
    sa.CheckConstraint(_in("role", Role), name="role"),
    sa.CheckConstraint(
        f"(role = '{Role.MERCHANT}') = (merchant_id IS NOT NULL)", name="merchant_role"
    ),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_sha256", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("expires_s", Time, nullable=False),
)

cards = sa.Table(
    "cards",
    metadata,
    sa.Column("id", BigInt, primary_key=True, autoincrement=True),
    sa.Column("serial", sa.BigInteger, nullable=False, unique=True),
    sa.Column("number", sa.String(16), nullable=False, unique=True),
    # NULL while the number is only reserved for a card not yet written
    sa.Column("uid", sa.String(14), nullable=True, unique=True),
    sa.Column("issuer_sig", sa.String(128), nullable=True),
    sa.Column("account_id", sa.BigInteger, sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("blocked", sa.Boolean, nullable=False, server_default=sa.false()),
    # set by the server: overdrawn offline, memory rolled back, tag copied; deny-listed
    sa.Column("flagged", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("flag_reason", sa.String(40), nullable=True),
    sa.Column("counter", sa.BigInteger, nullable=False, server_default="0"),
    # snapshot version of the last change terminals must learn about
    sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("replaced_by", sa.BigInteger, sa.ForeignKey("cards.id"), nullable=True),
    sa.Column("created_s", Time, nullable=False),
    # issued before check codes came from the server's secret: the old code, derived from
    # the issuer signature on the chip, still opens the balance page until staff print a
    # new one (`services.cards.renew_check_code`)
    sa.Column("legacy_check_code", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("account_id"),
    sa.CheckConstraint("(uid IS NULL) = (issuer_sig IS NULL)", name="issued"),
    sa.Index(None, "version"),
)

terminals = sa.Table(
    "terminals",
    metadata,
    sa.Column("id", BigInt, primary_key=True, autoincrement=True),
    sa.Column("merchant_id", sa.BigInteger, sa.ForeignKey("merchants.id"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("public_key", sa.String(64), nullable=True, unique=True),
    sa.Column("status", sa.String(10), nullable=False, server_default=TerminalStatus.PENDING.value),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_hash", sa.String(64), nullable=False, server_default="0" * 64),
    sa.Column("created_s", Time, nullable=False),
    sa.CheckConstraint(_in("status", TerminalStatus), name="status"),
    # an active terminal has a key; one revoked before it enrolled never got one
    sa.CheckConstraint(
        f"status <> '{TerminalStatus.ACTIVE}' OR public_key IS NOT NULL", name="key"
    ),
    sa.CheckConstraint("last_seq >= 0", name="last_seq"),
)

enrolment_codes = sa.Table(
    "enrolment_codes",
    metadata,
    sa.Column("code_sha256", sa.String(64), primary_key=True),
    sa.Column("terminal_id", sa.BigInteger, sa.ForeignKey("terminals.id"), nullable=False),
    sa.Column("expires_s", Time, nullable=False),
    sa.Column("used_s", Time, nullable=True),
)

nonces = sa.Table(
    "nonces",
    metadata,
    sa.Column("terminal_id", sa.BigInteger, primary_key=True),
    sa.Column("nonce", sa.String(64), primary_key=True),
    sa.Column("seen_s", Time, nullable=False),
    sa.Index(None, "seen_s"),
)

authorisations = sa.Table(
    "authorisations",
    metadata,
    sa.Column("terminal_id", sa.BigInteger, sa.ForeignKey("terminals.id"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("record_hash", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(10), nullable=False),
    # the answer exactly as sent, so a repeated request gets the same bytes
    sa.Column("answer", sa.LargeBinary, nullable=False),
    sa.Column("txn_id", sa.BigInteger, sa.ForeignKey("transactions.id"), nullable=True),
    sa.Column("created_s", Time, nullable=False),
    sa.CheckConstraint(_in("outcome", Outcome), name="outcome"),
    sa.CheckConstraint(f"(outcome = '{Outcome.APPROVED}') = (txn_id IS NOT NULL)", name="booked"),
)

journal = sa.Table(
    "journal",
    metadata,
    sa.Column("terminal_id", sa.BigInteger, sa.ForeignKey("terminals.id"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("card", sa.String(16), nullable=True),
    sa.Column("counter", sa.BigInteger, nullable=True),
    sa.Column("amount_cents", sa.BigInteger, nullable=True),
    sa.Column("mode", sa.String(10), nullable=True),
    # exactly the bytes the terminal signed (canonical JSON) and its signature, so an
    # auditor can verify every stored record with the terminal's public key
    sa.Column("signed", sa.Text, nullable=False),
    sa.Column("sig", sa.String(128), nullable=False),
    # what the sync answered for it: applied, or refused for a business reason
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("code", sa.String(40), nullable=True),
    sa.Column("txn_id", sa.BigInteger, sa.ForeignKey("transactions.id"), nullable=True),
    sa.Column("voided_by_seq", sa.BigInteger, nullable=True),
    sa.Column("received_s", Time, nullable=False),
    sa.CheckConstraint(_in("status", JOURNAL_STATUSES), name="status"),
    sa.Index(None, "card", "counter"),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", BigInt, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("terminal_id", sa.BigInteger, nullable=True),
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Column("card", sa.String(16), nullable=True),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("created_s", Time, nullable=False),
    # an alert that keeps happening (a revoked terminal calling again) is one row:
    # how often it was seen, and when last (NULL while seen once)
    sa.Column("count", sa.Integer, nullable=False, server_default="1"),
    sa.Column("last_s", Time, nullable=True),
    sa.CheckConstraint(_in("kind", AlertKind), name="kind"),
    sa.CheckConstraint("count >= 1", name="count"),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
