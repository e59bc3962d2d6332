"""The card layer: read, check and write Hattingen Cards (NTAG215/216, 424 DNA) by a reader.

    from hcard.terminal.card import CardKeys, Purse, open_reader
    reader = open_reader("pcsc:ACR1252")    # or "usb:", "tty:S0:pn532", "udp:127.0.0.1:54321"
    session = reader.wait_for_card(timeout_s=30, cancel=event)
    if session:
        view = session.read(keys)           # HCardError(Code...) when refused
        session.write_purse(Purse(view.purse.balance_cents - 250, view.next_counter, tid), key)

Layout in docs/card-format.md; the emulator for tests and demo in
`hcard.terminal.card.emulator` (`hcard-card-emulator`).
"""

from __future__ import annotations

from hcard.terminal.card.model import (
    CardKeys,
    CardSession,
    CardView,
    Purse,
    Reader,
    TagIO,
    TagIOError,
)
from hcard.terminal.card.originality import NXP_PUBLIC_KEY_HEX, TEST_PUBLIC_KEY_HEX

__all__ = [
    "NXP_PUBLIC_KEY_HEX",
    "TEST_PUBLIC_KEY_HEX",
    "CardKeys",
    "CardSession",
    "CardView",
    "Purse",
    "Reader",
    "TagIO",
    "TagIOError",
    "open_reader",
]


def open_reader(path: str) -> Reader:
    """The reader for a path: `pcsc:` or `pcsc:<part of the reader name>` (PC/SC
    through pcscd), else an nfcpy device path (`usb:...`, `tty:...`, `udp:host:port`).

    Never fails: an absent device shows as `connected == False` and is retried.
    nfcpy and pyscard are imported here, not at package import, so that code which
    only needs the data shapes does not pay for them (nor needs them installed).
    """
    if path.startswith("pcsc:"):
        from hcard.terminal.card.pcsc_reader import PcscReader

        return PcscReader(path)
    from hcard.terminal.card.nfcpy_reader import NfcpyReader

    return NfcpyReader(path)
