"""The card side of vsmartcard's virtual reader (vpcd): our emulated cards behind real PC/SC.

`pcscd` loads vpcd (Debian `vsmartcard-vpcd`, /etc/reader.conf.d/vpcd), which offers the
readers "Virtual PCD 00 00", "Virtual PCD 00 01", … and listens for a card process on TCP
port 35963 (0x8C7B) + slot. A card on the reader is a TCP connection to that port; closing it
takes the card off (pcscd notices at its next presence poll, about every 0.4 s; a reader's
next command fails, a new connect raises NoCardException).

Wire protocol (both ways): a 2-byte big-endian length, then the payload. A 1-byte payload
from vpcd is a control message: 0 power off, 1 power on, 2 reset, 4 "send the ATR" (answered
with the ATR; vpcd asks it at every presence poll and after every power on or reset; the
others get no answer). A longer payload is a command APDU, always answered with one response
APDU (vpcd waits for it without a timeout).

Power on and reset are a new tap: the chip model's `power_up`. Only APDUs are commands (the
emulator counts them for tearing); control messages are not.

ATRs (PC/SC part 3, §3.1.3.2.3):
- NTAG213/215/216: `3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 03 00 00 00 00 68`, a storage
  card: RID A0 00 00 03 06, standard 03 (ISO 14443 A part 3), card name 00 03.
- NTAG 424 DNA: `3B 81 80 01 80 80`, an ISO 14443-4 type A card whose ATS has the one
  historical byte 80.

Commands of the reader itself (CLA FF), answered by this module as a reader would:
- `FF CA 00 00 Le` (get UID) → UID ‖ 90 00 on both chips (Le 00 or ≥ 7; a smaller Le gets
  `6C 07`). `FF CA` with another P1/P2 → `6A 81`. Another INS under CLA FF on the NTAG
  424 DNA → `6D 00`; every APDU with another CLA goes to the chip unchanged
  (`Ntag424.handle`) and its answer comes back unchanged (short APDUs: up to 256 bytes and
  the status; no GET RESPONSE, no extended length).

On an NTAG21x (PC/SC part 3 storage card commands, mapped onto the NTAG's own commands of
`EmulatedTag`; the tag is activated — WUPA, both cascade levels — at power on and reset):
- Read binary `FF B0 P1 P2 Le`: pages from P1‖P2 (P1 must be 00), Le bytes (00 = 256), read
  with READ (`30 pp`, 16 bytes, rolling over after the last page) from the first page on, as
  many as Le needs; → data ‖ 90 00. The tag refusing (NAK) or not answering → `63 00`.
  P1 ≠ 00 → `6B 00`.
- Update binary `FF D6 P1 P2 Lc data`: Lc a multiple of 4, one WRITE (`A2 pp d0..d3`) per
  page from P1‖P2 on; every page ACKed → `90 00`; a NAK or no answer → `63 00` (the pages
  before it are written). Lc not a multiple of 4 → `67 00`; P1 ≠ 00 → `6B 00`.
- Transparent exchange `FF C2 00 01 Lc <data objects>` (PC/SC part 3 supplement): the data
  objects are BER-TLV, handled in order and counted from 1; `95` (transceive) carries one raw
  NTAG frame without CRC (e.g. `95 02 3C 00` READ_SIG, `95 05 1B <pwd>` PWD_AUTH,
  `95 03 3A ss ee` FAST_READ, `95 01 60` GET_VERSION). `5F46` (timer), `90` (flags),
  `91`/`92` (bit framing) are accepted and ignored; any other object → error `6A 81`.
  The answer is data objects then `90 00`:
    tag answered:     `C0 03 00 90 00` `97 <len> <raw answer>`          `90 00`
    tag NAKed:        `C0 03 00 90 00` `97 01 <NAK: 00, 01, 04 or 05>`  `90 00`
                      (a NAK is a 1-byte answer; an ACK of WRITE is `97 01 0A`)
    no answer:        `C0 03 <n> 64 01`                                  `90 00`
    object not known: `C0 03 <n> 6A 81`                                  `90 00`
    bad TLV:          `C0 03 00 67 00`                                   `90 00`
  where <n> is the number of the failing data object (01 for a lone `95`). <len> is BER:
  one byte below 128, `81 xx` below 256, `82 xx xx` above (FAST_READ of many pages).
  After a NAK the NTAG is back in IDLE (its datasheet) and answers nothing until a new tap,
  as behind a real reader: a reader that wants to go on after a NAK re-activates (power off
  and on, `SCardReconnect` with reset), or `FF C2 00 00` below.
- Manage session `FF C2 00 00 Lc <data objects>`: `81 00` start and `82 00` end the
  transparent session (accepted, nothing to do), `83 00` RF off (the tag loses power),
  `84 00` RF on (the tag powers up and is activated again), `5F46` ignored;
  → `C0 03 00 90 00 90 00`. `FF C2 00 02` (switch protocol) and other P2 → `6A 81`.
- Any APDU with another CLA → `6E 00`.

The module is the emulator's (`hcard.terminal.card.emulator --vpcd`); `VpcdConnection` is the
socket, `card_for` wraps an emulated chip in the matching reader adapter.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator
from enum import IntEnum
from typing import Protocol

from hcard.terminal.card.emulated_tag import EmulatedTag
from hcard.terminal.card.emulated_type4 import EmulatedType4

VPCD_PORT = 0x8C7B  # 35963: slot 0
READER_NAME = "Virtual PCD 00 {slot:02d}"  # as pcscd names vpcd's slots
HEADER = struct.Struct(">H")
MAX_MESSAGE_BYTES = 0xFFFF

ATR_NTAG21X = bytes.fromhex("3B8F8001804F0CA0000003060300030000000068")
ATR_NTAG424 = bytes.fromhex("3B8180018080")

CLA_READER = 0xFF
INS_GET_DATA, INS_READ_BINARY, INS_UPDATE_BINARY, INS_ENVELOPE = 0xCA, 0xB0, 0xD6, 0xC2


def reader_answers(apdu: bytes) -> bool:
    """Whether a real reader answers `apdu` itself, without a word to the card: GET DATA
    (the UID, known since the activation). The emulator neither counts nor tears it."""
    return len(apdu) >= 2 and apdu[0] == CLA_READER and apdu[1] == INS_GET_DATA


P2_MANAGE_SESSION, P2_TRANSPARENT_EXCHANGE = 0x00, 0x01
SW_OK = b"\x90\x00"
SW_FAILED = b"\x63\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_WRONG_P1_P2 = b"\x6b\x00"
SW_NOT_SUPPORTED = b"\x6a\x81"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CLA_NOT_SUPPORTED = b"\x6e\x00"
SW_NO_ANSWER = b"\x64\x01"

TAG_ERROR_STATUS = 0xC0
TAG_TRANSCEIVE = 0x95
TAG_ICC_RESPONSE = 0x97
TAG_TIMER = 0x5F46
IGNORED_EXCHANGE_TAGS = frozenset({TAG_TIMER, 0x90, 0x91, 0x92})
TAG_START_SESSION, TAG_END_SESSION, TAG_RF_OFF, TAG_RF_ON = 0x81, 0x82, 0x83, 0x84

NTAG_READ, NTAG_WRITE, NTAG_ACK = 0x30, 0xA2, 0x0A
NTAG_READ_BYTES = 16
PAGE_BYTES = 4


class Control(IntEnum):
    """vpcd's 1-byte control messages."""

    POWER_OFF = 0
    POWER_ON = 1
    RESET = 2
    ATR = 4


