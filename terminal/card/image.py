"""Card images: what the card emulator serves and writes back, one JSON file per card.

Two formats, told apart by their "format" field:
- `hcard-ntag-image-1` (`CardImage`), an NTAG213/215/216: chip type, all pages as hex, the
  READ_SIG originality signature and the NFC counter.
- `hcard-ntag424-image-1` (`ntag424_model.CardState`), an NTAG 424 DNA: UID, originality
  signature, the five AES keys and their versions, the SDM read counter (the tap counter)
  and each file's settings and content. A file's settings are kept as the chip's own
  ChangeFileSettings bytes (FileOption ‖ AccessRights ‖ SDM settings) and its size, so the
  image holds exactly what the chip can hold and `ntag424.FileSettings` reads it back.

Small JSON (readable in a diff, easy to tamper with in a test). Saved atomically (temporary
file + rename), so a killed emulator leaves the old or the new image, never half of one.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import ntag424, signed
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
from hcard.terminal.card.ntag424_model import CardState, DataFile, factory_state

FORMAT = "hcard-ntag-image-1"
FORMAT_424 = "hcard-ntag424-image-1"
CHIP_424 = "NTAG424DNA"


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


def state_to_json(state: CardState) -> dict[str, object]:
    """An NTAG 424 DNA's state as the image's JSON."""
    return {
        "format": FORMAT_424,
        "chip": CHIP_424,
        "uid": state.uid.hex(),
        "signature": state.signature.hex(),
        "keys": [key.hex() for key in state.keys],
        "key_versions": list(state.key_versions),
        "sdm_read_counter": state.sdm_read_counter,
        "files": {
            str(number): {
                "size": file.settings.size,
                "settings": file.settings.change_data().hex(),
                "content": file.content.hex(),
            }
            for number, file in sorted(state.files.items())
        },
    }


def _int(data: dict[str, object], name: str, low: int, high: int) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}")
    return value


def _hex(value: object, name: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be hex text")
    data = bytes.fromhex(value)
    if size is not None and len(data) != size:
        raise ValueError(f"{name} must have {size} bytes")
    return data


def state_from_json(data: dict[str, object]) -> CardState:
    """An NTAG 424 DNA's state from the image's JSON; ValueError when it is not one."""
    if data.get("format") != FORMAT_424:
        raise ValueError(f"not an NTAG 424 DNA image ({FORMAT_424})")
    keys, versions, files = data.get("keys"), data.get("key_versions"), data.get("files")
    key_count = len(ntag424.KeyNo)
    if not isinstance(keys, list) or len(keys) != key_count:
        raise ValueError(f"keys must be a list of {key_count} keys")
    if not isinstance(versions, list) or len(versions) != key_count:
        raise ValueError(f"key_versions must be a list of {key_count} numbers")
    if not all(isinstance(v, int) and 0 <= v <= 0xFF for v in versions):
        raise ValueError("a key version is a byte")
    if not isinstance(files, dict) or set(files) != {str(n) for n in ntag424.FileNo}:
        raise ValueError("files must hold the files 1, 2 and 3")
    state_files: dict[int, DataFile] = {}
    for name, file in files.items():
        if not isinstance(file, dict):
            raise ValueError(f"file {name} must be an object")
        size = _int(file, "size", 1, 0xFFFFFF)
        settings = ntag424.FileSettings.from_change_data(
            _hex(file.get("settings"), "settings"), size
        )
        content = bytearray(_hex(file.get("content"), "content", size))
        state_files[int(name)] = DataFile(settings, content)
    return CardState(
        uid=_hex(data.get("uid"), "uid", ntag424.UID_BYTES),
        signature=_hex(data.get("signature"), "signature"),
        keys=[_hex(key, "key", ntag424.KEY_BYTES) for key in keys],
        key_versions=[int(v) for v in versions],
        files=state_files,
        sdm_read_counter=_int(data, "sdm_read_counter", 0, 0xFFFFFF),
    )


def load(path: Path) -> CardImage | CardState:
    """The card in an image file: an NTAG21x's `CardImage` or an NTAG 424 DNA's `CardState`."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError("a card image is a JSON object")
    if data.get("format") == FORMAT_424:
        return state_from_json(data)
    return CardImage.from_json(data)


def save(card: CardImage | CardState, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    data = card.to_json() if isinstance(card, CardImage) else state_to_json(card)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def chip_name(card: CardImage | CardState) -> str:
    """ "NTAG213" … "NTAG216" or "NTAG424DNA"."""
    return card.chip.name if isinstance(card, CardImage) else CHIP_424


def random_uid() -> bytes:
    """A 7-byte UID with NXP's manufacturer byte 0x04 first."""
    return b"\x04" + secrets.token_bytes(6)


def blank(chip: Chip = NTAG215, uid: bytes | None = None, genuine: bool = True) -> CardImage:
    """A new chip as it leaves the factory; `genuine=False` gives it a bad READ_SIG."""
    uid = uid or random_uid()
    signature = originality.sign_with_test_key(uid) if genuine else secrets.token_bytes(32)
    return CardImage(chip, blank_memory(chip, uid), signature)


def blank424(uid: bytes | None = None, genuine: bool = True) -> CardState:
    """A new NTAG 424 DNA as it leaves the factory (factory keys, test-signed Read_Sig);
    `genuine=False` gives it a signature that does not verify."""
    state = factory_state(uid or random_uid())
    if not genuine:
        state.signature = secrets.token_bytes(len(state.signature))
    return state


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
