"""The public shapes of the card layer: what a reader gives, what a card holds.

The terminal core codes against `Reader` and `CardSession` only; how the bytes
travel (nfcpy over USB, a PN532 on the Pi's UART, nfcpy's `udp:` driver against
the emulator, later an Android tablet's NFC) is hidden behind them. A backend
implements the small `TagIO` protocol and gets the whole card logic (checks,
purse slots, issuance) from `hcard.terminal.card.session.TagSession` for free; for an
NTAG 424 DNA it gives a `transceive` of APDUs to
`hcard.terminal.card.ntag424_session.Ntag424Session`.
No payment logic lives here: the card layer reads, verifies and writes what it
is told to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hcard import ntag424
from hcard.errors import Code
from hcard.records import MAX_COUNTER
from hcard.terminal.card.originality import NXP_PUBLIC_KEY_HEX

PURSE_MAX_COUNTER = MAX_COUNTER  # the journal's `counter` field allows the same range


@dataclass(frozen=True)
class Purse:
    """The purse record on the card: what the last writer knew about the balance.

    `counter` goes up with every purse write (any terminal; by more than one when
    a terminal skipped counters of unanswered online records); the server
    compares it with the journal to catch a card whose memory was rolled back.
    `balance_cents` may be negative only after an offline payment overdrew.
    """

    balance_cents: int
    counter: int
    terminal_id: int

    def __post_init__(self) -> None:
        if not -(2**31) <= self.balance_cents < 2**31:
            raise ValueError("balance_cents does not fit the purse (signed 32 bit)")
        if not 1 <= self.counter <= PURSE_MAX_COUNTER:
            raise ValueError("counter must be in 1 .. 2**31-1")
        if not 1 <= self.terminal_id < 2**32:
            raise ValueError("terminal_id must be in 1 .. 2**32-1")


def no_tap_counter(_uid: bytes) -> int | None:
    """`CardKeys.last_tap_counter` of a till that keeps no tap counters: every tap is new."""
    return None


@dataclass(frozen=True)
class CardKeys:
    """What a terminal needs to check and write cards.

    issuer_public: the server's issuer key (from the snapshot).
    terminal_keys: terminal id → public key, for purse signatures (snapshot).
    write_secret: derives each card's NTAG password (`layout.card_password`);
        the password only keeps phone apps from overwriting the card, it travels
        in clear over the air and is not what makes a card trustworthy.
    originality_key_hex: the trusted READ_SIG key; NXP's in production,
        `originality.TEST_PUBLIC_KEY_HEX` for emulated cards.
    originality_424_key_hex: the same for NTAG 424 DNA cards (another NXP key, another
        curve); `ntag424_model.TEST_ORIGINALITY_PUBLIC_KEY_HEX` for emulated ones. An NTAG
        424 DNA's purse key (key 1) comes from `write_secret` too
        (`ntag424.master_key(write_secret, MasterKind.PURSE)`).
    last_tap_counter: UID → the highest NTAG 424 DNA tap counter (SDMReadCtr) this till
        has seen for the card, None when none; a tap must be above it.
    """

    issuer_public: Ed25519PublicKey
    terminal_keys: Mapping[int, Ed25519PublicKey]
    write_secret: bytes = field(repr=False)  # never in a log
    originality_key_hex: str = NXP_PUBLIC_KEY_HEX
    originality_424_key_hex: str = ntag424.NXP_ORIGINALITY_KEY_HEX
    last_tap_counter: Callable[[bytes], int | None] = no_tap_counter


@dataclass(frozen=True)
class CardView:
    """A card that passed every check: genuine chip, issued by us, bound to its UID.

    `purse` is the newest purse whose terminal signature verified, or None on a
    card that was never written. `purse_code` is PURSE_INVALID when the card
    carries purse data that cannot be trusted (forged, or signed by a terminal
    this till does not know yet): an online payment can still go ahead and write
    a fresh purse; the offline decision refuses (`hcard.terminal.offline`). `counter`
    also counts a newer purse by a terminal not known yet, so the next write
    (`next_counter`) never reuses a counter.
    """

    card_number: str
    uid: bytes
    chip: str
    url: str | None
    purse: Purse | None
    counter: int  # highest purse counter on the card (0 when never written)
    purse_code: Code | None = None
    tap_counter: int | None = None  # an NTAG 424 DNA's SDMReadCtr of this tap

    @property
    def uid_hex(self) -> str:
        """The UID as the journal records it (14 lower-case hex characters)."""
        return self.uid.hex()

    @property
    def next_counter(self) -> int:
        """The counter the next purse write must carry."""
        return self.counter + 1


class TagIOError(Exception):
    """The tag did not answer or refused a command (NAK): gone, torn or not ours."""


class TagIO(Protocol):
    """The few raw operations a backend must offer; pages are 4 bytes."""

    @property
    def uid(self) -> bytes: ...
    def get_version(self) -> bytes | None:
        """The 8-byte GET_VERSION answer, None if the tag does not know the command."""
        ...

    def read_pages(self, first: int, last: int) -> bytes:
        """Pages first..last inclusive."""
        ...

    def write_page(self, page: int, data: bytes) -> None: ...
    def read_signature(self) -> bytes: ...
    def authenticate(self, password: bytes, pack: bytes) -> bool:
        """PWD_AUTH: True when the tag answered `pack`, False on a NAK (wrong
        password), TagIOError when it did not answer at all."""
        ...

    def is_present(self) -> bool: ...


class CardSession(Protocol):
    """One tap: a card in the field, ready to be read and written.

    Every method raises `HCardError` with a cashier-readable code; a session is
    used from one thread and ends with `close()` (or when the card leaves).
    """

    @property
    def uid(self) -> bytes: ...
    @property
    def chip(self) -> str:
        """ "NTAG215", "NTAG216", "NTAG213", "NTAG424DNA" or "unknown"."""
        ...

    def read(self, keys: CardKeys) -> CardView:
        """Read and check the card (chip, originality, issuer signature, purse)."""
        ...

    def write_purse(self, purse: Purse, key: Ed25519PrivateKey) -> None:
        """Sign and write `purse` into the older slot (needs a `read` first).

        `purse.counter` must be at least `view.next_counter` (the terminal may
        skip counters its unanswered online records used). If the card leaves during
        the write, HCardError(CARD_UNREADABLE) is raised with `details["written"]`
        "none" (nothing reached the card) or "unknown": the card then holds
        either the old or the new purse, both valid; the next read tells which.
        """
        ...

    def format_new_card(
        self, card_number: str, issuer_signature: bytes, url: str, write_secret: bytes
    ) -> None:
        """Issue a blank card: NDEF (URL + issuer record), empty purse slots, password.

        The password protection (AUTH0) takes effect when the card next powers up. An NTAG
        424 DNA needs more secrets than this has room for: it refuses, and is issued with
        `Ntag424Session.issue`.
        """
        ...

    def wait_removed(self, timeout_s: float) -> bool:
        """Block until the card has left the field (True) or `timeout_s` passed."""
        ...

    def close(self) -> None: ...


class Reader(Protocol):
    """A card reader. `connected` is False while the device is unplugged or
    unusable; the reader reopens it by itself (with backoff) on later calls."""

    @property
    def connected(self) -> bool: ...
    @property
    def path(self) -> str: ...
    def wait_for_card(
        self, timeout_s: float, cancel: threading.Event | None = None
    ) -> CardSession | None:
        """The next card in the field, or None after `timeout_s` or on `cancel`.

        A card that stays in the field is found again at once: a caller that
        wants a new tap calls `CardSession.wait_removed` first. `close()` waits
        for a running `wait_for_card`, so set `cancel` before closing.
        """
        ...

    def close(self) -> None: ...
