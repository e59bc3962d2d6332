"""Every refusal has a named code and a message in German and English.

The code is the stable, machine-readable part (tests, the terminal, logs);
the messages are what a person reads. German first: the users are in Hattingen.
A new refusal gets a new member here, never a free-text string at the call site.

`MESSAGES` holds each code's English msgid; its German and English texts are in the
project's gettext catalogues (`hcard.i18n`, `hcard/locale/`), like every other text.
"""

from __future__ import annotations

from enum import StrEnum

from hcard import i18n
from hcard.i18n import N_, Text


class Code(StrEnum):
    # request shape
    MALFORMED_REQUEST = "malformed_request"
    BODY_TOO_LARGE = "body_too_large"
    BATCH_TOO_LARGE = "batch_too_large"
    INVALID_AMOUNT = "invalid_amount"
    NOT_FOUND = "not_found"
    INVALID_NAME = "invalid_name"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    # staff authentication
    NOT_AUTHENTICATED = "not_authenticated"
    FORBIDDEN = "forbidden"
    BAD_CREDENTIALS = "bad_credentials"
    CSRF_FAILED = "csrf_failed"
    PASSWORD_TOO_WEAK = "password_too_weak"  # noqa: S105 - a code, not a password
    # terminal authentication
    UNKNOWN_TERMINAL = "unknown_terminal"
    TERMINAL_REVOKED = "terminal_revoked"
    BAD_SIGNATURE = "bad_signature"
    CLOCK_SKEW = "clock_skew"
    NONCE_REUSED = "nonce_reused"
    ENROLMENT_CODE_INVALID = "enrolment_code_invalid"
    # cards
    UNKNOWN_CARD = "unknown_card"
    CARD_BLOCKED = "card_blocked"
    CARD_NOT_ISSUED = "card_not_issued"
    CARD_ALREADY_EXISTS = "card_already_exists"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    CARD_COPIED = "card_copied"
    CARD_TOO_SMALL = "card_too_small"
    CARD_UNREADABLE = "card_unreadable"
    CARD_NOT_GENUINE = "card_not_genuine"
    PURSE_INVALID = "purse_invalid"
    # offline decisions
    OFFLINE_LIMIT_PAYMENT = "offline_limit_payment"
    OFFLINE_LIMIT_DAY = "offline_limit_day"
    OFFLINE_LIMIT_COUNT = "offline_limit_count"
    SERVER_UNREACHABLE = "server_unreachable"
    # journal and sync
    BAD_RECORD = "bad_record"
    CHAIN_GAP = "chain_gap"
    CHAIN_FORK = "chain_fork"
    SEQUENCE_CONFLICT = "sequence_conflict"
    SNAPSHOT_BAD_SIGNATURE = "snapshot_bad_signature"
    SNAPSHOT_STALE = "snapshot_stale"
    JOURNAL_FOREIGN = "journal_foreign"
    JOURNAL_CORRUPT = "journal_corrupt"
    PAYMENT_NOT_FOUND = "payment_not_found"
    ALREADY_VOIDED = "already_voided"
    VOID_TOO_LATE = "void_too_late"
    STATE_TRANSITION_REFUSED = "state_transition_refused"
    # ledger
    SAME_CARD = "same_card"
    TOPUP_PENDING = "topup_pending"
    BELOW_ZERO_NOT_CONFIRMED = "below_zero_not_confirmed"
    # settlement
    PERIOD_INVALID = "period_invalid"
    PERIOD_IN_FUTURE = "period_in_future"
    PERIOD_ALREADY_SETTLED = "period_already_settled"
    RUN_DOWNLOADED = "run_downloaded"
    RUN_CANCELLED = "run_cancelled"
    RUN_NOT_LAST = "run_not_last"
    PERIOD_OUT_OF_ORDER = "period_out_of_order"
    TOPUP_BY_STATEMENT = "topup_by_statement"
    LINE_ALREADY_BOOKED = "line_already_booked"
    SEPA_FILE_INVALID = "sepa_file_invalid"
    STATEMENT_INVALID = "statement_invalid"
    STATEMENT_OTHER_ACCOUNT = "statement_other_account"
    STATEMENT_AMBIGUOUS = "statement_ambiguous"
    # the office
    MERCHANT_INACTIVE = "merchant_inactive"
    MERCHANT_HAS_TERMINALS = "merchant_has_terminals"
    ALERT_ALREADY_HANDLED = "alert_already_handled"
    INVALID_IBAN = "invalid_iban"
    USERNAME_TAKEN = "username_taken"
    OWN_ACCOUNT = "own_account"
    INTERNAL_ERROR = "internal_error"
    # NTAG 424 DNA cards and their SUN links (issue 12, hcard.ntag424)
    CARD_AUTH_FAILED = "card_auth_failed"
    CARD_AUTH_REPLAYED = "card_auth_replayed"
    CARD_MAC_INVALID = "card_mac_invalid"
    CARD_FACTORY_KEYS = "card_factory_keys"
    CARD_COUNTER_BACKWARDS = "card_counter_backwards"
    SUN_INVALID = "sun_invalid"
    SUN_STALE = "sun_stale"
    # the office, after review
    CARD_ALREADY_REPLACED = "card_already_replaced"
    FORM_INVALID = "form_invalid"


