"""Memory images of NTAG21x chips, as the card emulator serves them.

An image is a small JSON file (readable in a diff, easy to tamper with in a
test): chip type, all pages as hex, the READ_SIG originality signature and the
NFC counter. Saved atomically (temporary file + rename), so a killed emulator
leaves the old or the new image, never half of one.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import signed
from hcard.terminal.card import layout, originality
from hcard.terminal.card.ntag import (
    CC_PAGE,
    CHIPS,
    NTAG215,
    PAGE_SIZE,
    Chip,
    blank_memory,
    uid_from_pages,
    uid_pages,
)

FORMAT = "hcard-ntag-image-1"


@dataclass
class CardImage:
    chip: Chip
    memory: bytearray
    signature: bytes
    nfc_counter: int = 0

    @property
    def uid(self) -> bytes:
        return uid_from_pages(self.memory)

    def page(self, number: int) -> bytes:
        return bytes(self.memory[number * PAGE_SIZE : (number + 1) * PAGE_SIZE])

    def set_page(self, number: int, data: bytes) -> None:
        if len(data) != PAGE_SIZE:
            raise ValueError("a page has 4 bytes")
        self.memory[number * PAGE_SIZE : (number + 1) * PAGE_SIZE] = data

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "chip": self.chip.name,
            "memory": self.memory.hex(),
            "signature": self.signature.hex(),
            "nfc_counter": self.nfc_counter,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> CardImage:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a card image ({FORMAT})")
        chip = CHIPS[str(data["chip"])]
        memory = bytearray.fromhex(str(data["memory"]))
        if len(memory) != chip.pages * PAGE_SIZE:
            raise ValueError(f"{chip.name} image needs {chip.pages} pages")
        signature = bytes.fromhex(str(data["signature"]))
        counter = data.get("nfc_counter", 0)
        if not isinstance(counter, int):
            raise ValueError("nfc_counter must be an integer")
        return cls(chip, memory, signature, counter)

    def copy(self) -> CardImage:
        return CardImage(self.chip, bytearray(self.memory), self.signature, self.nfc_counter)


def load(path: Path) -> CardImage:
    return CardImage.from_json(json.loads(path.read_text()))


def save(image: CardImage, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(image.to_json(), handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def random_uid() -> bytes:
    """A 7-byte UID with NXP's manufacturer byte 0x04 first."""
    return b"\x04" + secrets.token_bytes(6)


def blank(chip: Chip = NTAG215, uid: bytes | None = None, genuine: bool = True) -> CardImage:
    """A new chip as it leaves the factory; `genuine=False` gives it a bad READ_SIG."""
    uid = uid or random_uid()
    signature = originality.sign_with_test_key(uid) if genuine else secrets.token_bytes(32)
    return CardImage(chip, blank_memory(chip, uid), signature)


def with_uid(image: CardImage, uid: bytes, genuine: bool = True) -> CardImage:
    """The same memory on another chip: what copying a card onto a blank tag gives."""
    copy = image.copy()
    copy.memory[0 : len(uid_pages(uid))] = uid_pages(uid)
    copy.signature = originality.sign_with_test_key(uid) if genuine else secrets.token_bytes(32)
    return copy


def issue(
    image: CardImage,
    card_number: str,
    issuer_key: Ed25519PrivateKey,
    url: str,
    write_secret: bytes,
) -> CardImage:
    """The image after `TagSession.format_new_card`: what issuance writes, without a reader.

    Tests and the demo use it to make valid cards quickly; a test pins that it
    is byte for byte what issuing through nfcpy and the emulator writes.
    """
    issued = image.copy()
    uid = issued.uid
    record = layout.IssuerRecord(card_number, uid, signed.sign_card(issuer_key, card_number, uid))
    for number, data in layout.issued_user_pages(url, record).items():
        issued.set_page(number, data)
    cc = layout.cc_page(issued.chip)
    issued.set_page(CC_PAGE, bytes(a | b for a, b in zip(issued.page(CC_PAGE), cc, strict=True)))
    chip = issued.chip
    cfg = issued.page(chip.cfg0_page) + issued.page(chip.cfg1_page)
    for number, data in layout.protected_config(chip, cfg, write_secret, uid):
        issued.set_page(number, data)
    return issued
