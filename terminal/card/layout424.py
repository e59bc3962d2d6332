"""The byte layout of a Hattingen Card on an NTAG 424 DNA (docs/card-format.md has the why).

File 02, NDEF (256 bytes; plain, read free, write key 1, read-write and change key 0, SUN):

    offset   0   2  NLEN
             2 ≤222 NDEF message: URI record (the SUN link), issuer record (as on NTAG215)
           224  16  purse slot 0, its first 16 bytes (the head)
           240  16  purse slot 1, its head

File 03, proprietary (128 bytes; encrypted, read and write key 1, read-write and change 0):

    offset   0  64  purse slot 0, the terminal's Ed25519 signature
            64  64  purse slot 1, its signature

A slot is head ‖ signature: exactly `layout.encode_slot`'s 80 bytes, the same bytes and the
same signature as on an NTAG215. The SUN link is `<base>/k?p=<PICCData>&m=<SDMMAC>`; issuance
writes it with zeros, the chip mirrors a fresh one into every read.
"""

from __future__ import annotations

from dataclasses import dataclass

from hcard.ntag424 import (
    ACCESS_FREE,
    AccessRights,
    CommMode,
    FileSettings,
    KeyNo,
    SdmOption,
    SdmSettings,
)
from hcard.terminal.card import layout

NDEF_FILE_BYTES = 256
PROPRIETARY_FILE_BYTES = 128
NLEN_BYTES = 2
MESSAGE_AREA_BYTES = 224  # NLEN and message; the slot heads follow
MESSAGE_MAX_BYTES = MESSAGE_AREA_BYTES - NLEN_BYTES
HEAD_BYTES = 16  # the part of a slot before its signature
SLOT_HEAD_OFFSETS = (MESSAGE_AREA_BYTES, MESSAGE_AREA_BYTES + HEAD_BYTES)  # in file 02
SLOT_SIGNATURE_OFFSETS = (0, layout.SIGNATURE_BYTES)  # in file 03
assert HEAD_BYTES + layout.SIGNATURE_BYTES == layout.SLOT_BYTES
assert SLOT_HEAD_OFFSETS[1] + HEAD_BYTES == NDEF_FILE_BYTES

KEY_VERSION = 1  # the version issuance gives all five keys (a new key generation: 2)
SUN_PATH = "/k"
PICC_DIGITS = 32  # PICCData mirrored as hex
MAC_DIGITS = 16  # SDMMAC mirrored as hex
_SUN_QUERY = "?p=" + "0" * PICC_DIGITS + "&m=" + "0" * MAC_DIGITS

# File 01, the capability container: the NDEF file's write access byte in its NDEF file
# control TLV (04 06 E104 0100 <read> <write>). FF: phones show the card as read-only.
CC_NDEF_WRITE_ACCESS_OFFSET = 14
CC_READ_ONLY = b"\xff"

PURSE_FILE_SETTINGS = FileSettings(
    CommMode.FULL,
    AccessRights(
        read=KeyNo.PURSE,
        write=KeyNo.PURSE,
        read_write=KeyNo.APP_MASTER,  # issuance clears the file in its key-0 session
        change=KeyNo.APP_MASTER,
    ),
    PROPRIETARY_FILE_BYTES,
)


def sun_link_template(base_url: str) -> str:
    """The link issuance writes: `<base>/k?p=<32 zeros>&m=<16 zeros>`, base `https://<host>`."""
    base = base_url.rstrip("/")
    if (
        not base.startswith("https://")
        or len(base) == len("https://")
        or "?" in base
        or "#" in base
    ):
        raise ValueError("the SUN base URL must be https://<host>, without query")
    return base + SUN_PATH + _SUN_QUERY


@dataclass(frozen=True)
class NdefFile:
    """What issuance writes into file 02 and where the chip mirrors the SUN values."""

    content: bytes  # all 256 bytes: NLEN, message, zero padding, empty slot heads
    picc_offset: int
    mac_offset: int

    def settings(self) -> FileSettings:
        """File 02's settings: plain, read free, write key 1; SUN with keys 2 (PICCData), 3
        (SDMMAC over nothing: UID and counter are in its key) and 1 (GetFileCounters)."""
        return FileSettings(
            CommMode.PLAIN,
            AccessRights(
                read=ACCESS_FREE,
                write=KeyNo.PURSE,
                read_write=KeyNo.APP_MASTER,
                change=KeyNo.APP_MASTER,
            ),
            NDEF_FILE_BYTES,
            SdmSettings(
                SdmOption.UID | SdmOption.READ_COUNTER | SdmOption.ASCII,
                meta_read=KeyNo.SUN_META_READ,
                file_read=KeyNo.SUN_FILE_READ,
                counter_read=KeyNo.PURSE,
                picc_data_offset=self.picc_offset,
                mac_input_offset=self.mac_offset,
                mac_offset=self.mac_offset,
            ),
        )


def ndef_file(sun_base_url: str, record: layout.IssuerRecord) -> NdefFile:
    """File 02 of a freshly issued card: the SUN link template and the issuer record."""
    message = layout.ndef_message(sun_link_template(sun_base_url), record)
    if len(message) > MESSAGE_MAX_BYTES:
        raise ValueError(f"NDEF message of {len(message)} bytes does not fit the card")
    query = _SUN_QUERY.encode("ascii")
    at = message.find(query)
    if at < 0 or message.find(query, at + 1) >= 0:
        raise ValueError("the SUN link template is not in the message exactly once")
    picc_offset = NLEN_BYTES + at + len("?p=")
    mac_offset = picc_offset + PICC_DIGITS + len("&m=")
    area = len(message).to_bytes(NLEN_BYTES, "big") + message
    content = area + bytes(NDEF_FILE_BYTES - len(area))
    return NdefFile(content, picc_offset, mac_offset)


def parse_ndef_file(data: bytes) -> tuple[str | None, layout.IssuerRecord | None]:
    """URL and issuer record of file 02 (at least its first 224 bytes); LayoutError when
    NLEN does not fit or the message does not decode."""
    if len(data) < MESSAGE_AREA_BYTES:
        raise layout.LayoutError("NDEF file too short")
    size = int.from_bytes(data[:NLEN_BYTES], "big")
    if size > MESSAGE_MAX_BYTES:
        raise layout.LayoutError("NLEN runs past the NDEF message area")
    return layout.parse_ndef_message(bytes(data[NLEN_BYTES : NLEN_BYTES + size]))


def raw_slots(ndef: bytes, proprietary: bytes) -> list[bytes]:
    """The two 80-byte slots: each head from file 02, its signature from file 03."""
    return [
        bytes(ndef[head : head + HEAD_BYTES])
        + bytes(proprietary[signature : signature + layout.SIGNATURE_BYTES])
        for head, signature in zip(SLOT_HEAD_OFFSETS, SLOT_SIGNATURE_OFFSETS, strict=True)
    ]
