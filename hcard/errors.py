"""Every refusal has a named code and a message in German and English.

The code is the stable, machine-readable part (tests, the terminal, logs);
the messages are what a person reads. German first: the users are in Hattingen.
A new refusal gets a new member here, never a free-text string at the call site.
"""

from __future__ import annotations

from enum import StrEnum


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
    BELOW_ZERO_NOT_CONFIRMED = "below_zero_not_confirmed"
    # settlement
    PERIOD_INVALID = "period_invalid"
    PERIOD_IN_FUTURE = "period_in_future"
    PERIOD_ALREADY_SETTLED = "period_already_settled"
    RUN_DOWNLOADED = "run_downloaded"
    RUN_CANCELLED = "run_cancelled"
    SEPA_FILE_INVALID = "sepa_file_invalid"
    STATEMENT_INVALID = "statement_invalid"
    STATEMENT_OTHER_ACCOUNT = "statement_other_account"
    STATEMENT_AMBIGUOUS = "statement_ambiguous"
    INTERNAL_ERROR = "internal_error"


MESSAGES: dict[Code, tuple[str, str]] = {
    Code.MALFORMED_REQUEST: ("Die Anfrage ist fehlerhaft.", "The request is malformed."),
    Code.BODY_TOO_LARGE: ("Die Anfrage ist zu groß.", "The request body is too large."),
    Code.BATCH_TOO_LARGE: (
        "Zu viele Buchungen in einer Sendung.",
        "Too many records in one batch.",
    ),
    Code.INVALID_AMOUNT: (
        "Ungültiger Betrag (1 Cent bis 10.000 €).",
        "Invalid amount (1 cent to €10,000).",
    ),
    Code.NOT_FOUND: ("Nicht gefunden.", "Not found."),
    Code.INVALID_NAME: (
        "Ungültiger Name: druckbare Zeichen in sinnvoller Länge, keine Steuerzeichen.",
        "Invalid name: printable characters of sensible length, no control characters.",
    ),
    Code.TOO_MANY_ATTEMPTS: (
        "Zu viele Fehlversuche. Bitte etwas später erneut versuchen.",
        "Too many failed attempts. Please try again a little later.",
    ),
    Code.NOT_AUTHENTICATED: ("Bitte anmelden.", "Please log in."),
    Code.FORBIDDEN: ("Keine Berechtigung.", "Not permitted."),
    Code.BAD_CREDENTIALS: (
        "Benutzername oder Passwort falsch.",
        "Wrong user name or password.",
    ),
    Code.UNKNOWN_TERMINAL: ("Terminal unbekannt.", "Unknown terminal."),
    Code.TERMINAL_REVOKED: ("Terminal gesperrt.", "Terminal revoked."),
    Code.BAD_SIGNATURE: ("Signatur ungültig.", "Invalid signature."),
    Code.CLOCK_SKEW: (
        "Uhrzeit des Terminals weicht zu stark ab.",
        "Terminal clock is too far off.",
    ),
    Code.NONCE_REUSED: ("Anfrage wurde bereits gesendet.", "Request was replayed."),
    Code.ENROLMENT_CODE_INVALID: (
        "Anmeldecode ungültig, abgelaufen oder schon benutzt.",
        "Enrolment code invalid, expired or already used.",
    ),
    Code.UNKNOWN_CARD: ("Karte unbekannt.", "Unknown card."),
    Code.CARD_BLOCKED: ("Karte gesperrt.", "Card blocked."),
    Code.CARD_NOT_ISSUED: (
        "Karte nicht von Hattingen Card ausgegeben.",
        "Card not issued by Hattingen Card.",
    ),
    Code.CARD_ALREADY_EXISTS: ("Karte existiert bereits.", "Card already exists."),
    Code.INSUFFICIENT_FUNDS: ("Guthaben reicht nicht.", "Insufficient balance."),
    Code.CARD_COPIED: (
        "Karte ist eine Kopie und wird nicht angenommen.",
        "Card is a copy and is refused.",
    ),
    Code.CARD_TOO_SMALL: (
        "Kartentyp zu klein (NTAG213), bitte NTAG215 verwenden.",
        "Card type too small (NTAG213); use an NTAG215.",
    ),
    Code.CARD_UNREADABLE: (
        "Karte nicht lesbar, bitte erneut auflegen.",
        "Card unreadable, please tap again.",
    ),
    Code.CARD_NOT_GENUINE: (
        "Keine echte NXP-Karte.",
        "Not a genuine NXP card.",
    ),
    Code.PURSE_INVALID: (
        "Kartenspeicher ungültig.",
        "Card purse invalid.",
    ),
    Code.OFFLINE_LIMIT_PAYMENT: (
        "Offline-Grenze je Zahlung überschritten.",
        "Offline limit per payment exceeded.",
    ),
    Code.OFFLINE_LIMIT_DAY: (
        "Offline-Tagesgrenze der Karte erreicht.",
        "Card's offline daily limit reached.",
    ),
    Code.OFFLINE_LIMIT_COUNT: (
        "Zu viele Offline-Zahlungen hintereinander.",
        "Too many consecutive offline payments.",
    ),
    Code.SERVER_UNREACHABLE: ("Server nicht erreichbar.", "Server unreachable."),
    Code.BAD_RECORD: ("Buchungssatz ungültig.", "Invalid journal record."),
    Code.CHAIN_GAP: ("Lücke im Journal.", "Gap in the journal chain."),
    Code.CHAIN_FORK: ("Journal verzweigt (Fork).", "Fork in the journal chain."),
    Code.SEQUENCE_CONFLICT: (
        "Laufende Nummer schon mit anderem Inhalt verwendet.",
        "Sequence number already used with other content.",
    ),
    Code.SNAPSHOT_BAD_SIGNATURE: (
        "Stammdaten vom Server nicht vertrauenswürdig.",
        "Snapshot signature invalid.",
    ),
    Code.SNAPSHOT_STALE: (
        "Stammdaten vom Server älter als die vorhandenen.",
        "Snapshot older than the one the terminal has.",
    ),
    Code.JOURNAL_FOREIGN: (
        "Journal gehört zu einem anderen Terminal.",
        "Journal belongs to another terminal.",
    ),
    Code.JOURNAL_CORRUPT: ("Journal beschädigt.", "Journal corrupt."),
    Code.PAYMENT_NOT_FOUND: ("Zahlung nicht gefunden.", "Payment not found."),
    Code.ALREADY_VOIDED: ("Zahlung schon storniert.", "Payment already voided."),
    Code.VOID_TOO_LATE: (
        "Nur Zahlungen von heute können storniert werden.",
        "Only today's payments can be voided.",
    ),
    Code.STATE_TRANSITION_REFUSED: (
        "Dieser Zustandswechsel einer Buchung ist nicht erlaubt.",
        "This change of a journal record's state is not allowed.",
    ),
    Code.SAME_CARD: ("Alte und neue Karte sind gleich.", "Old and new card are the same."),
    Code.PERIOD_INVALID: (
        "Ungültiger Zeitraum (Monat als JJJJ-MM oder erster und letzter Tag).",
        "Invalid period (a month as YYYY-MM, or first and last day).",
    ),
    Code.PERIOD_IN_FUTURE: (
        "Der Zeitraum ist noch nicht zu Ende; abrechnen erst danach.",
        "The period has not ended yet; settle it afterwards.",
    ),
    Code.PERIOD_ALREADY_SETTLED: (
        "Dieser Zeitraum ist (ganz oder teilweise) schon abgerechnet.",
        "This period is already settled (wholly or in part).",
    ),
    Code.RUN_DOWNLOADED: (
        "Die Bankdatei wurde schon heruntergeladen; "
        "die Abrechnung kann nicht mehr storniert werden.",
        "The bank file was already downloaded; the run can no longer be cancelled.",
    ),
    Code.RUN_CANCELLED: ("Diese Abrechnung ist storniert.", "This run is cancelled."),
    Code.SEPA_FILE_INVALID: (
        "Die SEPA-Datei ist ungültig und wurde nicht erstellt; bitte Stammdaten prüfen.",
        "The SEPA file does not validate and was not made; please check the master data.",
    ),
    Code.STATEMENT_INVALID: (
        "Das ist kein lesbarer Kontoauszug (camt.053/camt.054).",
        "This is not a readable bank statement (camt.053/camt.054).",
    ),
    Code.STATEMENT_OTHER_ACCOUNT: (
        "Der Kontoauszug gehört zu einem anderen Konto.",
        "The statement belongs to another account.",
    ),
    Code.STATEMENT_AMBIGUOUS: (
        "Eine Zeile des Kontoauszugs passt zu mehreren Auszahlungen; nichts wurde gebucht.",
        "A statement line matches several payouts; nothing was booked.",
    ),
    Code.BELOW_ZERO_NOT_CONFIRMED: (
        "Die Korrektur brächte die Karte unter null. Nur mit ausdrücklicher Bestätigung; "
        "die Karte wird dann gesperrt.",
        "The correction would take the card below zero. Only when confirmed explicitly; "
        "the card is then deny-listed.",
    ),
    Code.INTERNAL_ERROR: ("Interner Fehler.", "Internal error."),
}

assert set(MESSAGES) == set(Code), "every Code needs its messages"


def message(code: Code, locale: str = "de") -> str:
    german, english = MESSAGES[code]
    return english if locale.startswith("en") else german


def error_body(code: Code, **details: object) -> dict[str, object]:
    """The JSON body of every error answer: stable code + both messages (+ details)."""
    german, english = MESSAGES[code]
    body: dict[str, object] = {"code": code.value, "message_de": german, "message_en": english}
    if details:
        body["details"] = details
    return body


class HCardError(Exception):
    """A refusal with its code; raised in services, turned into answers at the edge."""

    def __init__(self, code: Code, **details: object) -> None:
        super().__init__(f"{code.value}: {message(code, 'en')}")
        self.code = code
        self.details = details
