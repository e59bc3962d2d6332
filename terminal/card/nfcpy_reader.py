"""The nfcpy backend: `usb:` (ACR122U, Sony RC-S380, PN533), `tty:` (PN532 on the
Pi's UART, e.g. `tty:S0:pn532`) and `udp:` (the card emulator in tests and demo).

nfcpy traps handled here (see /work/shared/NTAG215-OVER-NFCPY-UDP.md):
- `connect()` loops forever without `terminate`: every wait has a deadline and a
  cancel event, checked between sense cycles.
- Sensing other technologies costs seconds when no card is there: only `106A`.
- nfcpy probes the chip with 10 ms timeouts; a late answer makes it guess
  "Mifare Ultralight". We ask GET_VERSION ourselves with a sane timeout instead
  of trusting nfcpy's guess.
- A reader unplugged makes nfcpy raise or `connect()` return False: the device is
  closed, `connected` goes False, and later calls reopen it with backoff.

A Type 4 tag (nfcpy activates one when the SAK has bit 0x20: RATS, ATS, ISO-DEP) is
taken for an NTAG 424 DNA: the tap is an `Ntag424Session` over nfcpy's ISO-DEP
exchange. A till does not ask GetVersion (round trips): any other ISO-DEP card fails the
tap's select, originality or key-1 authentication; issuance checks GetVersion before it
binds a number (`Ntag424Session.require_ntag424`). NTAG21x tags stay `TagSession`s.
"""

from __future__ import annotations

import logging
import threading
import time

import nfc
import nfc.clf
import nfc.tag
import nfc.tag.tt2
import nfc.tag.tt2_nxp
import nfc.tag.tt4

from hcard.terminal.card.backoff import Backoff
from hcard.terminal.card.model import TagIOError
from hcard.terminal.card.ntag import (
    CMD_FAST_READ,
    CMD_GET_VERSION,
    CMD_PWD_AUTH,
    CMD_READ_SIG,
    NTAG213,
    NTAG215,
    NTAG216,
    PAGE_SIZE,
)
from hcard.terminal.card.ntag424_session import Ntag424Session
from hcard.terminal.card.originality import SIGNATURE_LENGTH
from hcard.terminal.card.session import TagSession

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 0.1  # per try; nfcpy retries twice
VERSION_LENGTH = 8
_KNOWN_CLASSES = {
    nfc.tag.tt2_nxp.NTAG213: NTAG213.version,
    nfc.tag.tt2_nxp.NTAG215: NTAG215.version,
    nfc.tag.tt2_nxp.NTAG216: NTAG216.version,
}
# RuntimeError: nfcpy's transceive wraps communication errors it does not map
# (e.g. BrokenLinkError) as RuntimeError("unexpected ..."); for us that is "tap again".
_IO_ERRORS = (nfc.tag.TagCommandError, nfc.clf.CommunicationError, OSError, RuntimeError)


class _NakError(TagIOError):
    """The tag answered with a NAK (as opposed to not answering)."""


class NfcpyTagIO:
    """`TagIO` over an activated nfcpy tag."""

    def __init__(self, tag: nfc.tag.Tag) -> None:
        self._tag = tag
        self._uid = bytes(tag.identifier)

    @property
    def uid(self) -> bytes:
        return self._uid

    def _type2(self) -> nfc.tag.tt2.Type2Tag:
        if not isinstance(self._tag, nfc.tag.tt2.Type2Tag):
            raise TagIOError(f"not a Type 2 tag: {self._tag.product}")
        return self._tag

    def _transceive(self, command: bytes, answer_length: int) -> bytes:
        """Send one command; the answer must have exactly the expected length.

        The length check matters on a loaded machine: an answer that arrives
        after nfcpy's timeout is read by its retry, and the retry's own answer
        then by the next command. A wrong length turns that into "tap again"
        instead of, say, a READ_SIG that looks forged.
        """
        try:
            answer = bytes(self._type2().transceive(command, timeout=COMMAND_TIMEOUT_S))
        except _IO_ERRORS as error:
            raise TagIOError(f"tag did not answer {command[:1].hex()}: {error!r}") from error
        if len(answer) == 1 and answer_length != 1:
            raise _NakError(f"tag refused {command[:1].hex()} (NAK {answer.hex()})")
        if len(answer) != answer_length:
            raise TagIOError(f"answer to {command[:1].hex()} has {len(answer)} bytes")
        return answer

    def get_version(self) -> bytes | None:
        known = _KNOWN_CLASSES.get(type(self._tag))
        if known is not None:
            return known
        if not isinstance(self._tag, nfc.tag.tt2.Type2Tag):
            return None
        try:
            return self._transceive(bytes([CMD_GET_VERSION]), VERSION_LENGTH)
        except TagIOError:
            return None

    def read_pages(self, first: int, last: int) -> bytes:
        return self._transceive(bytes([CMD_FAST_READ, first, last]), (last - first + 1) * PAGE_SIZE)

    def write_page(self, page: int, data: bytes) -> None:
        try:
            self._type2().write(page, bytearray(data))
        except _IO_ERRORS as error:
            raise TagIOError(f"write of page {page} failed: {error!r}") from error

    def read_signature(self) -> bytes:
        return self._transceive(bytes([CMD_READ_SIG, 0x00]), SIGNATURE_LENGTH)

    def authenticate(self, password: bytes, pack: bytes) -> bool:
        # A NAK is a wrong password; no answer at all (TagIOError) means the card left.
        try:
            return self._transceive(bytes([CMD_PWD_AUTH]) + password, len(pack)) == pack
        except _NakError:
            return False

    def is_present(self) -> bool:
        try:
            return bool(self._tag.is_present)
        except _IO_ERRORS:
            return False


