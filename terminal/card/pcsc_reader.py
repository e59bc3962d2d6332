"""The PC/SC backend: the CCID readers sold today (ACS ACR1252U, Identiv uTrust 3700 F,
HID OMNIKEY 5022/5427) through `pcscd`, chosen by the reader path `pcsc:` (the first
reader) or `pcsc:<part of the reader's name>` (e.g. `pcsc:ACR1252`, case ignored).

What the card is comes from its ATR, before a byte reaches it:
- a PC/SC part 3 storage card (RID A0 00 00 03 06 in the historical bytes), i.e. an
  NTAG21x: `TagSession` over `PcscTagIO`, which speaks the part 3 commands (get UID,
  read and update binary) and sends the NTAG commands that have no such form (READ_SIG,
  PWD_AUTH, GET_VERSION, FAST_READ) through the reader's transparent exchange (PC/SC
  part 3 supplement, `FF C2 00 01`; bytes as in `hcard.terminal.card.vpcd`);
- any other card (ISO 14443-4): `Ntag424Session`, whose APDUs go to the card unchanged.

pyscard's low-level `smartcard.scard` is used rather than its object layer: one context
per reader, `SCardGetStatusChange` with a short timeout (so a wait has a deadline and
sees `cancel` at least every `poll_interval_s`), and every failure arrives as a PC/SC
code we can name in the log. The call releases the GIL while it waits.

Same behaviour as the nfcpy backend (`nfcpy_reader`): `connected` is False while pcscd
is not running or no reader matches the path; later calls reopen with the shared backoff
(`backoff.Backoff`), and each fault is logged once per try in words (service not
running, no such reader, reader removed, card held by another program, card mute).

The reader owns the card handle: a session's `close()` leaves the card alone (neither
session type has a hook for it), the next `wait_for_card` (or `close()`) disconnects it.
A session must not be used after the next `wait_for_card`; its commands then fail as
`TagIOError` ("tap again"). Letting go resets the card (SCARD_RESET_CARD: the reader
switches the field off and on), so every tap starts from a fresh activation as with
nfcpy, which senses anew each time: an NTAG 424 DNA left on the reader counts the next
tap (its SDM read counter goes up once per activation, and an equal counter is refused
as a replay), an NTAG's PWD_AUTH ends with the tap. A card that stays on the reader is
found again at once; connecting sends no APDU, so a look at the reader sends none to an
NTAG (the 424's session asks its UID, one APDU).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from smartcard import scard

from hcard.terminal.card.backoff import Backoff
from hcard.terminal.card.model import CardSession, TagIOError
from hcard.terminal.card.ntag import (
    CMD_FAST_READ,
    CMD_GET_VERSION,
    CMD_PWD_AUTH,
    CMD_READ_SIG,
    PAGE_SIZE,
)
from hcard.terminal.card.ntag424_session import Ntag424Session
from hcard.terminal.card.originality import SIGNATURE_LENGTH
from hcard.terminal.card.session import TagSession

log = logging.getLogger(__name__)
T = TypeVar("T")

PATH_PREFIX = "pcsc:"
VERSION_LENGTH = 8
# 60 pages answer in 240 bytes: with the exchange's wrapping (C0 03 .. 97 81 F0 ..) the
# response APDU stays inside a short APDU's 256 bytes, like TagSession's READ_CHUNK_PAGES.
FAST_READ_MAX_PAGES = 60
# READ BINARY: the longest read tried first; readers that map it onto the NTAG's READ
# (ACR122U-like firmware) give 16 bytes, and we learn that once per reader.
READ_BINARY_MAX_BYTES = 240
READ_BINARY_SAFE_BYTES = 16

SW_OK = b"\x90\x00"
# The outer status words by which a reader says "I do not have that command".
_SW_UNSUPPORTED = frozenset({0x6800, 0x6A81, 0x6A86, 0x6D00, 0x6E00})
# The outer status words of a READ BINARY that asked for too much.
_SW_WRONG_LENGTH = frozenset({0x6700, 0x6B00, 0x6A86, 0x6282})

# PC/SC part 3 (storage card ATR): category 80, then the application identifier TLV
# 4F 0C A0 00 00 03 06 <standard> <card name 2> <RFU 4>.
PCSC_STORAGE_RID = bytes.fromhex("A000000306")

# Part 3 supplement, transparent exchange data objects.
_DO_TRANSCEIVE = 0x95
_DO_STATUS = 0xC0
_DO_RESPONSE = 0x97

# Result codes that mean the card left (or was never there), not that the reader broke.
_CARD_GONE = frozenset(
    {
        scard.SCARD_W_REMOVED_CARD,
        scard.SCARD_E_NO_SMARTCARD,
        scard.SCARD_W_RESET_CARD,
        scard.SCARD_W_UNPOWERED_CARD,
        scard.SCARD_W_UNRESPONSIVE_CARD,
        scard.SCARD_E_NOT_TRANSACTED,
        scard.SCARD_E_PROTO_MISMATCH,
    }
)
# pcsc-lite's SCardStatus state bits (pyscard does not name them; Windows counts instead).
_SCARD_ABSENT = 0x0002
_GONE_READER_STATES = scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE


def _error_text(code: int) -> str:
    """A PC/SC result code in words: pcsc-lite's own text and the code."""
    message = str(scard.SCardGetErrorMessage(code)).rstrip(".")
    return f"{message}, 0x{code & 0xFFFFFFFF:08X}"


