"""One tap of an NTAG 424 DNA: the `CardSession` of the second card type.

Work in progress (issue 12): the constructor and the end of a tap are final; reading,
writing and issuance follow.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard.terminal.card.model import CardKeys, CardView, Purse, TagIOError

CHIP_NAME = "NTAG424DNA"
REMOVAL_POLL_S = 0.05
Transceive = Callable[[bytes], bytes]


class Ntag424Session:
    """A `CardSession` over a transceive function (command APDU in, answer APDU out)."""

    def __init__(self, uid: bytes, transceive: Transceive, is_present: Callable[[], bool]) -> None:
        self._uid = bytes(uid)
        self._transceive = transceive
        self._is_present = is_present
        self._view: CardView | None = None

    @property
    def uid(self) -> bytes:
        return self._uid

    @property
    def chip(self) -> str:
        return CHIP_NAME

    def read(self, keys: CardKeys) -> CardView:
        raise NotImplementedError("Ntag424Session.read: issue 12, helper C")

    def write_purse(self, purse: Purse, key: Ed25519PrivateKey) -> None:
        raise NotImplementedError("Ntag424Session.write_purse: issue 12, helper C")

    def format_new_card(
        self, card_number: str, issuer_signature: bytes, url: str, write_secret: bytes
    ) -> None:
        raise NotImplementedError("Ntag424Session.format_new_card: issue 12, helper C")

    def wait_removed(self, timeout_s: float) -> bool:
        deadline_s = time.monotonic() + timeout_s
        while True:
            try:
                present = self._is_present()
            except TagIOError:
                present = False
            if not present:
                return True
            if time.monotonic() >= deadline_s:
                return False
            time.sleep(REMOVAL_POLL_S)

    def close(self) -> None:
        self._view = None
