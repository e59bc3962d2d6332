"""The byte layout of a Hattingen Card (see docs/card-format.md for the why).

User memory of an NTAG215 (pages 4-129), the same on an NTAG216:

    pages   4- 63  NDEF area, 240 bytes: TLV 03 <len> <message> FE, zero padding.
                   Message = URI record (https://<host>/c/<card number>, for phones)
                   + external record `hattingen.de:card` (issuer record below).
    pages  64- 83  purse slot 0, 80 bytes
    pages  84-103  purse slot 1, 80 bytes
    pages 104-129  free (kept for a later bonus programme)

Issuer record payload (88 bytes): version 01 | UID (7) | card number (16 ASCII
digits) | Ed25519 issuer signature (64, `hcard.signed.sign_card`).

Purse slot (80 bytes): version 01 | counter u32 | balance_cents i32 |
terminal_id u32 | 3 zero bytes | Ed25519 terminal signature (64), integers big
endian. The signature covers PURSE_DOMAIN, the UID, the card number and the
first 16 bytes, so a purse cannot be replayed onto another card.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import Enum

import ndef
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hcard import cardnumber, cardsecret, keys
from hcard.terminal.card.model import Purse
from hcard.terminal.card.ntag import CC_PAGE, FIRST_USER_PAGE, PAGE_SIZE, UID_LENGTH, Chip

NDEF_FIRST_PAGE = FIRST_USER_PAGE
NDEF_PAGES = 60
SLOT_PAGES = 20
SLOT_FIRST_PAGES = (NDEF_FIRST_PAGE + NDEF_PAGES, NDEF_FIRST_PAGE + NDEF_PAGES + SLOT_PAGES)
LAST_LAYOUT_PAGE = SLOT_FIRST_PAGES[1] + SLOT_PAGES - 1  # 103: a tap reads pages 0..103
SLOT_BYTES = SLOT_PAGES * PAGE_SIZE
NDEF_AREA_BYTES = NDEF_PAGES * PAGE_SIZE
MESSAGE_MAX_BYTES = NDEF_AREA_BYTES - 3  # TLV tag + 1-byte length + terminator
# First page that needs the password for writes; page 3 (the capability
# container, one-time programmable) included, so nobody can OR bits into it.
AUTH0 = CC_PAGE
CC_READ_ONLY = 0x0F  # CC access byte: phones show the card as read-only

ISSUER_RECORD_TYPE = "urn:nfc:ext:hattingen.de:card"
ISSUER_RECORD_VERSION = 1
PURSE_VERSION = 1
PURSE_DOMAIN = b"HCARD-PURSE-1\n"
PASSWORD_DOMAIN = b"HCARD-PWD-1\n"
_PURSE_HEADER = struct.Struct(">BIiI3x")  # 16 bytes
SIGNATURE_BYTES = 64


class LayoutError(ValueError):
    """Bytes on the card that do not follow the layout (garbage, torn, foreign)."""


def fits(chip: Chip) -> bool:
    """True when the chip has room for the layout (NTAG215 and NTAG216; not NTAG213)."""
    return chip.last_user_page >= LAST_LAYOUT_PAGE


# --- NDEF area ---------------------------------------------------------------


@dataclass(frozen=True)
class IssuerRecord:
    card_number: str
    uid: bytes
    signature: bytes

    def payload(self) -> bytes:
        return (
            bytes([ISSUER_RECORD_VERSION])
            + self.uid
            + self.card_number.encode("ascii")
            + self.signature
        )

    @classmethod
    def parse(cls, payload: bytes) -> IssuerRecord:
        expected = 1 + UID_LENGTH + cardnumber.LENGTH + SIGNATURE_BYTES
        if len(payload) != expected or payload[0] != ISSUER_RECORD_VERSION:
            raise LayoutError("issuer record has the wrong version or length")
        number = payload[1 + UID_LENGTH : 1 + UID_LENGTH + cardnumber.LENGTH]
        try:
            text = number.decode("ascii")
        except UnicodeDecodeError as error:
            raise LayoutError("card number is not ASCII") from error
        if not cardnumber.is_valid(text):
            raise LayoutError("issuer record holds no valid card number")
        return cls(text, bytes(payload[1 : 1 + UID_LENGTH]), bytes(payload[-SIGNATURE_BYTES:]))


def ndef_message(url: str, record: IssuerRecord) -> bytes:
    """The NDEF message of every card type: URI record (`url`), then the issuer record."""
    return b"".join(
        ndef.message_encoder(
            [ndef.UriRecord(url), ndef.Record(ISSUER_RECORD_TYPE, "", record.payload())]
        )
    )


def ndef_area(url: str, record: IssuerRecord) -> bytes:
    """The 240 bytes of pages 4-63: NDEF TLV with URL and issuer record."""
    message = ndef_message(url, record)
    if len(message) > MESSAGE_MAX_BYTES:
        raise ValueError(f"NDEF message of {len(message)} bytes does not fit the card")
    area = bytes([0x03, len(message)]) + message + b"\xfe"
    return area + bytes(NDEF_AREA_BYTES - len(area))


def _ndef_tlv(area: bytes) -> bytes:
    """The value of the first NDEF TLV; NULL, lock, memory and proprietary TLVs skipped."""
    offset = 0
    while offset < len(area):
        tag = area[offset]
        if tag == 0x00:
            offset += 1
            continue
        if tag == 0xFE:
            break
        if offset + 1 >= len(area):
            break
        length, start = area[offset + 1], offset + 2
        if length == 0xFF:
            if offset + 4 > len(area):
                raise LayoutError("TLV length runs past the NDEF area")
            length, start = struct.unpack(">H", area[offset + 2 : offset + 4])[0], offset + 4
        if start + length > len(area):
            raise LayoutError("TLV runs past the NDEF area")
        if tag == 0x03:
            return bytes(area[start : start + length])
        offset = start + length
    raise LayoutError("no NDEF message on the card")


def parse_ndef_area(area: bytes) -> tuple[str | None, IssuerRecord | None]:
    """URL and issuer record of the NDEF area; LayoutError if it is not NDEF."""
    return parse_ndef_message(_ndef_tlv(area))


def parse_ndef_message(message: bytes) -> tuple[str | None, IssuerRecord | None]:
    """URL and issuer record of an NDEF message (any card type); LayoutError if it does not
    decode."""
    if not message:
        return None, None
    try:
        records = list(ndef.message_decoder(message, errors="strict"))
    except (ndef.DecodeError, UnicodeDecodeError) as error:
        # ndef decodes a record type as ASCII without catching it: a garbled type byte
        raise LayoutError(f"NDEF message does not decode: {error}") from error
    url = next((r.iri for r in records if isinstance(r, ndef.UriRecord)), None)
    issuer = next((r for r in records if r.type == ISSUER_RECORD_TYPE), None)
    return url, IssuerRecord.parse(bytes(issuer.data)) if issuer is not None else None


# --- purse slots -------------------------------------------------------------


class SlotStatus(Enum):
    EMPTY = "empty"  # all zero: never written
    VALID = "valid"  # well-formed, signature verified
    UNKNOWN_KEY = "unknown_key"  # well-formed, by a terminal whose key we lack
    INVALID = "invalid"  # malformed, torn or forged


@dataclass(frozen=True)
class Slot:
    status: SlotStatus
    purse: Purse | None = None


def _purse_message(purse: Purse, uid: bytes, card_number: str) -> bytes:
    header = _PURSE_HEADER.pack(
        PURSE_VERSION, purse.counter, purse.balance_cents, purse.terminal_id
    )
    return PURSE_DOMAIN + uid + card_number.encode("ascii") + b"\n" + header


def encode_slot(purse: Purse, uid: bytes, card_number: str, key: Ed25519PrivateKey) -> bytes:
    """The 80 bytes of a purse slot, signed by the writing terminal's key."""
    header = _PURSE_HEADER.pack(
        PURSE_VERSION, purse.counter, purse.balance_cents, purse.terminal_id
    )
    return header + keys.sign(key, _purse_message(purse, uid, card_number))


