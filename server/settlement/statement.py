"""The merchant's statement for a run, which is also the operator's fee invoice.

One Jinja2 template (`templates/statement.html`) makes the HTML page and, through
WeasyPrint, the PDF (PDF/A-3b, for archiving). German first, English beside. It carries
what a German invoice must (UStG § 14 (4)): a sequential invoice number, the date, the
operator's name, address and tax number, the merchant's name and address, what was
charged and for which period, net, rate, VAT and gross; and the redemptions of the
period (each payment, void and till top-up; those that arrived late marked with the date
the till recorded them), because the merchant owes VAT on what was spent.
"""

from __future__ import annotations

import csv
import ctypes
import datetime as dt
import io
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import jinja2

from hcard.money import format_cents

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_TEMPLATES.filters["eur"] = format_cents
_TEMPLATES.filters["de_date"] = lambda day: day.strftime("%d.%m.%Y") if day else ""


@dataclass(frozen=True)
class Party:
    name: str
    address_lines: Sequence[str]
    tax_number: str = ""
    iban: str = ""


class ItemKind(StrEnum):
    """What a line of the statement is, as the merchant sees it."""

    PAYMENT = "payment"
    VOID = "void"  # a payment given back
    TILL_TOPUP = "till_topup"  # cash taken at the till for a card
    TILL_TOPUP_VOID = "till_topup_void"
    RETURN = "return"  # a payout of an earlier run that came back


@dataclass(frozen=True)
class Item:
    when: dt.datetime  # booked by the server (Europe/Berlin)
    kind: ItemKind
    label: str
    amount_cents: int  # as the merchant sees it: + owed to them, − owed by them
    terminal: str = ""
    receipt: str = ""
    #: the till's own date for an offline payment that arrived after the cut-off
    late_recorded: dt.date | None = None


@dataclass(frozen=True)
class StatementData:
    invoice_number: str
    issued: dt.date
    period_start: dt.date
    period_end: dt.date  # inclusive
    operator: Party
    merchant: Party
    merchant_id: int
    items: Sequence[Item]
    payments_cents: int
    voids_cents: int
    topups_cents: int
    returns_cents: int
    carry_in_cents: int
    fee_rate_bp: int
    fee_net_cents: int
    vat_bp: int
    vat_cents: int
    payout_cents: int
    carry_out_cents: int
    outcome: str
    execution_date: dt.date | None = None
    end_to_end_id: str = ""
    notes: Sequence[str] = field(default_factory=tuple)

    @property
    def fee_gross_cents(self) -> int:
        return self.fee_net_cents + self.vat_cents

    @property
    def late_count(self) -> int:
        return sum(item.late_recorded is not None for item in self.items)


def percent(basis_points: int) -> str:
    """`1250` → `12,5 %`."""
    whole, rest = divmod(basis_points, 100)
    text = f"{whole},{rest:02d}".rstrip("0").rstrip(",")
    return f"{text}\u00a0%"


_TEMPLATES.filters["percent"] = percent


_WIDTH = 96


def movement_lines(items: Sequence[Item]) -> str:
    """The movements as fixed columns: booked, what, till and receipt, amount; a late one
    gets a second line with the date its till recorded it."""
    header = f"{'Gebucht / booked':<17} {'Art / kind':<28} {'Kasse, Beleg / till, receipt':<34}"
    lines = [f"{header}{'Betrag':>15}", "-" * _WIDTH]
    for item in items:
        what = _KIND_TEXT.get(item.kind, item.kind)
        where = f"{item.terminal} {item.receipt}".strip()
        amount = format_cents(item.amount_cents)
        lines.append(f"{item.when:%d.%m.%Y %H:%M}  {what[:28]:<28} {where[:34]:<34}{amount:>15}")
        if item.late_recorded is not None:
            lines.append(
                f"{'':17} nachträglich, an der Kasse am {item.late_recorded:%d.%m.%Y}"
                f" / late, recorded on {item.late_recorded:%Y-%m-%d}"
            )
    return "\n".join(lines)


_KIND_TEXT = {
    ItemKind.PAYMENT: "Zahlung / payment",
    ItemKind.VOID: "Storno / void",
    ItemKind.TILL_TOPUP: "Aufladung / top-up",
    ItemKind.TILL_TOPUP_VOID: "Storno Aufladung / top-up void",
    ItemKind.RETURN: "Rücküberweisung / return",
}


def render_html(data: StatementData) -> str:
    return _TEMPLATES.get_template("statement.html").render(
        s=data, movements=movement_lines(data.items)
    )


#: a cell starting with one of these is a formula to a spreadsheet (`=HYPERLINK(…)`)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text_cell(value: str) -> str:
    """A text cell as a spreadsheet shows it and never runs it: a till's name is typed by
    the office or the merchant, and `=…`, `+…`, `-…` or `@…` would be a formula."""
    return f"'{value}" if value.startswith(_FORMULA_START) else value


def render_csv(data: StatementData) -> str:
    """The movements for a merchant's own bookkeeping: one row each, amounts in cents (as
    numbers; text cells guarded against formulas)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["booked", "kind", "till", "receipt", "amount_cents", "late_recorded"])
    for item in data.items:
        late = item.late_recorded.isoformat() if item.late_recorded else ""
        writer.writerow(
            [
                item.when.isoformat(sep=" "),
                item.kind,
                _text_cell(item.terminal),
                _text_cell(item.receipt),
                item.amount_cents,
                late,
            ]
        )
    return out.getvalue()


def die_with_parent() -> None:
    """Initializer of the statement workers: killed when the server that started them goes
    (Linux `PR_SET_PDEATHSIG`), so a server stopped mid-run leaves no worker behind."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent was already gone before the call
            os._exit(1)


_PR_SET_PDEATHSIG = 1


def render_pdf(data: StatementData) -> bytes:
    """The same page as PDF/A-3b (WeasyPrint; about 0.2 s for a page here)."""
    import weasyprint  # heavy: imported only where a PDF is made

    return bytes(weasyprint.HTML(string=render_html(data)).write_pdf(pdf_variant="pdf/a-3b"))