class NfcpyIsoDep:
    """An activated nfcpy Type 4 tag as `Ntag424Session`'s transceive and presence check."""

    def __init__(self, tag: nfc.tag.tt4.Type4Tag) -> None:
        self._tag = tag

    def transceive(self, apdu: bytes) -> bytes:
        """Command APDU in, answer APDU out (nfcpy's FWT from the ATS, its retries)."""
        try:
            answer = self._tag.transceive(bytearray(apdu))
        except Exception as error:  # nfcpy's ISO-DEP raises IndexError on odd frames
            raise TagIOError(f"tag did not answer {apdu[:2].hex()}: {error!r}") from error
        if answer is None or len(answer) < 2:
            raise TagIOError(f"answer to {apdu[:2].hex()} has no status")
        return bytes(answer)

    def is_present(self) -> bool:
        try:
            return bool(self._tag.is_present)
        except _IO_ERRORS:
            return False


def session_for(tag: nfc.tag.Tag) -> TagSession | Ntag424Session:
    """The tap's session: an NTAG 424 DNA's for a Type 4 tag, else an NTAG21x's."""
    if isinstance(tag, nfc.tag.tt4.Type4Tag):
        iso_dep = NfcpyIsoDep(tag)
        return Ntag424Session(bytes(tag.identifier), iso_dep.transceive, iso_dep.is_present)
    return TagSession(NfcpyTagIO(tag))


class NfcpyReader:
    """A `Reader` on an nfcpy device path; reopens the device by itself."""

    def __init__(self, path: str, poll_interval_s: float = 0.05) -> None:
        self._path = path
        self._poll_interval_s = poll_interval_s
        self._clf: nfc.ContactlessFrontend | None = None
        self._lock = threading.Lock()
        self._backoff = Backoff()

    @property
    def path(self) -> str:
        return self._path

    @property
    def connected(self) -> bool:
        return self._clf is not None

    def _open(self) -> nfc.ContactlessFrontend | None:
        if self._clf is not None:
            return self._clf
        if not self._backoff.ready():
            return None
        try:
            self._clf = nfc.ContactlessFrontend(self._path)
        except Exception as error:
            delay_s = self._backoff.failed()
            log.warning("reader %s not available (%s); retry in %.1f s", self._path, error, delay_s)
            return None
        log.info("reader %s opened", self._path)
        self._backoff.opened()
        return self._clf

    def _lost(self, reason: object) -> None:
        log.warning("reader %s lost: %s", self._path, reason)
        clf, self._clf = self._clf, None
        if clf is not None:
            try:
                clf.close()
            except Exception:
                log.debug("close of a lost reader failed", exc_info=True)
        self._backoff.lost()

    def wait_for_card(
        self, timeout_s: float, cancel: threading.Event | None = None
    ) -> TagSession | Ntag424Session | None:
        cancel = cancel or threading.Event()
        deadline_s = time.monotonic() + timeout_s
        last_poll_s = [0.0]

        def terminate() -> bool:
            # Called by nfcpy between sense cycles: stop on deadline or cancel,
            # and pace the polling so a fast USB reader does not spin a core.
            pause_s = last_poll_s[0] + self._poll_interval_s - time.monotonic()
            if pause_s > 0:
                cancel.wait(min(pause_s, max(0.0, deadline_s - time.monotonic())))
            last_poll_s[0] = time.monotonic()
            return cancel.is_set() or time.monotonic() >= deadline_s

        with self._lock:
            while not cancel.is_set() and time.monotonic() < deadline_s:
                clf = self._open()
                if clf is None:
                    cancel.wait(
                        max(0.0, min(self._backoff.next_try_s, deadline_s) - time.monotonic())
                    )
                    continue
                try:
                    tag = clf.connect(
                        rdwr={
                            "targets": ["106A"],
                            "on-connect": lambda _tag: False,
                            "iterations": 1,
                            "beep-on-connect": False,
                        },
                        terminate=terminate,
                    )
                except Exception as error:
                    self._lost(error)
                    continue
                if tag is False:  # nfcpy's way of saying the device failed
                    self._lost("connect returned False")
                    continue
                if isinstance(tag, nfc.tag.Tag):
                    return session_for(tag)
            return None

    def close(self) -> None:
        with self._lock:
            clf, self._clf = self._clf, None
        if clf is not None:
            clf.close()
