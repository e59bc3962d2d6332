"""An NTAG21x as a state machine: one reader frame in, at most one answer out.

Follows NXP's NTAG213/215/216 datasheet where nfcpy can tell the difference:
ISO/IEC 14443-3 activation with a double-size (7-byte) UID, READ (16 bytes,
rolling over after the last page), FAST_READ, WRITE (lock and OTP bytes only
ever gain bits, static lock bits honoured), GET_VERSION, READ_SIG, READ_CNT,
PWD_AUTH, HLTA. AUTH0 and PROT are latched at power-up, as on the chip, so a
new protection applies from the next tap. Every refusal is a NAK after which
the tag is back in IDLE. Not emulated: dynamic lock bits, AUTHLIM, the mirror,
COMPATIBILITY_WRITE, READ_CNT's dependency on NFC_CNT_PWD_PROT.
"""

from __future__ import annotations

from enum import Enum

from hcard.terminal.card.image import CardImage
from hcard.terminal.card.ntag import (
    ACCESS_NFC_CNT_EN,
    ACCESS_PROT,
    ACK,
    CC_PAGE,
    CMD_FAST_READ,
    CMD_GET_VERSION,
    CMD_PWD_AUTH,
    CMD_READ,
    CMD_READ_CNT,
    CMD_READ_SIG,
    CMD_WRITE,
    NAK,
    PAGE_SIZE,
)

ATQA = bytes.fromhex("4400")  # double-size UID, bit frame anticollision
SAK_CASCADE = bytes([0x04])
SAK_TYPE2 = bytes([0x00])
REQA, WUPA = b"\x26", b"\x52"
HLTA = b"\x50\x00"


class State(Enum):
    IDLE = "idle"
    READY1 = "ready1"
    READY2 = "ready2"
    ACTIVE = "active"
    HALT = "halt"


class EmulatedTag:
    def __init__(self, image: CardImage) -> None:
        self.image = image
        self.dirty = False  # memory changed since the image was last saved
        self.state = State.IDLE
        self._uid = image.uid
        self._cl1 = b"\x88" + self._uid[0:3]
        self._cl1 += bytes([self._cl1[0] ^ self._cl1[1] ^ self._cl1[2] ^ self._cl1[3]])
        self._cl2 = self._uid[3:7]
        self._cl2 += bytes([self._cl2[0] ^ self._cl2[1] ^ self._cl2[2] ^ self._cl2[3]])
        self.power_up()

    # --- power -------------------------------------------------------------------

    def power_up(self) -> None:
        """Field on: IDLE, not authenticated, AUTH0/PROT/NFC_CNT_EN latched from memory."""
        chip = self.image.chip
        self.state = State.IDLE
        self.authenticated = False
        self._auth0 = self.image.page(chip.cfg0_page)[3]
        access = self.image.page(chip.cfg1_page)[0]
        self._prot = bool(access & ACCESS_PROT)
        self._count_reads = bool(access & ACCESS_NFC_CNT_EN)
        self._counted = False

    # --- frames ------------------------------------------------------------------

    def handle(self, frame: bytes) -> bytes | None:
        """The answer to one reader frame, or None for silence."""
        if frame == WUPA or (frame == REQA and self.state is not State.HALT):
            self.state = State.READY1
            self.authenticated = False
            return ATQA
        if self.state is State.READY1:
            return self._anticollision(frame, 0x93, self._cl1, SAK_CASCADE, State.READY2)
        if self.state is State.READY2:
            return self._anticollision(frame, 0x95, self._cl2, SAK_TYPE2, State.ACTIVE)
        if self.state is State.ACTIVE:
            return self._command(frame)
        return None  # IDLE or HALT: only REQA/WUPA wake the tag

    def _anticollision(
        self, frame: bytes, level: int, cascade: bytes, sak: bytes, next_state: State
    ) -> bytes | None:
        if frame == bytes([level, 0x20]):
            return cascade
        if frame == bytes([level, 0x70]) + cascade:
            self.state = next_state
            return sak
        self.state = State.IDLE
        return None

    def _nak(self) -> bytes:
        self.state = State.IDLE
        self.authenticated = False
        return bytes([NAK])

    def _command(self, frame: bytes) -> bytes | None:
        code, args = frame[0], frame[1:]
        if code == CMD_READ and len(args) == 1:
            return self._read(args[0])
        if code == CMD_FAST_READ and len(args) == 2:
            return self._fast_read(args[0], args[1])
        if code == CMD_WRITE and len(args) == 5:
            return self._write(args[0], args[1:5])
        if code == CMD_GET_VERSION and not args:
            return self.image.chip.version
        if code == CMD_READ_SIG and args == b"\x00":
            return self.image.signature
        if code == CMD_READ_CNT and args == b"\x02":
            return self.image.nfc_counter.to_bytes(3, "little")
        if code == CMD_PWD_AUTH and len(args) == 4:
            return self._pwd_auth(args)
        if frame == HLTA:
            self.state = State.HALT
            return None
        return self._nak()

    # --- memory --------------------------------------------------------------------

    def _read_protected(self, page: int) -> bool:
        return self._prot and not self.authenticated and page >= self._auth0

    def _page_as_read(self, page: int) -> bytes:
        chip = self.image.chip
        if page in (chip.pwd_page, chip.pack_page) or self._read_protected(page):
            return bytes(PAGE_SIZE)
        return self.image.page(page)

    def _count_read(self) -> None:
        if self._count_reads and not self._counted:
            self._counted = True
            self.image.nfc_counter = (self.image.nfc_counter + 1) % (1 << 24)
            self.dirty = True

    def _read(self, first: int) -> bytes:
        pages = self.image.chip.pages
        if first >= pages or self._read_protected(first):
            return self._nak()
        self._count_read()
        return b"".join(self._page_as_read((first + i) % pages) for i in range(4))

    def _fast_read(self, first: int, last: int) -> bytes:
        if not first <= last < self.image.chip.pages:
            return self._nak()
        if any(self._read_protected(page) for page in range(first, last + 1)):
            return self._nak()
        self._count_read()
        return b"".join(self._page_as_read(page) for page in range(first, last + 1))

    def _statically_locked(self, page: int) -> bool:
        lock0, lock1 = self.image.page(2)[2], self.image.page(2)[3]
        if page == CC_PAGE:
            return bool(lock0 & 0x08)
        if 4 <= page <= 7:
            return bool(lock0 & (0x10 << (page - 4)))
        if 8 <= page <= 15:
            return bool(lock1 & (1 << (page - 8)))
        return False

    def _write(self, page: int, data: bytes) -> bytes:
        chip = self.image.chip
        if not 2 <= page < chip.pages:
            return self._nak()
        if page >= self._auth0 and not self.authenticated:
            return self._nak()
        if self._statically_locked(page):
            return self._nak()
        old = self.image.page(page)
        if page == 2:  # BCC1 and the internal byte are read-only, lock bits only gain bits
            new = old[0:2] + bytes([old[2] | data[2], old[3] | data[3]])
        elif page == CC_PAGE:  # one-time programmable
            new = bytes(a | b for a, b in zip(old, data, strict=True))
        else:
            new = bytes(data)
        self.image.set_page(page, new)
        self.dirty = True
        return bytes([ACK])

    def _pwd_auth(self, password: bytes) -> bytes:
        chip = self.image.chip
        if password != self.image.page(chip.pwd_page):
            return self._nak()
        self.authenticated = True
        return self.image.page(chip.pack_page)[0:2]