def reader_name(slot: int) -> str:
    return READER_NAME.format(slot=slot)


class VpcdCard(Protocol):
    """An emulated chip as seen through a PC/SC reader."""

    @property
    def atr(self) -> bytes: ...

    def power_up(self) -> None: ...

    def power_off(self) -> None: ...

    def transmit(self, apdu: bytes) -> bytes: ...


def _get_uid(uid: bytes, apdu: bytes) -> bytes:
    if apdu[2:4] != b"\x00\x00":
        return SW_NOT_SUPPORTED
    le = apdu[4] if len(apdu) == 5 else 0
    if 0 < le < len(uid):
        return bytes([0x6C, len(uid)])
    return uid + SW_OK


def control_answer(card: VpcdCard, code: int) -> bytes | None:
    """What a control message does to the card; the ATR for `Control.ATR`, else None."""
    if code == Control.ATR:
        return card.atr
    if code in (Control.POWER_ON, Control.RESET):
        card.power_up()
    elif code == Control.POWER_OFF:
        card.power_off()
    return None


# --- NTAG 424 DNA: ISO 14443-4, APDUs to the chip ------------------------------------------


class IsoDepCard:
    """An NTAG 424 DNA behind a PC/SC reader: APDUs go to the chip unchanged."""

    atr = ATR_NTAG424

    def __init__(self, tag: EmulatedType4) -> None:
        self.tag = tag

    def power_up(self) -> None:
        self.tag.power_up()

    def power_off(self) -> None:
        self.tag.power_up()  # the next power on starts from scratch; nothing answers between

    def transmit(self, apdu: bytes) -> bytes:
        if len(apdu) >= 4 and apdu[0] == CLA_READER:
            if apdu[1] == INS_GET_DATA:
                return _get_uid(self.tag.uid, apdu)
            return SW_INS_NOT_SUPPORTED
        return self.tag.apdu(apdu)


