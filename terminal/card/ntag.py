"""Facts about the NXP NTAG21x chips, from the NTAG213/215/216 datasheet.

One place for page numbers, version bytes and factory contents, shared by the
card format (what goes where), the reader (which chip is this?) and the card
emulator (what a blank chip looks like), so the three can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import xor

PAGE_SIZE = 4
UID_LENGTH = 7
FIRST_USER_PAGE = 4
CC_PAGE = 3
# Commands (ISO/IEC 14443-3 and the NTAG21x command set).
CMD_GET_VERSION = 0x60
CMD_READ = 0x30
CMD_FAST_READ = 0x3A
CMD_WRITE = 0xA2
CMD_READ_SIG = 0x3C
CMD_READ_CNT = 0x39
CMD_PWD_AUTH = 0x1B
ACK = 0x0A
NAK = 0x00
# Bits of the ACCESS byte (first byte of CFG1).
ACCESS_PROT = 0x80  # password needed for reads too, not only writes
ACCESS_NFC_CNT_EN = 0x10
AUTH0_NONE = 0xFF  # no page protected


@dataclass(frozen=True)
class Chip:
    """One member of the family: its GET_VERSION answer and memory map."""

    name: str
    version: bytes  # the 8 bytes GET_VERSION answers
    pages: int  # total pages, 0 .. pages-1
    cc_size: int  # byte 2 of the capability container: NDEF data area / 8
    dynamic_locks: bool = True  # NTAG21x have a dynamic lock page before CFG0

    @property
    def last_page(self) -> int:
        return self.pages - 1

    @property
    def dynamic_lock_page(self) -> int:
        return self.pages - 5

    @property
    def cfg0_page(self) -> int:
        """MIRROR, RFUI, MIRROR_PAGE, AUTH0."""
        return self.pages - 4

    @property
    def cfg1_page(self) -> int:
        """ACCESS, RFUI, RFUI, RFUI."""
        return self.pages - 3

    @property
    def pwd_page(self) -> int:
        return self.pages - 2

    @property
    def pack_page(self) -> int:
        return self.pages - 1

    @property
    def last_user_page(self) -> int:
        return self.dynamic_lock_page - 1 if self.dynamic_locks else self.cfg0_page - 1


NTAG213 = Chip("NTAG213", bytes.fromhex("0004040201000f03"), 45, 0x12)
NTAG215 = Chip("NTAG215", bytes.fromhex("0004040201001103"), 135, 0x3E)
NTAG216 = Chip("NTAG216", bytes.fromhex("0004040201001303"), 231, 0x6D)
# MIFARE Ultralight EV1 (MF0UL11): same command set and config pages, not an NTAG.
# Not a card we use; the emulator offers it so "unknown tag type" is tested for real.
ULTRALIGHT_EV1 = Chip("MF0UL11", bytes.fromhex("0004030101000b03"), 20, 0x06, False)
CHIPS = {chip.name: chip for chip in (NTAG213, NTAG215, NTAG216, ULTRALIGHT_EV1)}
NTAGS = (NTAG213, NTAG215, NTAG216)
BY_VERSION = {chip.version: chip for chip in NTAGS}


def bcc(data: bytes) -> int:
    """ISO/IEC 14443-3 block check character: XOR of the bytes."""
    return reduce(xor, data, 0)


def uid_pages(uid: bytes) -> bytes:
    """Pages 0-1 and the first two bytes of page 2 as the factory writes them.

    Page 0: UID0-2 and BCC0 (over the cascade tag 0x88 and UID0-2); page 1:
    UID3-6; page 2 starts with BCC1 (over UID3-6) and the internal byte 0x48.
    """
    if len(uid) != UID_LENGTH:
        raise ValueError("an NTAG UID has 7 bytes")
    return uid[0:3] + bytes([bcc(b"\x88" + uid[0:3])]) + uid[3:7] + bytes([bcc(uid[3:7]), 0x48])


def uid_from_pages(memory: bytes | bytearray) -> bytes:
    return bytes(memory[0:3]) + bytes(memory[4:8])


def blank_memory(chip: Chip, uid: bytes) -> bytearray:
    """The memory of a new chip: UID, empty NDEF message, factory configuration."""
    memory = bytearray(chip.pages * PAGE_SIZE)
    memory[0:10] = uid_pages(uid)
    memory[CC_PAGE * 4 : CC_PAGE * 4 + 4] = bytes([0xE1, 0x10, chip.cc_size, 0x00])
    memory[FIRST_USER_PAGE * 4 : FIRST_USER_PAGE * 4 + 3] = b"\x03\x00\xfe"
    if chip.dynamic_locks:
        memory[chip.dynamic_lock_page * 4 + 3] = 0xBD
    memory[chip.cfg0_page * 4 : chip.cfg0_page * 4 + 4] = bytes([0x04, 0x00, 0x00, AUTH0_NONE])
    memory[chip.pwd_page * 4 : chip.pwd_page * 4 + 4] = b"\xff\xff\xff\xff"
    return memory
