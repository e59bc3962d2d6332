"""The server's words, each defined once: what a column may hold and what the wire says.

Every enum is a `StrEnum`: a member *is* its string, so the database values, the JSON on
the wire and the CHECK constraints in `db/tables.py` (built from these enums) are exactly
the strings they were before the enums existed. Compare, store and send the members; never
write the bare string in a service. Journal record kinds and payment modes are the shared
core's (`hcard.records.RecordKind`, `PaymentMode`): the tills use the same words.

The migrations in `db/migrations/versions` keep their own literal copies on purpose: a
migration describes the schema of its day and must not change when a word is added here.
"""

from __future__ import annotations

from enum import StrEnum

# the words of the wire protocol that the tills read too: defined once, in the shared core
from hcard.records import Outcome, SyncStatus

__all__ = ["Outcome", "SyncStatus"]  # and every enum below


class AccountKind(StrEnum):
    """What an account is. `card` and `merchant` accounts belong to one card / merchant;
    the others exist once (system accounts: key == kind, made by the first migration)."""

    CARD = "card"
    MERCHANT = "merchant"
    CASH = "cash"
    BANK = "bank"
    ONLINE = "online"
    BONUS_POOL = "bonus_pool"
    FEES = "fees"
    CORRECTION = "correction"
    #: payouts of closed settlement runs the bank has not yet executed (or returned)
    IN_TRANSIT = "in_transit"


SYSTEM_ACCOUNTS = (
    AccountKind.CASH,
    AccountKind.BANK,
    AccountKind.ONLINE,
    AccountKind.BONUS_POOL,
    AccountKind.FEES,
    AccountKind.CORRECTION,
    AccountKind.IN_TRANSIT,
)


class TopupSource(StrEnum):
    """Where money paid in at the office came from; each is the system account it moves from
    (`AccountKind` of the same value)."""

    CASH = "cash"
    BANK = "bank"
    ONLINE = "online"

    @property
    def account(self) -> AccountKind:
        return AccountKind(self.value)


class TxnKind(StrEnum):
    """A ledger transaction's kind (`transactions.kind`); its postings: `services/booking.py`."""

    TOPUP = "topup"
    PAYMENT = "payment"
    VOID = "void"
    TRANSFER = "transfer"
    CORRECTION = "correction"
    TILL_TOPUP = "till_topup"
    #: a run closed for a merchant: payable → fees and → payouts in transit
    SETTLEMENT = "settlement"
    #: the bank executed a payout: in transit → bank
    PAYOUT = "payout"
    #: a payout came back (wrong IBAN, account closed): → the merchant's payable again
    PAYOUT_RETURN = "payout_return"
    #: the office's till cash paid into the bank: cash → bank
    DEPOSIT = "deposit"
    #: the operator's own money leaving the bank: fees taken out, bank charges (fees → bank)
    FEE_WITHDRAWAL = "fee_withdrawal"


class PasswordHashCost(StrEnum):
    """The work argon2id does for each password hash (`HCARD_PASSWORD_HASH_COST`)."""

    #: RFC 9106's low-memory profile (64 MiB, 3 passes, 4 lanes): every real server
    STANDARD = "standard"
    #: argon2's cheapest parameters, for the test suite's ~100 throwaway servers only: the
    #: same code and checks, a thousandth of the work; the server warns at start
    TEST_ONLY = "test-only"


class Role(StrEnum):
    """A staff user's role: admin (everything), marketing (merchants, terminals, cards,
    top-ups, alerts), merchant (reads only its own merchant)."""

    ADMIN = "admin"
    MARKETING = "marketing"
    MERCHANT = "merchant"


#: the roles that run the scheme (everything but a merchant's own view)
OFFICE = (Role.ADMIN, Role.MARKETING)


class TerminalStatus(StrEnum):
    """pending (made, code not yet used) → active (enrolled) → revoked (lost, stolen, gone)."""

    PENDING = "pending"
    ACTIVE = "active"
    REVOKED = "revoked"