# --- NTAG21x: PC/SC part 3 storage card ----------------------------------------------------


def _ber_length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    if size <= 0xFF:
        return bytes([0x81, size])
    return bytes([0x82]) + size.to_bytes(2, "big")


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _ber_length(len(value)) + value


def _error_status(index: int, status: bytes) -> bytes:
    return _tlv(TAG_ERROR_STATUS, bytes([index]) + status)


def parse_tlv(data: bytes) -> Iterator[tuple[int, bytes]]:
    """BER-TLV data objects (tag, value) in order; ValueError when malformed."""
    at = 0
    while at < len(data):
        tag = data[at]
        at += 1
        if tag & 0x1F == 0x1F:  # a tag of more bytes: 5F46
            while True:
                if at >= len(data):
                    raise ValueError("TLV tag cut short")
                tag = tag << 8 | data[at]
                at += 1
                if not data[at - 1] & 0x80:
                    break
        if at >= len(data):
            raise ValueError("TLV length missing")
        size = data[at]
        at += 1
        if size & 0x80:
            count = size & 0x7F
            if count not in (1, 2) or at + count > len(data):
                raise ValueError("TLV length malformed")
            size = int.from_bytes(data[at : at + count], "big")
            at += count
        if at + size > len(data):
            raise ValueError("TLV value cut short")
        yield tag, data[at : at + size]
        at += size