def decode_slot(
    raw: bytes, uid: bytes, card_number: str, terminal_keys: dict[int, Ed25519PublicKey]
) -> Slot:
    if len(raw) != SLOT_BYTES:
        raise ValueError("a purse slot has 80 bytes")
    if not any(raw):
        return Slot(SlotStatus.EMPTY)
    version, counter, balance_cents, terminal_id = _PURSE_HEADER.unpack(raw[: _PURSE_HEADER.size])
    try:
        purse = Purse(balance_cents, counter, terminal_id)
    except ValueError:
        return Slot(SlotStatus.INVALID)
    if version != PURSE_VERSION or raw[13:16] != b"\0\0\0":
        return Slot(SlotStatus.INVALID)
    public = terminal_keys.get(terminal_id)
    if public is None:
        return Slot(SlotStatus.UNKNOWN_KEY, purse)
    signature = bytes(raw[_PURSE_HEADER.size :])
    if not keys.verify(public, _purse_message(purse, uid, card_number), signature):
        return Slot(SlotStatus.INVALID)
    return Slot(SlotStatus.VALID, purse)


@dataclass(frozen=True)
class PurseChoice:
    """What the two slots say together."""

    purse: Purse | None  # newest verified purse
    counter: int  # highest counter among well-formed slots
    write_slot: int  # the slot the next write goes to (never the newest)
    trusted: bool  # False: purse data present that cannot be verified