JOURNAL_STATUSES = (SyncStatus.APPLIED, SyncStatus.REFUSED)


class AlertKind(StrEnum):
    """What an alert is about (`alerts.kind`): chain problems of a sync, and what a person
    must look at (a rolled-back, copied or overdrawn card, a revoked terminal calling)."""

    CHAIN_GAP = "chain_gap"
    CHAIN_FORK = "chain_fork"
    BAD_SIGNATURE = "bad_signature"
    BAD_RECORD = "bad_record"
    JOURNAL_FOREIGN = "journal_foreign"
    CARD_ROLLBACK = "card_rollback"
    OVERDRAW = "overdraw"
    UNKNOWN_CARD = "unknown_card"
    REVOKED_TERMINAL = "revoked_terminal"
    CARD_COPIED = "card_copied"
    #: a settlement payout came back from the bank, with its reason code
    PAYOUT_RETURNED = "payout_returned"
    #: an online record booked from a till's `shown` list without an authorisation: a server
    #: restored from a backup taken before it approved it (or a till that lies)
    SHOWN_NOT_AUTHORISED = "shown_not_authorised"


class FlagReason(StrEnum):
    """Why the server deny-listed a card (`cards.flag_reason`); each comes with the alert
    of the same kind (`AlertKind`)."""

    OVERDRAW = "overdraw"
    CARD_ROLLBACK = "card_rollback"
    CARD_COPIED = "card_copied"


class CounterName(StrEnum):
    """The rows of the `counters` table."""

    #: the snapshot version, moved by every change a till must learn (`services/snapshot.py`)
    VERSION = "version"
    #: the last card serial handed out (`hcard.cardnumber.from_serial`)
    CARD_SERIAL = "card_serial"
    #: the last invoice number (each merchant's statement in a run is its fee invoice)
    INVOICE = "invoice"


class RunStatus(StrEnum):
    """A settlement run: created (booked, files made) → downloaded (a bank file was taken,
    the run can no longer be cancelled), or cancelled (reversed) before that."""

    CREATED = "created"
    DOWNLOADED = "downloaded"
    CANCELLED = "cancelled"


class PayoutStatus(StrEnum):
    """A merchant's payout in a run: none (nothing transferred), pending (in the bank file,
    not yet downloaded), sent (the file was downloaded), executed (on the bank statement),
    returned (came back), cancelled (run cancelled)."""

    NONE = "none"
    PENDING = "pending"
    SENT = "sent"
    EXECUTED = "executed"
    RETURNED = "returned"
    CANCELLED = "cancelled"


class PayoutOutcome(StrEnum):
    """What a run decided for a merchant (`settlement.rules.Outcome`, stored)."""

    TRANSFER = "transfer"
    NOTHING_DUE = "nothing_due"
    BELOW_MINIMUM = "below_minimum"
    NO_VALID_IBAN = "no_valid_iban"


class LineMatch(StrEnum):
    """What a line of the bank's statement was found to be (`bank_lines.match`)."""

    PAYOUT_EXECUTED = "payout_executed"
    PAYOUT_RETURNED = "payout_returned"
    CARD_TOPUP = "card_topup"
    CASH_DEPOSIT = "cash_deposit"
    #: money the operator took out (fees, bank charges), booked so by staff
    FEE_WITHDRAWAL = "fee_withdrawal"
    UNMATCHED = "unmatched"


class MerchantCategory(StrEnum):
    """What kind of place a merchant is (`merchants.category`): the acceptance list's filter."""

    RESTAURANT = "restaurant"
    FOOD = "food"
    RETAIL = "retail"
    FASHION = "fashion"
    HEALTH = "health"
    SERVICES = "services"
    CULTURE = "culture"
    OTHER = "other"


class TxnTotal(StrEnum):
    """The kinds of transaction the office's charts add up per day (`daily_totals.kind`)."""

    TOPUP = "topup"
    PAYMENT = "payment"
