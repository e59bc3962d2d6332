"""One tap, whatever the backend: the card checks, the purse slots and issuance.

`TagSession` turns the raw page access of a `TagIO` into the `CardSession` the
terminal core uses. The order of the checks is the order of what a cashier can
do about them: a chip we cannot talk to (tap again), the wrong chip, a chip not
made by NXP, a card we did not issue or a copy, and last the purse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import cardnumber
from hcard.errors import Code, HCardError
from hcard.terminal.card import checks, layout, originality
from hcard.terminal.card.model import CardKeys, CardView, Purse, TagIO, TagIOError
from hcard.terminal.card.ntag import BY_VERSION, CC_PAGE, FIRST_USER_PAGE, PAGE_SIZE, Chip

# Pages per FAST_READ: 60 pages are 240 bytes, inside every PN53x frame and
# inside one datagram of nfcpy's udp driver (about 500 bytes).
READ_CHUNK_PAGES = 60
T = TypeVar("T")


class TagSession:
    """A `CardSession` over any `TagIO` backend."""

    def __init__(self, io: TagIO) -> None:
        self._io = io
        self._chip: Chip | None = None
        self._chip_known = False
        self._view: CardView | None = None
        self._write_slot = 0
        self._auth0 = 0xFF
        self._write_secret: bytes | None = None
        self._authenticated = False

    # --- what the chip is ----------------------------------------------------

    @property
    def uid(self) -> bytes:
        return self._io.uid

    def _identify(self) -> Chip | None:
        if not self._chip_known:
            version = self._call(self._io.get_version)
            self._chip = BY_VERSION.get(version) if version else None
            self._chip_known = True
        return self._chip

    @property
    def chip(self) -> str:
        chip = self._identify()
        return chip.name if chip else "unknown"

    def _usable_chip(self) -> Chip:
        chip = self._identify()
        if chip is None:
            raise HCardError(Code.CARD_UNREADABLE, reason="unknown tag type")
        if not layout.fits(chip):
            raise HCardError(Code.CARD_TOO_SMALL, chip=chip.name)
        return chip

    # --- raw access, errors turned into the cashier's "tap again" -------------

    @staticmethod
    def _call(operation: Callable[..., T], *args: object) -> T:
        try:
            return operation(*args)
        except TagIOError as error:
            raise HCardError(Code.CARD_UNREADABLE, reason=str(error)) from error

    def _read(self, first: int, last: int) -> bytes:
        data = bytearray()
        for start in range(first, last + 1, READ_CHUNK_PAGES):
            end = min(last, start + READ_CHUNK_PAGES - 1)
            chunk = self._call(self._io.read_pages, start, end)
            if len(chunk) != (end - start + 1) * PAGE_SIZE:
                raise HCardError(Code.CARD_UNREADABLE, reason="short read")
            data += chunk
        return bytes(data)

    # --- reading ---------------------------------------------------------------

    def read(self, keys: CardKeys) -> CardView:
        chip = self._usable_chip()
        memory = self._read(0, layout.LAST_LAYOUT_PAGE)
        cfg = self._read(chip.cfg0_page, chip.cfg1_page)
        uid = self.uid
        signature = self._call(self._io.read_signature)
        if not originality.signature_ok(uid, signature, keys.originality_key_hex):
            raise HCardError(Code.CARD_NOT_GENUINE)
        ndef_end = (layout.NDEF_FIRST_PAGE + layout.NDEF_PAGES) * PAGE_SIZE
        url, record = checks.issued(
            layout.parse_ndef_area,
            memory[FIRST_USER_PAGE * PAGE_SIZE : ndef_end],
            uid,
            keys.issuer_public,
        )
        slots = [
            memory[first * PAGE_SIZE : first * PAGE_SIZE + layout.SLOT_BYTES]
            for first in layout.SLOT_FIRST_PAGES
        ]
        choice = checks.purse_choice(slots, uid, record.card_number, keys.terminal_keys)
        self._write_slot = choice.write_slot
        self._auth0 = cfg[3]
        self._write_secret = keys.write_secret
        self._view = checks.card_view(record, uid, chip.name, url, choice)
        return self._view

    # --- writing ---------------------------------------------------------------

    def _authenticate(self, write_secret: bytes, last_page: int) -> None:
        """PWD_AUTH once per session, only when AUTH0 protects a page up to `last_page`."""
        if self._authenticated or self._auth0 > last_page:
            return
        password, pack = layout.card_password(write_secret, self.uid)
        try:
            accepted = self._io.authenticate(password, pack)
        except TagIOError as error:
            raise HCardError(Code.CARD_UNREADABLE, written="none", reason=str(error)) from error
        if not accepted:
            # Our password does not open it: a card protected by someone else.
            raise HCardError(Code.CARD_NOT_ISSUED, reason="card password refused")
        self._authenticated = True

    def _write_pages(self, pages: list[tuple[int, bytes]]) -> None:
        for page, data in pages:
            try:
                self._io.write_page(page, data)
            except TagIOError as error:
                raise HCardError(
                    Code.CARD_UNREADABLE, written="unknown", reason=str(error)
                ) from error

    def write_purse(self, purse: Purse, key: Ed25519PrivateKey) -> None:
        view = self._view
        if view is None or self._write_secret is None:
            raise RuntimeError("read() the card before writing its purse")
        checks.require_next_counter(view, purse)
        self._authenticate(self._write_secret, layout.LAST_LAYOUT_PAGE)
        raw = layout.encode_slot(purse, view.uid, view.card_number, key)
        first = layout.SLOT_FIRST_PAGES[self._write_slot]
        self._write_pages(
            [
                (first + i, raw[i * PAGE_SIZE : (i + 1) * PAGE_SIZE])
                for i in range(layout.SLOT_PAGES)
            ]
        )
        # The slot just written is now the newest; the next write goes to the other.
        self._write_slot = 1 - self._write_slot
        self._view = checks.after_write(view, purse)

    def format_new_card(
        self, card_number: str, issuer_signature: bytes, url: str, write_secret: bytes
    ) -> None:
        chip = self._usable_chip()
        if not cardnumber.is_valid(card_number):
            raise ValueError(f"not a Hattingen Card number: {card_number!r}")
        uid = self.uid
        if not url.startswith("https://") or not url.endswith("/c/" + card_number):
            raise ValueError("the card URL must be https://<host>/c/<card number>")
        if len(issuer_signature) != layout.SIGNATURE_BYTES:
            raise ValueError("an issuer signature has 64 bytes")
        record = layout.IssuerRecord(card_number, uid, issuer_signature)
        pages = layout.issued_user_pages(url, record)
        cfg = self._read(chip.cfg0_page, chip.cfg1_page)
        self._auth0 = cfg[3]
        self._authenticate(write_secret, chip.last_page)
        self._write_pages(sorted(pages.items()))
        self._write_pages([(CC_PAGE, layout.cc_page(chip))])
        self._write_pages(layout.protected_config(chip, cfg, write_secret, uid))
        self._view = None

    # --- the end of a tap --------------------------------------------------------

    def wait_removed(self, timeout_s: float) -> bool:
        return checks.wait_removed(self._io.is_present, timeout_s)

    def close(self) -> None:
        self._view = None
