"""Exports for the tax adviser: a DATEV Buchungsstapel and a plain CSV of every transaction.

Pure functions over the ledger's transactions of a period (`Booking`); the service reads
them. The ledger's sign convention is that a posting adds to an account's balance, and
every balance is what the scheme owes (a card, a merchant, the fees) or, for the float
accounts (bank, cash, online), minus what came in. So in bookkeeping terms a negative
posting is a debit (Soll) and a positive one a credit (Haben); every DATEV line pairs
one of each.

DATEV: "EXTF" format 700, category 21 (Buchungsstapel), a header line, the column names,
then one line per booking (amount with a decimal comma, S, EUR, account, contra account,
document date DDMM, document field 1 (our transaction id), text). Accounts come from
`DatevAccounts` (SKR03 defaults; merchants as creditors 70000 + id).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

LOCAL = ZoneInfo("Europe/Berlin")


@dataclass(frozen=True)
class Entry:
    account_key: str  # `card:<number>`, `merchant:<id>`, or a system account's kind
    amount_cents: int


@dataclass(frozen=True)
class Booking:
    txn_id: int
    created_s: float
    kind: str
    label: str
    postings: Sequence[Entry]
    terminal_id: int | None = None
    seq: int | None = None
    user: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class DatevAccounts:
    """SKR03 defaults; an operator's tax adviser may want others (settings)."""

    bank: int = 1200
    cash: int = 1000
    online: int = 1360
    in_transit: int = 1360
    cards: int = 1700  # voucher liabilities (sonstige Verbindlichkeiten)
    fees: int = 8400  # fee revenue
    correction: int = 1790
    bonus_pool: int = 1790
    merchant_base: int = 70000  # creditor accounts: 70000 + merchant id
    consultant: int = 1001  # Beraternummer
    client: int = 1  # Mandantennummer
    account_length: int = 4

    def of(self, account_key: str) -> int:
        kind, _, rest = account_key.partition(":")
        if kind == "merchant":
            return self.merchant_base + int(rest)
        if kind == "card":
            return self.cards
        return int(getattr(self, kind))


def _pairs(postings: Sequence[Entry]) -> list[tuple[str, str, int]]:
    """(debit account, credit account, cents) lines that together make the booking."""
    debits = [(p.account_key, -p.amount_cents) for p in postings if p.amount_cents < 0]
    credits = [(p.account_key, p.amount_cents) for p in postings if p.amount_cents > 0]
    lines: list[tuple[str, str, int]] = []
    d = c = 0
    debit_left = debits[0][1] if debits else 0
    credit_left = credits[0][1] if credits else 0
    while d < len(debits) and c < len(credits):
        amount = min(debit_left, credit_left)
        lines.append((debits[d][0], credits[c][0], amount))
        debit_left -= amount
        credit_left -= amount
        if debit_left == 0:
            d += 1
            debit_left = debits[d][1] if d < len(debits) else 0
        if credit_left == 0:
            c += 1
            credit_left = credits[c][1] if c < len(credits) else 0
    return lines


def _comma(cents: int) -> str:
    return f"{cents // 100},{cents % 100:02d}"


def datev(
    bookings: Iterable[Booking],
    accounts: DatevAccounts,
    *,
    period_start: dt.date,
    period_end: dt.date,
    created: dt.datetime,
    fiscal_year_start: dt.date,
) -> str:
    """The DATEV Buchungsstapel (EXTF 700) of the bookings; `period_end` inclusive."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    header = [
        "EXTF", 700, 21, "Buchungsstapel", 13, created.strftime("%Y%m%d%H%M%S%f")[:17], "",
        "", "", "", accounts.consultant, accounts.client, fiscal_year_start.strftime("%Y%m%d"),
        accounts.account_length, period_start.strftime("%Y%m%d"), period_end.strftime("%Y%m%d"),
        "Hattingen Card", "", 1, 0, 0, "EUR",
    ]  # fmt: skip
    writer.writerow(header)
    writer.writerow(
        [
            "Umsatz (ohne Soll/Haben-Kz)", "Soll/Haben-Kennzeichen", "WKZ Umsatz", "Kurs",
            "Basis-Umsatz", "WKZ Basis-Umsatz", "Konto", "Gegenkonto (ohne BU-Schlüssel)",
            "BU-Schlüssel", "Belegdatum", "Belegfeld 1", "Belegfeld 2", "Skonto", "Buchungstext",
        ]
    )  # fmt: skip
    for booking in bookings:
        day = dt.datetime.fromtimestamp(booking.created_s, LOCAL)
        for debit, credit, cents in _pairs(booking.postings):
            writer.writerow(
                [
                    _comma(cents), "S", "EUR", "", "", "", accounts.of(debit), accounts.of(credit),
                    "", day.strftime("%d%m"), booking.txn_id, "", "",
                    (booking.label or booking.kind)[:60],
                ]
            )  # fmt: skip
    return out.getvalue()


CSV_COLUMNS = (
    "txn_id", "date", "time", "kind", "label", "account", "amount_cents", "amount_eur",
    "terminal_id", "seq", "user", "reason",
)  # fmt: skip


def plain_csv(bookings: Iterable[Booking]) -> str:
    """Every posting of every booking, one row each (UTF-8, comma, header row)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for booking in bookings:
        when = dt.datetime.fromtimestamp(booking.created_s, LOCAL)
        for posting in booking.postings:
            sign = "-" if posting.amount_cents < 0 else ""
            euros = (
                f"{sign}{abs(posting.amount_cents) // 100}.{abs(posting.amount_cents) % 100:02d}"
            )
            writer.writerow(
                [
                    booking.txn_id, when.date().isoformat(), when.strftime("%H:%M:%S"),
                    booking.kind, booking.label, posting.account_key, posting.amount_cents, euros,
                    booking.terminal_id or "", booking.seq or "", booking.user or "",
                    booking.reason or "",
                ]
            )  # fmt: skip
    return out.getvalue()
