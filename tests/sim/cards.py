"""In-process NTAG215 cards and readers: the chip model (`EmulatedTag`) behind the real
`TagSession`, without nfcpy, sockets or the emulator process.

`SimTagIO` turns the `TagIO` calls into the chip's own frames (FAST_READ, WRITE, PWD_AUTH,
READ_SIG, GET_VERSION) and reads the answers as nfcpy's backend does (`NfcpyTagIO`): no
answer or a NAK where data was due is a `TagIOError`, the error a real lost card raises.
A card torn away (`SimCard.tear_after`) leaves after that many more commands; with
`commit` the last command still takes effect on the chip but its answer is lost, as when
the card leaves between the chip's write and its ACK. Every command first passes the
till's crash point (`on_command`), so a till can crash between any two commands.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from hcard.terminal.card.emulated_tag import ATQA, HLTA, SAK_TYPE2, WUPA, EmulatedTag
from hcard.terminal.card.image import CardImage
from hcard.terminal.card.model import TagIOError
from hcard.terminal.card.ntag import (
    ACK,
    CMD_FAST_READ,
    CMD_GET_VERSION,
    CMD_PWD_AUTH,
    CMD_READ_SIG,
    CMD_WRITE,
    PAGE_SIZE,
)
from hcard.terminal.card.originality import SIGNATURE_LENGTH
from hcard.terminal.card.session import TagSession

VERSION_LENGTH = 8


@dataclass
class Tear:
    """The card leaves after `after` more commands; with `commit` the last one still lands."""

    after: int
    commit: bool


class SimCard:
    """One physical card: its memory (the image, changed in place by writes) and whether a
    tear is armed for the next tap."""

    def __init__(self, number: str, image: CardImage) -> None:
        self.number = number
        self.image = image
        self.tear: Tear | None = None
        self.commands = 0  # every command the card was sent (for the event log)

    @property
    def uid(self) -> bytes:
        return self.image.uid


class SimTagIO:
    """`TagIO` over the chip model of one card, for one tap."""

    def __init__(self, card: SimCard, on_command: Callable[[str], None]) -> None:
        self._card = card
        self._on_command = on_command
        self._tag = EmulatedTag(card.image)
        self._gone = False
        self._activate()

    def _activate(self) -> None:
        tag = self._tag
        if tag.handle(WUPA) != ATQA:
            raise TagIOError("no ATQA")
        cl1 = tag.handle(bytes([0x93, 0x20]))
        assert cl1 is not None
        tag.handle(bytes([0x93, 0x70]) + cl1)
        cl2 = tag.handle(bytes([0x95, 0x20]))
        assert cl2 is not None
        if tag.handle(bytes([0x95, 0x70]) + cl2) != SAK_TYPE2:
            raise TagIOError("activation failed")

    @property
    def uid(self) -> bytes:
        return self._card.uid

    def _send(self, frame: bytes) -> bytes | None:
        """One command to the chip; TagIOError once the card has left."""
        self._on_command(f"card {frame[:1].hex()}")
        if self._gone:
            raise TagIOError("card left the field")
        card = self._card
        card.commands += 1
        tear = card.tear
        if tear is not None:
            if tear.after <= 0:
                self._gone = True
                card.tear = None
                if tear.commit:
                    self._tag.handle(frame)
                raise TagIOError(f"card torn away at {frame[:1].hex()}")
            tear.after -= 1
        return self._tag.handle(frame)

    def _transceive(self, frame: bytes, answer_length: int) -> bytes:
        answer = self._send(frame)
        if answer is None:
            raise TagIOError(f"no answer to {frame[:1].hex()}")
        if len(answer) != answer_length:
            raise TagIOError(f"answer to {frame[:1].hex()} has {len(answer)} bytes (NAK?)")
        return answer

    def get_version(self) -> bytes | None:
        try:
            return self._transceive(bytes([CMD_GET_VERSION]), VERSION_LENGTH)
        except TagIOError:
            if self._gone:
                raise
            return None

    def read_pages(self, first: int, last: int) -> bytes:
        return self._transceive(bytes([CMD_FAST_READ, first, last]), (last - first + 1) * PAGE_SIZE)

    def write_page(self, page: int, data: bytes) -> None:
        answer = self._send(bytes([CMD_WRITE, page]) + data)
        if answer != bytes([ACK]):
            raise TagIOError(f"write of page {page} refused")

    def read_signature(self) -> bytes:
        return self._transceive(bytes([CMD_READ_SIG, 0x00]), SIGNATURE_LENGTH)

    def authenticate(self, password: bytes, pack: bytes) -> bool:
        answer = self._send(bytes([CMD_PWD_AUTH]) + password)
        if answer is None:
            raise TagIOError("no answer to PWD_AUTH")
        return answer == pack

    def is_present(self) -> bool:
        return not self._gone

    def halt(self) -> None:
        if not self._gone:
            self._tag.handle(HLTA)


class SimReader:
    """The `Reader` of one till: the card the simulation laid on it, if any."""

    def __init__(self, on_command: Callable[[str], None]) -> None:
        self.card: SimCard | None = None
        self._on_command = on_command

    @property
    def connected(self) -> bool:
        return True

    @property
    def path(self) -> str:
        return "sim:"

    def wait_for_card(
        self, timeout_s: float, cancel: threading.Event | None = None
    ) -> TagSession | None:
        if self.card is None:
            return None
        return TagSession(SimTagIO(self.card, self._on_command))

    def close(self) -> None:
        self.card = None