def _pcscd_not_running(code: int) -> str:
    return f"PC/SC service pcscd is not running ({_error_text(code)})"


class _NotThereError(Exception):
    """The reader cannot be opened now (the message says why, for the log)."""

    def __init__(self, reason: str, context_broken: bool = False) -> None:
        super().__init__(reason)
        self.context_broken = context_broken


def _service_gone(code: int) -> bool:
    return code in (
        scard.SCARD_E_NO_SERVICE,
        scard.SCARD_E_SERVICE_STOPPED,
        scard.SCARD_F_COMM_ERROR,
    )


# --- the ATR ----------------------------------------------------------------


def historical_bytes(atr: bytes) -> bytes:
    """The historical bytes of an ATR (ISO 7816-3: T0's low nibble counts them,
    after the interface bytes that the Y indicators announce)."""
    if len(atr) < 2:
        return b""
    count = atr[1] & 0x0F
    indicators = atr[1] >> 4
    index = 2
    while True:
        # TA, TB, TC, TD: one byte each for the bits 1, 2, 4, 8 of the indicator
        index += bin(indicators & 0x7).count("1")
        if not indicators & 0x8 or index >= len(atr):
            break
        indicators = atr[index] >> 4
        index += 1
    return atr[index : index + count]


def is_storage_card(atr: bytes) -> bool:
    """True for the ATR a PC/SC reader makes up for a contactless storage card (part 3)."""
    history = historical_bytes(atr)
    return (
        len(history) >= 3 + len(PCSC_STORAGE_RID)
        and history[0] == 0x80
        and history[1] == 0x4F
        and history[3 : 3 + len(PCSC_STORAGE_RID)] == PCSC_STORAGE_RID
    )


# --- BER-TLV of the transparent exchange --------------------------------------


def _tlv_length(data: bytes, index: int) -> tuple[int, int]:
    first = data[index]
    if first < 0x80:
        return first, index + 1
    size = first & 0x7F
    if size == 0 or size > 2 or index + 1 + size > len(data):
        raise TagIOError(f"bad TLV length in {data.hex()}")
    return int.from_bytes(data[index + 1 : index + 1 + size], "big"), index + 1 + size


def _tlv_encode_length(length: int) -> bytes:
    return bytes([length]) if length < 0x80 else bytes([0x81, length])


