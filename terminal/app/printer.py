"""Day-close receipts on an ESC/POS printer (python-escpos), or none at all.

A printer is named by one string in the settings:

- `""`                      no printer: printing is skipped, the totals stay on screen
- `file:/dev/usb/lp0`       a USB receipt printer through the kernel's usblp driver
                            (what a Raspberry Pi sees; no libusb or udev juggling)
- `net:192.168.1.50[:9100]` a network printer (raw port 9100)

Raw USB through pyusb is left out on purpose: usblp covers the same printers
without one more native dependency on the till.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from hcard.i18n import both as _
from hcard.money import format_cents
from hcard.terminal.till import DayTotals

RECEIPT_WIDTH = 32  # characters on a 58 mm roll; 80 mm rolls print it with a margin


class PrinterKind(StrEnum):
    FILE = "file"  # a device file (usblp)
    NET = "net"  # raw TCP, port 9100 by default


class PrinterError(Exception):
    """The printer is configured but could not print (off, no paper, unreachable)."""


@dataclass(frozen=True)
class PrinterSpec:
    kind: PrinterKind
    target: str
    port: int = 9100


def parse_printer_spec(spec: str) -> PrinterSpec | None:
    """Parse a printer string; None for "no printer"; ValueError when malformed."""
    spec = spec.strip()
    if not spec:
        return None
    kind, sep, target = spec.partition(":")
    if not sep or kind not in tuple(PrinterKind) or not target:
        raise ValueError(
            _("invalid printer {spec!r}: file:/dev/usb/lp0 or net:HOST[:PORT]", spec=spec)
        )
    if kind == PrinterKind.FILE:
        return PrinterSpec(PrinterKind.FILE, target)
    host, _colon, port_text = target.partition(":")
    if port_text and not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(_("printer {spec!r}: invalid port", spec=spec))
    port = int(port_text) if port_text else 9100
    if not 0 < port < 65536 or not host:
        raise ValueError(_("printer {spec!r}: invalid port", spec=spec))
    return PrinterSpec(PrinterKind.NET, host, port)


def day_close_lines(
    totals: DayTotals,
    header: str,
    _: Callable[[str], str],
    locale: str,
) -> list[str]:
    """The receipt text, one entry per printed line, at most RECEIPT_WIDTH wide."""

    def row(label: str, value: str) -> str:
        room = RECEIPT_WIDTH - len(value) - 1
        return f"{label[:room]:<{room}} {value}"

    def money(cents: int) -> str:
        return format_cents(cents, locale).replace("\u00a0", " ")  # printers lack NBSP

    receipts = (
        "-"
        if totals.first_receipt_no is None
        else f"{totals.first_receipt_no}-{totals.last_receipt_no}"
    )
    return [
        header[:RECEIPT_WIDTH],
        _("Day close"),
        "-" * RECEIPT_WIDTH,
        row(_("Receipts"), receipts),
        row(_("Payments"), str(totals.count)),
        row(_("Total"), money(totals.sum_cents)),
        row(_("Voids"), str(totals.void_count)),
        row(_("Voided amount"), money(totals.void_sum_cents)),
        row(_("Offline payments"), str(totals.offline_count)),
        "-" * RECEIPT_WIDTH,
        # the cash taken for top-ups is the operator's: apart from the sales
        row(_("Top-ups"), str(totals.topup_count)),
        row(_("Top-up total"), money(totals.topup_sum_cents)),
        row(_("Voided top-ups"), str(totals.topup_void_count)),
        row(_("Voided top-up amount"), money(totals.topup_void_sum_cents)),
        row(_("Cash for the operator"), money(totals.operator_cash_cents)),
        "-" * RECEIPT_WIDTH,
        row(_("Not yet synced"), str(totals.unsynced_count)),
        "-" * RECEIPT_WIDTH,
    ]


def print_lines(spec: PrinterSpec, lines: list[str], timeout_s: float = 10) -> None:
    """Print and cut; PrinterError with a plain message when it cannot."""
    from escpos import printer as escpos_printer  # imported late: start-up time
    from escpos.exceptions import Error as EscposError

    if spec.kind == PrinterKind.FILE:
        device = escpos_printer.File(spec.target)
    else:
        device = escpos_printer.Network(spec.target, port=spec.port, timeout=timeout_s)
    try:
        device.open()
        device.text("\n".join(lines) + "\n\n")
        device.cut()
    except (OSError, EscposError) as exc:
        raise PrinterError(str(exc)) from exc
    finally:
        with contextlib.suppress(OSError, EscposError, AttributeError):
            device.close()