MESSAGES: dict[Code, Text] = {
    Code.MALFORMED_REQUEST: N_("The request is malformed."),
    Code.BODY_TOO_LARGE: N_("The request body is too large."),
    Code.BATCH_TOO_LARGE: N_("Too many records in one batch."),
    Code.INVALID_AMOUNT: N_("Invalid amount (1 cent to €10,000)."),
    Code.NOT_FOUND: N_("Not found."),
    Code.INVALID_NAME: N_(
        "Invalid name: printable characters of sensible length, no control characters."
    ),
    Code.TOO_MANY_ATTEMPTS: N_("Too many failed attempts. Please try again a little later."),
    Code.NOT_AUTHENTICATED: N_("Please log in."),
    Code.FORBIDDEN: N_("Not permitted."),
    Code.BAD_CREDENTIALS: N_("Wrong user name or password."),
    Code.CSRF_FAILED: N_(
        "The form has expired or did not come from this site. Please reload the page and try again."
    ),
    Code.PASSWORD_TOO_WEAK: N_(
        "The password is too weak: at least 12 characters, and not a commonly used password."
    ),
    Code.UNKNOWN_TERMINAL: N_("Unknown terminal."),
    Code.TERMINAL_REVOKED: N_("Terminal revoked."),
    Code.BAD_SIGNATURE: N_("Invalid signature."),
    Code.CLOCK_SKEW: N_("Terminal clock is too far off."),
    Code.NONCE_REUSED: N_("Request was replayed."),
    Code.ENROLMENT_CODE_INVALID: N_("Enrolment code invalid, expired or already used."),
    Code.UNKNOWN_CARD: N_("Unknown card."),
    Code.CARD_BLOCKED: N_("Card blocked."),
    Code.CARD_NOT_ISSUED: N_("Card not issued by Hattingen Card."),
    Code.CARD_ALREADY_EXISTS: N_("Card already exists."),
    Code.INSUFFICIENT_FUNDS: N_("Insufficient balance."),
    Code.CARD_COPIED: N_("Card is a copy and is refused."),
    Code.CARD_TOO_SMALL: N_("Card type too small (NTAG213); use an NTAG215."),
    Code.CARD_UNREADABLE: N_("Card unreadable, please tap again."),
    Code.CARD_NOT_GENUINE: N_("Not a genuine NXP card."),
    Code.PURSE_INVALID: N_("Card purse invalid."),
    Code.OFFLINE_LIMIT_PAYMENT: N_("Offline limit per payment exceeded."),
    Code.OFFLINE_LIMIT_DAY: N_("Card's offline daily limit reached."),
    Code.OFFLINE_LIMIT_COUNT: N_("Too many consecutive offline payments."),
    Code.SERVER_UNREACHABLE: N_("Server unreachable."),
    Code.BAD_RECORD: N_("Invalid journal record."),
    Code.CHAIN_GAP: N_("Gap in the journal chain."),
    Code.CHAIN_FORK: N_("Fork in the journal chain."),
    Code.SEQUENCE_CONFLICT: N_("Sequence number already used with other content."),
    Code.SNAPSHOT_BAD_SIGNATURE: N_("Snapshot signature invalid."),
    Code.SNAPSHOT_STALE: N_("Snapshot older than the one the terminal has."),
    Code.JOURNAL_FOREIGN: N_("Journal belongs to another terminal."),
    Code.JOURNAL_CORRUPT: N_("Journal corrupt."),
    Code.PAYMENT_NOT_FOUND: N_("Payment not found."),
    Code.ALREADY_VOIDED: N_("Payment already voided."),
    Code.VOID_TOO_LATE: N_("Only today's payments can be voided."),
    Code.STATE_TRANSITION_REFUSED: N_("This change of a journal record's state is not allowed."),
    Code.SAME_CARD: N_("Old and new card are the same."),
    Code.TOPUP_PENDING: N_(
        "A top-up at a till is not confirmed yet; please try again in a few minutes."
    ),
    Code.PERIOD_INVALID: N_("Invalid period (a month as YYYY-MM, or first and last day)."),
    Code.PERIOD_IN_FUTURE: N_("The period has not ended yet; settle it afterwards."),
    Code.PERIOD_ALREADY_SETTLED: N_("This period is already settled (wholly or in part)."),
    Code.RUN_DOWNLOADED: N_(
        "The bank file was already downloaded; the run can no longer be cancelled."
    ),
    Code.RUN_CANCELLED: N_("This run is cancelled."),
    Code.RUN_NOT_LAST: N_("Only the last run can be cancelled; a later run builds on this one."),
    Code.PERIOD_OUT_OF_ORDER: N_("A period must begin after the last settled period."),
    Code.TOPUP_BY_STATEMENT: N_(
        "Bank transfers are booked from the bank statement (or assigned to the card there)."
    ),
    Code.LINE_ALREADY_BOOKED: N_("This statement line is already booked."),
    Code.SEPA_FILE_INVALID: N_(
        "The SEPA file does not validate and was not made; please check the master data."
    ),
    Code.STATEMENT_INVALID: N_("This is not a readable bank statement (camt.053/camt.054)."),
    Code.STATEMENT_OTHER_ACCOUNT: N_("The statement belongs to another account."),
    Code.STATEMENT_AMBIGUOUS: N_("A statement line matches several payouts; nothing was booked."),
    Code.BELOW_ZERO_NOT_CONFIRMED: N_(
        "The correction would take the card below zero. Only when confirmed explicitly; "
        "the card is then deny-listed."
    ),
    Code.MERCHANT_INACTIVE: N_("This merchant is deactivated."),
    Code.MERCHANT_HAS_TERMINALS: N_(
        "The merchant still has terminals that are active or waiting to be set up; revoke"
        " them before deactivating the merchant."
    ),
    Code.ALERT_ALREADY_HANDLED: N_("This alert was already handled."),
    Code.INVALID_IBAN: N_("The IBAN or BIC is not valid; please check it against the bank letter."),
    Code.USERNAME_TAKEN: N_("This user name is already taken."),
    Code.OWN_ACCOUNT: N_(
        "You cannot deactivate yourself or change your own role; please ask another admin."
    ),
    Code.INTERNAL_ERROR: N_("Internal error."),
    Code.CARD_AUTH_FAILED: N_("The card's key does not match: not a card of this system."),
    Code.CARD_AUTH_REPLAYED: N_("The card replayed an old answer and is refused."),
    Code.CARD_MAC_INVALID: N_("The card's answer did not verify. Please tap again."),
    Code.CARD_FACTORY_KEYS: N_("The card still has its factory keys: it was never issued."),
    Code.CARD_COUNTER_BACKWARDS: N_("The card's tap counter went backwards; the card is refused."),
    Code.SUN_INVALID: N_("This card link is not valid."),
    Code.SUN_STALE: N_("This card link is out of date. Please hold the card to the phone again."),
    Code.CARD_ALREADY_REPLACED: N_(
        "This card was already replaced by another card, and its balance moved there."
    ),
    Code.FORM_INVALID: N_(
        "This form is incomplete or out of date. Please load the page again and fill the form"
        " in once more."
    ),
}

assert set(MESSAGES) == set(Code), "every Code needs its messages"


def message(code: Code, locale: str = "de") -> str:
    """The code's message in one language (`de`, `en`; German for anything else)."""
    return i18n.text(MESSAGES[code], locale)


def messages(code: Code) -> tuple[str, str]:
    """`(German, English)`."""
    return i18n.pair(MESSAGES[code])


def both(code: Code) -> str:
    """`German / English`, as the command lines print a refusal."""
    return i18n.both(MESSAGES[code])


def error_body(code: Code, **details: object) -> dict[str, object]:
    """The JSON body of every error answer: stable code + both messages (+ details)."""
    german, english = messages(code)
    body: dict[str, object] = {"code": code.value, "message_de": german, "message_en": english}
    if details:
        body["details"] = details
    return body


class HCardError(Exception):
    """A refusal with its code; raised in services, turned into answers at the edge."""

    def __init__(self, code: Code, **details: object) -> None:
        # the English msgid: no catalogue is compiled for an exception nobody reads
        super().__init__(f"{code.value}: {MESSAGES[code]}")
        self.code = code
        self.details = details