class StorageCard:
    """An NTAG21x behind a PC/SC reader: part 3 storage card commands onto `EmulatedTag`."""

    atr = ATR_NTAG21X

    def __init__(self, tag: EmulatedTag) -> None:
        self.tag = tag
        self.power_up()

    def power_up(self) -> None:
        """Field on, then what a reader does before it reports a card: activation."""
        tag = self.tag
        tag.power_up()
        tag.handle(b"\x52")  # WUPA
        for level in (0x93, 0x95):
            cascade = tag.handle(bytes([level, 0x20]))
            if cascade is None:
                return
            tag.handle(bytes([level, 0x70]) + cascade)

    def power_off(self) -> None:
        self.tag.power_up()  # memory stays; AUTH0/PROT latch again; IDLE until activated

    def transmit(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return SW_WRONG_LENGTH
        if apdu[0] != CLA_READER:
            return SW_CLA_NOT_SUPPORTED
        ins = apdu[1]
        if ins == INS_GET_DATA:
            return _get_uid(self.tag.image.uid, apdu)
        if ins == INS_READ_BINARY:
            return self._read_binary(apdu)
        if ins == INS_UPDATE_BINARY:
            return self._update_binary(apdu)
        if ins == INS_ENVELOPE:
            return self._envelope(apdu)
        return SW_INS_NOT_SUPPORTED

    def _read_binary(self, apdu: bytes) -> bytes:
        if len(apdu) != 5:
            return SW_WRONG_LENGTH
        if apdu[2] != 0:
            return SW_WRONG_P1_P2
        page, length = apdu[3], apdu[4] or 256
        data = bytearray()
        while len(data) < length:
            answer = self.tag.handle(bytes([NTAG_READ, page]))
            if answer is None or len(answer) != NTAG_READ_BYTES:
                return SW_FAILED
            data += answer
            page = (page + NTAG_READ_BYTES // PAGE_BYTES) & 0xFF
        return bytes(data[:length]) + SW_OK

    def _update_binary(self, apdu: bytes) -> bytes:
        if len(apdu) < 5 or apdu[4] == 0 or len(apdu) != 5 + apdu[4] or apdu[4] % PAGE_BYTES:
            return SW_WRONG_LENGTH
        if apdu[2] != 0:
            return SW_WRONG_P1_P2
        data = apdu[5:]
        for index in range(0, len(data), PAGE_BYTES):
            page = apdu[3] + index // PAGE_BYTES
            if page > 0xFF:
                return SW_FAILED
            answer = self.tag.handle(bytes([NTAG_WRITE, page]) + data[index : index + PAGE_BYTES])
            if answer != bytes([NTAG_ACK]):
                return SW_FAILED
        return SW_OK

    def _envelope(self, apdu: bytes) -> bytes:
        if apdu[2] != 0 or apdu[3] not in (P2_MANAGE_SESSION, P2_TRANSPARENT_EXCHANGE):
            return SW_NOT_SUPPORTED
        size = apdu[4] if len(apdu) > 4 else 0
        if len(apdu) not in (5 + size, 6 + size):
            return SW_WRONG_LENGTH
        try:
            objects = list(parse_tlv(apdu[5 : 5 + size]))
        except ValueError:
            return _error_status(0, SW_WRONG_LENGTH) + SW_OK
        if apdu[3] == P2_MANAGE_SESSION:
            return self._manage_session(objects) + SW_OK
        return self._exchange(objects) + SW_OK

    def _manage_session(self, objects: list[tuple[int, bytes]]) -> bytes:
        for index, (tag, _value) in enumerate(objects, start=1):
            if tag == TAG_RF_OFF:
                self.power_off()
            elif tag == TAG_RF_ON:
                self.power_up()
            elif tag not in (TAG_START_SESSION, TAG_END_SESSION, TAG_TIMER):
                return _error_status(index, SW_NOT_SUPPORTED)
        return _error_status(0, SW_OK)

    def _exchange(self, objects: list[tuple[int, bytes]]) -> bytes:
        answers = b""
        for index, (tag, value) in enumerate(objects, start=1):
            if tag in IGNORED_EXCHANGE_TAGS:
                continue
            if tag != TAG_TRANSCEIVE:
                return _error_status(index, SW_NOT_SUPPORTED) + answers
            answer = self.tag.handle(value) if value else None
            if answer is None:
                return _error_status(index, SW_NO_ANSWER) + answers
            answers += _tlv(TAG_ICC_RESPONSE, answer)
        return _error_status(0, SW_OK) + answers


def card_for(tag: EmulatedTag | EmulatedType4) -> StorageCard | IsoDepCard:
    """The reader adapter for an emulated chip."""
    return IsoDepCard(tag) if isinstance(tag, EmulatedType4) else StorageCard(tag)


# --- the socket ------------------------------------------------------------------------------


class VpcdConnection:
    """One card on vpcd's reader: a TCP connection carrying length-prefixed messages."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    @classmethod
    def open(cls, host: str, port: int, timeout_s: float = 2.0) -> VpcdConnection:
        """Put a card on the reader; OSError when vpcd does not listen (pcscd not running)."""
        sock = socket.create_connection((host, port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        connection = cls(sock)
        connection._quick_ack()
        return connection

    def fileno(self) -> int:
        return self._sock.fileno()

    def _quick_ack(self) -> None:
        """ACK at once, not after Linux's delayed-ACK 40 ms: vpcd sends a message's length and
        its payload in two writes without TCP_NODELAY, so Nagle holds the payload back until
        the length is acknowledged. Linux drops the flag again by itself: set before every
        read (this takes an APDU from about 45 ms to 0.2 ms)."""
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def receive(self) -> list[bytes] | None:
        """The complete messages that arrived (call when readable); None: vpcd closed it."""
        try:
            data = self._sock.recv(65536)
        except OSError:
            return None
        self._quick_ack()
        if not data:
            return None
        self._buffer += data
        messages = []
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            if len(self._buffer) < HEADER.size + size:
                break
            messages.append(bytes(self._buffer[HEADER.size : HEADER.size + size]))
            del self._buffer[: HEADER.size + size]
        return messages

    def send(self, payload: bytes) -> None:
        if len(payload) > MAX_MESSAGE_BYTES:
            raise ValueError("a vpcd message has at most 65535 bytes")
        self._sock.sendall(HEADER.pack(len(payload)) + payload)

    def close(self) -> None:
        """Take the card off the reader."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
