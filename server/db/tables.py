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
from typing import TYPE_CHECKING, Any, TypeAlias

import sqlalchemy as sa

from hcard.server.vocabulary import (
    JOURNAL_STATUSES,
    AccountKind,
    AlertKind,
    LineMatch,
    MerchantCategory,
    Outcome,
    PayoutOutcome,
    PayoutStatus,
    Role,
    RunStatus,
    TerminalStatus,
    TxnKind,
    TxnTotal,
)

#: A row read from these tables: Core tables are untyped, so any number of columns of any type.
if TYPE_CHECKING:
    AnyRow: TypeAlias = sa.Row[*tuple[Any, ...]]
else:  # at run time plainly the class (SQLAlchemy 2.0's Row takes one tuple type)
    AnyRow = sa.Row

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
    # settlement's cut-off and every period query go by booking time
    sa.Index(None, "created_s"),
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
    # the account holder exactly as the bank knows it (payee check), and the structured
    # address the SEPA file carries (required by German banks from November 2026)
    sa.Column("holder_name", sa.String(70), nullable=False, server_default=""),
    sa.Column("street", sa.String(70), nullable=False, server_default=""),
    sa.Column("building_number", sa.String(16), nullable=False, server_default=""),
    sa.Column("postcode", sa.String(16), nullable=False, server_default=""),
    sa.Column("town", sa.String(35), nullable=False, server_default=""),
    sa.Column("country", sa.String(2), nullable=False, server_default="DE"),
    # the office: a deactivated merchant gets no new terminal and is not listed; the public
    # acceptance list shows only merchants that agreed (`listed`), by category
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("listed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column(
        "category", sa.String(20), nullable=False, server_default=MerchantCategory.OTHER.value
    ),
    sa.Column("opening_hours", sa.String(500), nullable=False, server_default=""),
    sa.UniqueConstraint("account_id"),
    sa.CheckConstraint("fee_bp BETWEEN 0 AND 10000", name="fee_bp"),
    sa.CheckConstraint(_in("category", MerchantCategory), name="category"),
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
    # the highest purse counter of the card's payments seen (written to the card)
    sa.Column("counter", sa.BigInteger, nullable=False, server_default="0"),
    # every purse write up to this counter is known (migration 0009, `services/trust.py`):
    # the snapshot's trusted_counter, below which a till may take the server's balance
    sa.Column("trusted_counter", sa.BigInteger, nullable=False, server_default="0"),
    # snapshot version of the last change terminals must learn about
    sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("replaced_by", sa.BigInteger, sa.ForeignKey("cards.id"), nullable=True),
    sa.Column("created_s", Time, nullable=False),
    # issued before check codes came from the server's secret: the old code, derived from
    # the issuer signature on the chip, still opens the balance page until staff print a
    # new one (`services.cards.renew_check_code`)
    sa.Column("legacy_check_code", sa.Boolean, nullable=False, server_default=sa.false()),
    # an NTAG 424 DNA's tap counter in the last link that opened the balance page (migration
    # 0007, `services/sun.py`); NULL until one did
    sa.Column("sun_counter", sa.BigInteger, nullable=True),
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
    # what the till said of itself with its last signed request (informational: the office
    # sees a till that has not called for a day, or that has records waiting)
    sa.Column("last_seen_s", Time, nullable=True),
    sa.Column("software_version", sa.String(40), nullable=False, server_default=""),
    sa.Column("records_waiting", sa.Integer, nullable=True),
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