def data_objects(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The (tag, value) pairs of a BER-TLV string (one- and two-byte tags)."""
    index = 0
    while index < len(data):
        tag = data[index]
        index += 1
        if tag & 0x1F == 0x1F:  # a two-byte tag such as 5F46
            if index >= len(data):
                raise TagIOError(f"bad TLV tag in {data.hex()}")
            tag = tag << 8 | data[index]
            index += 1
        if index >= len(data):
            raise TagIOError(f"TLV without length in {data.hex()}")
        length, index = _tlv_length(data, index)
        if index + length > len(data):
            raise TagIOError(f"TLV longer than the answer in {data.hex()}")
        yield tag, data[index : index + length]
        index += length


# --- the card handle ----------------------------------------------------------


class UnsupportedError(TagIOError):
    """The reader does not know the command (not the card's fault)."""


class TagFailedError(TagIOError):
    """The reader reached the tag, and the tag refused (NAK) or did not answer: the
    card is still on the reader, but the tag needs a new activation."""


class NakError(TagFailedError):
    """The tag answered with a NAK (as opposed to not answering)."""


class PcscCard:
    """One connected card: APDUs in and out, presence, disconnect."""

    def __init__(self, handle: int, protocol: int, reader_name: str) -> None:
        self._handle = handle
        self._protocol = protocol
        self.reader_name = reader_name
        self._uid: bytes | None = None
        self.connected = True

    def transceive(self, apdu: bytes) -> bytes:
        """Send a command APDU, the answer APDU (data ‖ SW1 SW2); TagIOError when the
        card (or the reader) did not answer."""
        if not self.connected:
            raise TagIOError("the card was released (a newer tap)")
        code, answer = scard.SCardTransmit(self._handle, self._protocol, list(apdu))
        if code != scard.SCARD_S_SUCCESS:
            raise TagIOError(f"no answer to {apdu[:2].hex()}: {_error_text(code)}")
        if len(answer) < 2:
            raise TagIOError(f"answer to {apdu[:2].hex()} without status word")
        return bytes(answer)

    def command(self, apdu: bytes) -> bytes:
        """An APDU that must end in 90 00: its data; TagIOError otherwise (UnsupportedError
        when the reader does not know the command, TagFailedError when the tag failed)."""
        answer = self.transceive(apdu)
        status = int.from_bytes(answer[-2:], "big")
        if status in _SW_UNSUPPORTED:
            raise UnsupportedError(f"reader does not know {apdu[:2].hex()} (SW {status:04X})")
        if answer[-2:] != SW_OK:
            raise TagFailedError(f"{apdu[:2].hex()} refused (SW {status:04X})")
        return answer[:-2]

    @property
    def uid(self) -> bytes:
        """The UID by the part 3 command GET DATA (`FF CA 00 00 00`)."""
        if self._uid is None:
            uid = self.command(bytes.fromhex("FFCA000000"))
            if not 4 <= len(uid) <= 10:
                raise TagIOError(f"UID of {len(uid)} bytes")
            self._uid = uid
        return self._uid

    def is_present(self) -> bool:
        """The reader's view (pcscd's, no card traffic): False once the card has left."""
        if not self.connected:
            return False
        code, _name, state, _protocol, _atr = scard.SCardStatus(self._handle)
        return code == scard.SCARD_S_SUCCESS and not state & _SCARD_ABSENT

    def reactivate(self) -> None:
        """Reset the card: the reader switches the field off and on and activates the tag.

        After a NAK an NTAG is back in IDLE and answers nothing until it is activated
        again (datasheet); nfcpy senses anew for every tap, a PC/SC reader keeps the
        card as it is, so we reset it ourselves, else a card left on the reader would
        stay mute until taken off.
        """
        if not self.connected:
            return
        code, protocol = scard.SCardReconnect(
            self._handle,
            scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            scard.SCARD_RESET_CARD,
        )
        if code == scard.SCARD_S_SUCCESS:
            self._protocol = protocol
        else:
            log.debug("reset of the card failed: %s", _error_text(code))

    def disconnect(self) -> None:
        """Let go of the card and reset it: the next tap is a new activation."""
        if self.connected:
            self.connected = False
            code = scard.SCardDisconnect(self._handle, scard.SCARD_RESET_CARD)
            if code != scard.SCARD_S_SUCCESS:
                log.debug("disconnect from the card failed: %s", _error_text(code))


@dataclass
class ReadAbilities:
    """What this reader turned out to do, learnt on the first card and kept."""

    fast_read: bool = True  # FAST_READ through the transparent exchange
    read_binary_bytes: int = READ_BINARY_MAX_BYTES


class PcscTagIO:
    """`TagIO` for an NTAG21x behind a PC/SC reader.

    Reads go by FAST_READ through the transparent exchange: one exchange for 60 pages,
    where READ BINARY on most readers is the NTAG's READ (16 bytes an exchange). A reader
    without the exchange falls back to READ BINARY with the longest length it takes
    (`ReadAbilities`), but then cannot read the originality signature either.
    """

    def __init__(self, card: PcscCard, abilities: ReadAbilities | None = None) -> None:
        self._card = card
        self._abilities = abilities or ReadAbilities()

    @property
    def uid(self) -> bytes:
        return self._card.uid

    def _reactivating(self, operation: Callable[[], T]) -> T:
        """Run `operation`; when the tag failed it (NAK, no answer), reset the card so
        the next command, or the next tap of a card left on the reader, finds it active."""
        try:
            return operation()
        except TagFailedError:
            self._card.reactivate()
            raise

    def exchange(self, frame: bytes, answer_length: int) -> bytes:
        """One raw NTAG command through the transparent exchange; the answer must have
        exactly `answer_length` bytes (a 1-byte answer to anything longer is a NAK)."""
        return self._reactivating(lambda: self._exchange(frame, answer_length))

    def _exchange(self, frame: bytes, answer_length: int) -> bytes:
        request = bytes([_DO_TRANSCEIVE]) + _tlv_encode_length(len(frame)) + frame
        apdu = bytes([0xFF, 0xC2, 0x00, 0x01, len(request)]) + request + b"\x00"
        objects = dict(data_objects(self._card.command(apdu)))
        status = objects.get(_DO_STATUS)
        if status is None or len(status) != 3:
            raise TagIOError(f"exchange of {frame[:1].hex()}: no status object")
        if status != b"\x00\x90\x00":
            raise TagFailedError(f"tag did not answer {frame[:1].hex()} (status {status.hex()})")
        answer = objects.get(_DO_RESPONSE)
        if answer is None:
            raise TagIOError(f"exchange of {frame[:1].hex()}: no response object")
        if len(answer) == 1 and answer_length != 1:
            raise NakError(f"tag refused {frame[:1].hex()} (NAK {answer.hex()})")
        if len(answer) != answer_length:
            raise TagIOError(f"answer to {frame[:1].hex()} has {len(answer)} bytes")
        return answer

    def get_version(self) -> bytes | None:
        try:
            return self.exchange(bytes([CMD_GET_VERSION]), VERSION_LENGTH)
        except TagIOError:
            return None

    def read_pages(self, first: int, last: int) -> bytes:
        data = bytearray()
        page = first
        while page <= last:
            chunk = self._read_some(page, last)
            if not chunk or len(chunk) % PAGE_SIZE:
                raise TagIOError(f"read of page {page} gave {len(chunk)} bytes")
            data += chunk
            page += len(chunk) // PAGE_SIZE
        return bytes(data[: (last - first + 1) * PAGE_SIZE])

    def _read_some(self, first: int, last: int) -> bytes:
        """Pages from `first` on, as many of first..last as one exchange gives."""
        if self._abilities.fast_read:
            end = min(last, first + FAST_READ_MAX_PAGES - 1)
            try:
                return self.exchange(
                    bytes([CMD_FAST_READ, first, end]), (end - first + 1) * PAGE_SIZE
                )
            except UnsupportedError:
                log.info(
                    "reader %s has no transparent exchange: READ BINARY", self._card.reader_name
                )
                self._abilities.fast_read = False
        while True:
            length = min((last - first + 1) * PAGE_SIZE, self._abilities.read_binary_bytes)
            apdu = bytes([0xFF, 0xB0, 0x00, first, length % 256])
            answer = self._card.transceive(apdu)
            status = int.from_bytes(answer[-2:], "big")
            if answer[-2:] == SW_OK:
                return answer[:-2][:length]
            if status >> 8 == 0x6C and status & 0xFF:  # "wrong Le, this many are there"
                shorter = (status & 0xFF) // PAGE_SIZE * PAGE_SIZE
            elif status in _SW_WRONG_LENGTH and length > READ_BINARY_SAFE_BYTES:
                shorter = READ_BINARY_SAFE_BYTES
            else:
                self._card.reactivate()
                raise TagFailedError(f"read of page {first} refused (SW {status:04X})")
            if not 0 < shorter < self._abilities.read_binary_bytes:
                self._card.reactivate()
                raise TagFailedError(f"read of page {first} refused (SW {status:04X})")
            log.info("reader %s reads at most %d bytes at once", self._card.reader_name, shorter)
            self._abilities.read_binary_bytes = shorter

    def write_page(self, page: int, data: bytes) -> None:
        if len(data) != PAGE_SIZE:
            raise ValueError("a page has 4 bytes")
        apdu = bytes([0xFF, 0xD6, 0x00, page, PAGE_SIZE]) + data
        try:
            self._reactivating(lambda: self._card.command(apdu))
        except TagIOError as error:
            raise TagIOError(f"write of page {page} failed: {error}") from error

    def read_signature(self) -> bytes:
        return self.exchange(bytes([CMD_READ_SIG, 0x00]), SIGNATURE_LENGTH)

    def authenticate(self, password: bytes, pack: bytes) -> bool:
        # A NAK is a wrong password; no answer at all (TagIOError) means the card left.
        try:
            return self.exchange(bytes([CMD_PWD_AUTH]) + password, len(pack)) == pack
        except NakError:
            return False

    def is_present(self) -> bool:
        return self._card.is_present()


# --- the reader -----------------------------------------------------------------


class PcscReader:
    """A `Reader` on `pcsc:` or `pcsc:<name part>`; reopens by itself."""

    def __init__(self, path: str, poll_interval_s: float = 0.05) -> None:
        if not path.startswith(PATH_PREFIX):
            raise ValueError(f"not a PC/SC reader path: {path!r}")
        self._path = path
        self._name_part = path[len(PATH_PREFIX) :].strip()
        self._poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._backoff = Backoff()
        self._context: int | None = None
        self._reader_name: str | None = None
        self._card: PcscCard | None = None
        self.abilities = ReadAbilities()

    @property
    def path(self) -> str:
        return self._path

    @property
    def connected(self) -> bool:
        return self._reader_name is not None

    @property
    def reader_name(self) -> str | None:
        """The PC/SC name of the reader in use, None while not connected."""
        return self._reader_name

    # --- opening and losing ------------------------------------------------------

    def _find_reader(self, context: int) -> str:
        """The reader this path names; `_NotThereError` says why not."""
        code, names = scard.SCardListReaders(context, [])
        if code == scard.SCARD_E_NO_READERS_AVAILABLE or (code == 0 and not names):
            raise _NotThereError("no PC/SC reader is plugged in")
        if _service_gone(code):
            raise _NotThereError(_pcscd_not_running(code), context_broken=True)
        if code != scard.SCARD_S_SUCCESS:
            raise _NotThereError(f"the reader list failed ({_error_text(code)})", True)
        wanted = self._name_part.casefold()
        for name in names:
            if wanted in name.casefold():
                return str(name)
        listed = "; ".join(names)
        raise _NotThereError(f"no PC/SC reader named like {self._name_part!r} (readers: {listed})")

    def _open(self) -> str | None:
        if self._reader_name is not None:
            return self._reader_name
        if not self._backoff.ready():
            return None
        try:
            if self._context is None:
                code, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
                if _service_gone(code):
                    raise _NotThereError(_pcscd_not_running(code))
                if code != scard.SCARD_S_SUCCESS:
                    raise _NotThereError(f"PC/SC context refused ({_error_text(code)})")
                self._context = context
            name = self._find_reader(self._context)
        except _NotThereError as error:
            if error.context_broken:  # make a new one next time
                self._release_context()
            delay_s = self._backoff.failed()
            log.warning("reader %s not available (%s); retry in %.1f s", self._path, error, delay_s)
            return None
        self._reader_name = name
        self._backoff.opened()
        log.info("reader %s opened (%s)", self._path, name)
        return name

    def _release_context(self) -> None:
        context, self._context = self._context, None
        if context is not None:
            code = scard.SCardReleaseContext(context)
            if code != scard.SCARD_S_SUCCESS:
                log.debug("release of a PC/SC context failed: %s", _error_text(code))

    def _lost(self, reason: str) -> None:
        log.warning("reader %s lost: %s", self._path, reason)
        self._drop_card()
        self._reader_name = None
        self._release_context()
        self._backoff.lost()

    def _drop_card(self) -> None:
        card, self._card = self._card, None
        if card is not None:
            card.disconnect()

    # --- cards -------------------------------------------------------------------

    def _connect(self, name: str, atr: bytes) -> CardSession | None:
        """A session for the card in the reader, or None (it left, or cannot be used)."""
        assert self._context is not None
        code, handle, protocol = scard.SCardConnect(
            self._context,
            name,
            scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        if code in _CARD_GONE:
            log.debug("card on %s left before it was opened: %s", name, _error_text(code))
            return None
        if code == scard.SCARD_E_SHARING_VIOLATION:
            log.warning("reader %s: the card is held by another program", self._path)
            return None
        if code != scard.SCARD_S_SUCCESS:
            self._lost(f"card could not be opened ({_error_text(code)})")
            return None
        card = PcscCard(handle, protocol, name)
        self._card = card
        # The UID now, as nfcpy has it from the activation: a card torn away here is a
        # card that left, not an error in the middle of a tap.
        try:
            uid = card.uid
        except TagIOError as error:
            log.info("reader %s: card without a UID (%s)", self._path, error)
            self._drop_card()
            return None
        if is_storage_card(atr):
            return TagSession(PcscTagIO(card, self.abilities))
        # A fresh activation, whoever held the card before: a 424's tap counter goes up only
        # then, and one left on the reader by a till that crashed (no reset on its way out)
        # would otherwise show the counter its last tap saw, which the till refuses.
        card.reactivate()
        return Ntag424Session(uid, card.transceive, card.is_present)

    def wait_for_card(
        self, timeout_s: float, cancel: threading.Event | None = None
    ) -> CardSession | None:
        cancel = cancel or threading.Event()
        deadline_s = time.monotonic() + timeout_s
        with self._lock:
            self._drop_card()
            known_state = scard.SCARD_STATE_UNAWARE
            atr_bytes = b""
            mute_logged = False
            while not cancel.is_set() and time.monotonic() < deadline_s:
                name = self._open()
                if name is None:
                    known_state = scard.SCARD_STATE_UNAWARE
                    cancel.wait(
                        max(0.0, min(self._backoff.next_try_s, deadline_s) - time.monotonic())
                    )
                    continue
                if cancel.is_set():  # checked again between opening and sensing
                    break
                assert self._context is not None
                wait_s = min(self._poll_interval_s, deadline_s - time.monotonic())
                code, states = scard.SCardGetStatusChange(
                    self._context, max(0, int(wait_s * 1000)), [(name, known_state)]
                )
                if code not in (scard.SCARD_S_SUCCESS, scard.SCARD_E_TIMEOUT):
                    known_state = scard.SCARD_STATE_UNAWARE
                    if _service_gone(code):
                        self._lost(f"PC/SC service pcscd stopped ({_error_text(code)})")
                    else:
                        self._lost(f"reader removed ({_error_text(code)})")
                    continue
                if code == scard.SCARD_S_SUCCESS:
                    _name, event_state, atr = states[0]
                    if event_state & _GONE_READER_STATES:
                        known_state = scard.SCARD_STATE_UNAWARE
                        self._lost("reader removed")
                        continue
                    known_state = event_state & ~scard.SCARD_STATE_CHANGED
                    atr_bytes = bytes(atr)
                if not known_state & scard.SCARD_STATE_PRESENT:
                    continue
                if known_state & scard.SCARD_STATE_MUTE:
                    if not mute_logged:
                        log.info("reader %s: the card does not answer (mute)", self._path)
                        mute_logged = True
                    continue
                session = self._connect(name, atr_bytes)
                if session is not None:
                    return session
                if self._reader_name is not None:  # not lost: do not spin on a bad card
                    cancel.wait(max(0.0, min(self._poll_interval_s, deadline_s - time.monotonic())))
            return None

    def close(self) -> None:
        with self._lock:
            self._drop_card()
            self._reader_name = None
            self._release_context()