def choose(slots: tuple[Slot, Slot]) -> PurseChoice:
    """The slot with the higher verified counter wins; the next write goes to the other.

    A torn or garbled slot next to a good (or empty) one is the normal trace of
    a card pulled away mid-write and is ignored. Untrusted are: a slot signed by
    a terminal we do not know yet that is newer than every verified one (the
    older verified purse may be a rollback), and a card on which neither slot
    is good nor empty (damaged or tampered with).
    """
    formed = [(s.purse.counter, i) for i, s in enumerate(slots) if s.purse is not None]
    valid = [
        (s.purse.counter, i)
        for i, s in enumerate(slots)
        if s.status is SlotStatus.VALID and s.purse is not None
    ]
    newest_formed = max(formed, default=(0, 1))
    newest_valid = max(valid, default=None)
    unknown_newer = any(
        s.status is SlotStatus.UNKNOWN_KEY
        and s.purse is not None
        and (newest_valid is None or s.purse.counter >= newest_valid[0])
        for s in slots
    )
    nothing_good = all(s.status in (SlotStatus.INVALID, SlotStatus.UNKNOWN_KEY) for s in slots)
    return PurseChoice(
        purse=slots[newest_valid[1]].purse if newest_valid else None,
        counter=newest_formed[0],
        write_slot=1 - newest_formed[1],
        trusted=not (unknown_newer or nothing_good),
    )


# --- issuance ----------------------------------------------------------------


def card_password(write_secret: bytes, uid: bytes) -> tuple[bytes, bytes]:
    """PWD (4 bytes) and PACK (2 bytes) of a card, derived from the site secret and UID."""
    if len(write_secret) < cardsecret.MIN_BYTES:
        raise ValueError(cardsecret.INVALID)
    digest = hmac.new(write_secret, PASSWORD_DOMAIN + uid, hashlib.sha256).digest()
    return digest[0:4], digest[4:6]


def issued_user_pages(url: str, record: IssuerRecord) -> dict[int, bytes]:
    """Pages 4..103 of a freshly issued card: NDEF area and two empty purse slots."""
    area = ndef_area(url, record) + bytes(2 * SLOT_BYTES)
    return {
        NDEF_FIRST_PAGE + i: area[i * PAGE_SIZE : (i + 1) * PAGE_SIZE]
        for i in range(len(area) // PAGE_SIZE)
    }


def protected_config(
    chip: Chip, cfg: bytes, write_secret: bytes, uid: bytes
) -> list[tuple[int, bytes]]:
    """(page, data) writes that set the password and protect writes from AUTH0.

    `cfg` is the card's current CFG0..CFG1 (8 bytes). PWD and PACK come first:
    they take effect at once, AUTH0 only at the next power-up, so a write torn
    half way never leaves a card protected by a password nobody knows.
    Reads stay open (PROT = 0): every phone can read the URL.
    """
    password, pack = card_password(write_secret, uid)
    cfg0 = bytes(cfg[0:3]) + bytes([AUTH0])
    cfg1 = bytes([cfg[4] & 0x7F]) + bytes(cfg[5:8])
    return [
        (chip.pwd_page, password),
        (chip.pack_page, pack + b"\0\0"),
        (chip.cfg1_page, cfg1),
        (chip.cfg0_page, cfg0),
    ]


def cc_page(chip: Chip) -> bytes:
    """Capability container: NDEF 1.0, the chip's data area size, read-only for phones."""
    return bytes([0xE1, 0x10, chip.cc_size, CC_READ_ONLY])