# till top-ups approved and not yet confirmed as written to the card (shown) nor voided
# (migration 0009): the other tills get the card's balance without them
pending_topups = sa.Table(
    "pending_topups",
    metadata,
    sa.Column("terminal_id", sa.BigInteger, sa.ForeignKey("terminals.id"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("card_id", sa.BigInteger, sa.ForeignKey("cards.id"), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    # the purse counter of the write the till tried (NULL: the till did not say)
    sa.Column("counter", sa.BigInteger, nullable=True),
    # voided, its write maybe on the card: kept when its counter is known
    sa.Column("voided", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index(None, "card_id"),
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
    # when the till says it journalled the record (its own clock, unsigned, informational:
    # settlement lists a late offline payment with it)
    sa.Column("recorded_s", Time, nullable=True),
    # the till showed it as approved (the sync batch's `shown`, migration 0009): a payment's
    # purse write reached the card (`services/trust.py`)
    sa.Column("shown", sa.Boolean, nullable=False, server_default=sa.false()),
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
    # handled by a named user with a note; a handled alert stays (the history)
    sa.Column("handled_s", Time, nullable=True),
    sa.Column("handled_by", sa.BigInteger, sa.ForeignKey("users.id"), nullable=True),
    sa.Column("handled_note", sa.Text, nullable=True),
    sa.CheckConstraint(_in("kind", AlertKind), name="kind"),
    sa.CheckConstraint("count >= 1", name="count"),
    sa.CheckConstraint(
        "(handled_s IS NULL) = (handled_by IS NULL)"
        " AND (handled_s IS NULL) = (handled_note IS NULL)",
        name="handled",
    ),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigInt, primary_key=True, autoincrement=True),
    sa.Column("at_s", Time, nullable=False),
    # NULL for a failed login (the name tried is in `username`)
    sa.Column("user_id", sa.BigInteger, sa.ForeignKey("users.id"), nullable=True),
    sa.Column("username", sa.String(80), nullable=False),
    # the route's name (`merchant_create`) and its path parameters: who did what to which
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("target", sa.String(200), nullable=False, server_default=""),
    sa.Column("address", sa.String(64), nullable=False),
    # the HTTP status of the answer: 2xx/3xx done, 4xx refused
    sa.Column("status", sa.Integer, nullable=False),
    sa.Index(None, "at_s"),
)

daily_totals = sa.Table(
    "daily_totals",
    metadata,
    # a closed day (Europe/Berlin) summed once: the dashboard's charts and 12-month volume
    # read 365 rows instead of millions of transactions
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.CheckConstraint(_in("kind", TxnTotal), name="kind"),
)

form_submissions = sa.Table(
    "form_submissions",
    metadata,
    # a money form of the office's pages (top-up, correction), sent once: its id is made
    # when the page is shown and recorded in the transaction of its booking, so the same
    # form sent again (a double click, a reload) finds it and books nothing
    sa.Column("form_id", sa.String(64), primary_key=True),
    # NULL only inside the transaction that claimed the id, until the booking is made
    sa.Column("txn_id", sa.BigInteger, sa.ForeignKey("transactions.id"), nullable=True),
    sa.Column("created_s", Time, nullable=False),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

# --- settlement (services/settlement.py, services/bank.py) ----------------------------

settlement_runs = sa.Table(
    "settlement_runs",
    metadata,
    sa.Column("id", BigInt, primary_key=True, autoincrement=True),
    # whole days in Europe/Berlin, and the cut-off instants they stand for
    sa.Column("first_day", sa.String(10), nullable=False),
    sa.Column("last_day", sa.String(10), nullable=False),
    sa.Column("start_s", Time, nullable=False),
    sa.Column("end_s", Time, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("schema", sa.String(20), nullable=False),
    sa.Column("execution_date", sa.String(10), nullable=False),
    sa.Column("vat_bp", sa.Integer, nullable=False),
    sa.Column("minimum_payout_cents", sa.BigInteger, nullable=False),
    sa.Column("created_s", Time, nullable=False),
    sa.Column("created_by", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("downloaded_s", Time, nullable=True),
    sa.Column("downloaded_by", sa.BigInteger, sa.ForeignKey("users.id"), nullable=True),
    sa.Column("cancelled_s", Time, nullable=True),
    sa.Column("cancelled_by", sa.BigInteger, sa.ForeignKey("users.id"), nullable=True),
    sa.CheckConstraint(_in("status", RunStatus), name="status"),
    sa.CheckConstraint("start_s < end_s", name="period"),
)

settlement_lines = sa.Table(
    "settlement_lines",
    metadata,
    sa.Column("id", BigInt, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("settlement_runs.id"), nullable=False),
    sa.Column("merchant_id", sa.BigInteger, sa.ForeignKey("merchants.id"), nullable=False),
    # the merchant as it was when the run was made (the statement must not change later)
    sa.Column("merchant_name", sa.String(200), nullable=False),
    sa.Column("holder_name", sa.String(200), nullable=False),
    sa.Column("iban", sa.String(34), nullable=False),
    sa.Column("bic", sa.String(11), nullable=False),
    sa.Column("address", sa.Text, nullable=False),  # JSON list of lines
    sa.Column("carry_in_cents", sa.BigInteger, nullable=False),
    sa.Column("payments_cents", sa.BigInteger, nullable=False),
    sa.Column("voids_cents", sa.BigInteger, nullable=False),
    sa.Column("topups_cents", sa.BigInteger, nullable=False),
    sa.Column("returns_cents", sa.BigInteger, nullable=False),
    sa.Column("fee_rate_bp", sa.Integer, nullable=False),
    sa.Column("fee_net_cents", sa.BigInteger, nullable=False),
    sa.Column("vat_cents", sa.BigInteger, nullable=False),
    sa.Column("payout_cents", sa.BigInteger, nullable=False),
    sa.Column("carry_out_cents", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("hold_reason", sa.String(200), nullable=True),
    sa.Column("end_to_end_id", sa.String(35), nullable=True, unique=True),
    sa.Column("invoice_number", sa.String(20), nullable=False, unique=True),
    sa.Column("payout_status", sa.String(10), nullable=False),
    sa.Column("txn_id", sa.BigInteger, sa.ForeignKey("transactions.id"), nullable=True),
    sa.Column("return_reason", sa.String(10), nullable=True),
    sa.UniqueConstraint("run_id", "merchant_id"),
    sa.CheckConstraint(_in("outcome", PayoutOutcome), name="outcome"),
    sa.CheckConstraint(_in("payout_status", PayoutStatus), name="payout_status"),
    sa.CheckConstraint("payout_cents >= 0", name="payout_not_negative"),
    sa.CheckConstraint(
        "carry_in_cents + payments_cents - voids_cents - topups_cents + returns_cents"
        " = fee_net_cents + vat_cents + payout_cents + carry_out_cents",
        name="adds_up",
    ),
    sa.Index(None, "merchant_id"),
)

# which transaction a run settled: each at most once, ever (the primary key)
settlement_items = sa.Table(
    "settlement_items",
    metadata,
    sa.Column("txn_id", sa.BigInteger, sa.ForeignKey("transactions.id"), primary_key=True),
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("settlement_runs.id"), nullable=False),
    sa.Column("merchant_id", sa.BigInteger, sa.ForeignKey("merchants.id"), nullable=False),
    sa.Index(None, "run_id", "merchant_id"),
)

settlement_files = sa.Table(
    "settlement_files",
    metadata,
    sa.Column("run_id", sa.BigInteger, sa.ForeignKey("settlement_runs.id"), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("content", sa.LargeBinary, nullable=False),
)

statement_files = sa.Table(
    "statement_files",
    metadata,
    sa.Column("line_id", sa.BigInteger, sa.ForeignKey("settlement_lines.id"), primary_key=True),
    sa.Column("pdf", sa.LargeBinary, nullable=False),
    sa.Column("created_s", Time, nullable=False),
)

bank_statements = sa.Table(
    "bank_statements",
    metadata,
    sa.Column("id", BigInt, primary_key=True, autoincrement=True),
    sa.Column("message", sa.String(10), nullable=False),
    sa.Column("statement_id", sa.String(100), nullable=False),
    sa.Column("iban", sa.String(34), nullable=False),
    sa.Column("closing_balance_cents", sa.BigInteger, nullable=True),
    sa.Column("closing_date", sa.String(10), nullable=True),
    sa.Column("imported_s", Time, nullable=False),
    sa.Column("imported_by", sa.BigInteger, sa.ForeignKey("users.id"), nullable=False),
    sa.UniqueConstraint("iban", "message", "statement_id"),
)

bank_lines = sa.Table(
    "bank_lines",
    metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("statement_row", sa.BigInteger, sa.ForeignKey("bank_statements.id"), nullable=False),
    sa.Column("booking_date", sa.String(10), nullable=True),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),  # + in, − out
    sa.Column("end_to_end_id", sa.String(35), nullable=True),
    sa.Column("remittance", sa.Text, nullable=False),
    sa.Column("counterparty", sa.String(140), nullable=False),
    sa.Column("return_reason", sa.String(10), nullable=True),
    sa.Column("bank_code", sa.String(40), nullable=False),
    sa.Column("match", sa.String(20), nullable=False),
    sa.Column("txn_id", sa.BigInteger, sa.ForeignKey("transactions.id"), nullable=True),
    sa.Column("line_id", sa.BigInteger, sa.ForeignKey("settlement_lines.id"), nullable=True),
    sa.Column("card_number", sa.String(16), nullable=True),
    sa.CheckConstraint(_in("match", LineMatch), name="match"),
    sa.CheckConstraint("amount_cents <> 0", name="nonzero"),
    sa.Index(None, "match"),
)
