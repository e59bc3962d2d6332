"""In-process cards and readers: the chip models behind the real card sessions, without
nfcpy, pcscd, sockets or the emulator process.

- NTAG215: `SimTagIO` turns the `TagIO` calls of the real `TagSession` into the chip's own
  frames (FAST_READ, WRITE, PWD_AUTH, READ_SIG, GET_VERSION) for `EmulatedTag`, and reads
  the answers as nfcpy's backend does (`NfcpyTagIO`): no answer or a NAK where data was
  due is a `TagIOError`, the error a real lost card raises.
- NTAG 424 DNA: `SimApdu` is the transceive of the real `Ntag424Session`, each APDU
  answered by the chip model (`Ntag424`); its random numbers come from the seed.

A card torn away (`SimCard.tear`) leaves after that many more commands; with `commit` the
last command still takes effect on the chip but its answer is lost, as when the card
leaves between the chip's write and its answer. Every command first passes the till's
crash point (`on_command`), so a till can crash between any two commands.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from random import Random

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
from hcard.terminal.card.ntag424_model import CardState, Ntag424
from hcard.terminal.card.ntag424_session import Ntag424Session
from hcard.terminal.card.originality import SIGNATURE_LENGTH
from hcard.terminal.card.session import TagSession

VERSION_LENGTH = 8


@dataclass
class Tear:
    """The card leaves after `after` more commands; with `commit` the last one still lands."""

    after: int
    commit: bool


class SimCard:
    """One physical card: its memory (an NTAG215's image or an NTAG 424 DNA's state,
    changed in place by writes) and whether a tear is armed for the next tap."""

    def __init__(self, number: str, image: CardImage | CardState, random_bytes: Random) -> None:
        self.number = number
        self.image = image
        self.tear: Tear | None = None
        self._random = random_bytes

    @property
    def uid(self) -> bytes:
        return self.image.uid

    def session(self, on_command: Callable[[str], None]) -> TagSession | Ntag424Session:
        """A new tap of this card: the session a reader gives for its type."""
        if isinstance(self.image, CardState):
            apdu = SimApdu(self, Ntag424(self.image, self._random.randbytes), on_command)
            return Ntag424Session(self.image.uid, apdu.transceive, apdu.is_present)
        return TagSession(SimTagIO(self, on_command))

    def command(self, send: Callable[[], bytes | None], what: str) -> bytes | None:
        """One command through the air: the answer, or TagIOError once the card has left
        (with a tear's `commit`, the command still reaches the chip first)."""
        tear = self.tear
        if tear is not None:
            if tear.after <= 0:
                self.tear = None
                if tear.commit:
                    send()
                raise TagIOError(f"card torn away at {what}")
            tear.after -= 1
        return send()


class SimApdu:
    """The transceive of one NTAG 424 DNA tap."""

    def __init__(self, card: SimCard, chip: Ntag424, on_command: Callable[[str], None]) -> None:
        self._card = card
        self._chip = chip
        self._on_command = on_command
        self._gone = False

    def transceive(self, apdu: bytes) -> bytes:
        what = f"apdu {apdu[1:2].hex()}"
        self._on_command(f"card {what}")
        if self._gone:
            raise TagIOError("card left the field")
        try:
            answer = self._card.command(lambda: self._chip.handle(apdu), what)
        except TagIOError:
            self._gone = True
            raise
        assert answer is not None
        return answer

    def is_present(self) -> bool:
        return not self._gone


class SimTagIO:
    """`TagIO` over the chip model of one card, for one tap."""

    def __init__(self, card: SimCard, on_command: Callable[[str], None]) -> None:
        assert isinstance(card.image, CardImage)
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
        what = f"frame {frame[:1].hex()}"
        self._on_command(f"card {what}")
        if self._gone:
            raise TagIOError("card left the field")
        try:
            return self._card.command(lambda: self._tag.handle(frame), what)
        except TagIOError:
            self._gone = True
            raise

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
    ) -> TagSession | Ntag424Session | None:
        if self.card is None:
            return None
        return self.card.session(self._on_command)

    def close(self) -> None:
        self.card = None
