"""The PC/SC backend through the real stack: our reader on pyscard, pcscd, vsmartcard's
virtual reader (vpcd), and our card emulator on vpcd's far side (`card_stack` "pcsc").

The same cards as through nfcpy's `udp:` driver read the same; a purse is written and read
back, a card pulled away during the write keeps a valid purse; a card that NAKed is usable
on the next tap; looks at the reader send nothing to an NTAG.

The reader going away is pcscd stopping. The machine's pcscd serves the other test workers,
so those tests run a pcscd of their own: in a mount namespace of its own (`unshare -m`, its
/run/pcscd a folder of the test), with its own reader.conf (vpcd on free ports), and the
reader under test in a child process pointed at that pcscd by PCSCLITE_CSOCK_NAME (the
client library reads it once per process). Stopping and starting that pcscd is what a
till sees when pcscd is restarted, or the reader unplugged and plugged back.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures.card import (
    TEST_WRITE_SECRET,
    CardEmulator,
    CardStack,
    card_keys,
    issued_card,
    put_purse,
)

from hcard import cardnumber, keys
from hcard.errors import Code, HCardError
from hcard.terminal.card import Purse, open_reader
from hcard.terminal.card import image as images
from hcard.terminal.card.layout import SLOT_FIRST_PAGES
from hcard.terminal.card.ntag424_cards import issued_state, with_purse
from hcard.terminal.card.ntag424_model import TEST_ORIGINALITY_PUBLIC_KEY_HEX
from hcard.terminal.card.ntag424_session import Ntag424Secrets
from hcard.terminal.card.pcsc_reader import (
    PcscReader,
    historical_bytes,
    is_storage_card,
)
from hcard.terminal.card.session import TagSession

NUMBER = cardnumber.from_serial(31)
ISSUER = keys.generate()
TERMINALS = {1: keys.generate(), 2: keys.generate()}
KEYS = card_keys(ISSUER, TERMINALS)
OLD, NEW = Purse(5000, 1, 1), Purse(4000, 2, 2)
SUN_BASE = "https://karte.hattingen.test"
SECRETS_424 = Ntag424Secrets(
    write_secret=TEST_WRITE_SECRET,
    sun_secret=b"hcard-test-sun-secret-000000001",
    admin_secret=b"hcard-test-admin-secret-0000001",
)
KEYS_424 = replace(KEYS, originality_424_key_hex=TEST_ORIGINALITY_PUBLIC_KEY_HEX)
TAP_TIMEOUT_S = 10.0
TEAR_AFTER = (0, 1, 10, 20)  # APDUs of a purse write before the card leaves


@pytest.fixture
def card_stack() -> CardStack:
    return CardStack.PCSC


@pytest.fixture
def reader(card_emulator: CardEmulator) -> Iterator[PcscReader]:
    opened = open_reader(card_emulator.reader_path)
    assert isinstance(opened, PcscReader)
    yield opened
    opened.close()


def tap(reader):
    session = reader.wait_for_card(timeout_s=TAP_TIMEOUT_S)
    assert session is not None, "no card found"
    return session


class _OpenOnly(threading.Event):
    """`cancel` of the till's look at a closed reader (hcard.terminal.core._OpenOnly):
    reads "not set" once, then "set", so `wait_for_card` opens and stops before sensing."""

    def __init__(self) -> None:
        super().__init__()
        self._asked = False

    def is_set(self) -> bool:
        asked, self._asked = self._asked, True
        return asked


# --- the ATR ---------------------------------------------------------------------------


def test_the_atr_tells_a_storage_card_from_an_iso_dep_card():
    ntag21x = bytes.fromhex("3B8F8001804F0CA0000003060300030000000068")  # PC/SC part 3
    mifare_classic = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
    ntag424 = bytes.fromhex("3B8180018080")  # ISO 14443-4, historical bytes: 80
    assert historical_bytes(ntag21x) == bytes.fromhex("804F0CA00000030603000300000000")
    assert historical_bytes(ntag424) == b"\x80"
    assert is_storage_card(ntag21x)
    assert is_storage_card(mifare_classic)
    assert not is_storage_card(ntag424)
    assert not is_storage_card(b"")


# --- opening ---------------------------------------------------------------------------


def test_open_by_name_part_and_by_first_reader(card_emulator, reader):
    """`pcsc:<name part>` (case ignored) and `pcsc:` (the first reader) open without a
    byte to any card: a look at a closed reader only opens it."""
    assert not reader.connected  # opened on the first call, like the nfcpy backend
    assert reader.wait_for_card(1, _OpenOnly()) is None
    assert reader.connected
    wanted = card_emulator.reader_path.removeprefix("pcsc:")
    assert reader.reader_name == wanted
    shouting = PcscReader("pcsc:" + wanted.upper())
    first = PcscReader("pcsc:")
    try:
        for other in (shouting, first):
            assert other.wait_for_card(1, _OpenOnly()) is None
            assert other.connected
        assert shouting.reader_name == wanted
        assert first.reader_name is not None
        assert first.reader_name.startswith("Virtual PCD 00 ")
    finally:
        shouting.close()
        first.close()


def test_a_reader_that_is_not_there_is_not_connected_and_says_why(caplog):
    reader = open_reader("pcsc:Kartenleser der Kasse 9")
    try:
        started = time.monotonic()
        assert reader.wait_for_card(0.5) is None
        assert time.monotonic() - started < 2
        assert not reader.connected
        assert "no PC/SC reader named like 'Kartenleser der Kasse 9'" in caplog.text
        assert "Virtual PCD 00 00" in caplog.text  # the readers there are, for the technician
    finally:
        reader.close()


def test_waiting_has_a_deadline_and_sees_cancel(reader):
    started = time.monotonic()
    assert reader.wait_for_card(0.3) is None
    assert 0.25 < time.monotonic() - started < 1.5
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    assert reader.wait_for_card(60, cancel) is None
    assert time.monotonic() - started < 1.0
    assert reader.connected


def test_a_card_put_down_while_waiting_is_found(card_emulator, reader):
    threading.Timer(0.3, card_emulator.present, [issued_card(ISSUER, NUMBER)]).start()
    session = tap(reader)
    assert isinstance(session, TagSession)
    assert session.read(KEYS).card_number == NUMBER


# --- NTAG21x ---------------------------------------------------------------------------


@pytest.mark.parametrize("chip", ["NTAG215", "NTAG216"])
def test_an_issued_card_reads_as_through_nfcpy(card_emulator, reader, tmp_path, chip):
    card = put_purse(issued_card(ISSUER, NUMBER, chip=chip), OLD, TERMINALS[1], slot=1)
    card_emulator.present(card)
    through_pcsc = tap(reader).read(KEYS)
    (tmp_path / "udp").mkdir()
    udp = CardEmulator(tmp_path / "udp")
    nfcpy_reader = open_reader(udp.reader_path)
    try:
        udp.present(card)
        session = nfcpy_reader.wait_for_card(TAP_TIMEOUT_S)
        assert session is not None
        through_nfcpy = session.read(KEYS)
    finally:
        nfcpy_reader.close()
        udp.stop()
    assert through_pcsc == through_nfcpy
    assert (through_pcsc.card_number, through_pcsc.chip, through_pcsc.purse) == (
        NUMBER,
        chip,
        OLD,
    )


def test_purse_written_and_read_back(card_emulator, reader):
    card_emulator.present(put_purse(issued_card(ISSUER, NUMBER), OLD, TERMINALS[1]))
    session = tap(reader)
    view = session.read(KEYS)
    session.write_purse(Purse(4000, view.next_counter, 2), TERMINALS[2])
    session.write_purse(Purse(3000, view.next_counter + 1, 1), TERMINALS[1])
    assert tap(reader).read(KEYS).purse == Purse(3000, 3, 1)
    image = card_emulator.current_image()
    assert isinstance(image, images.CardImage)
    # 2 went to slot 1 (the older one), 3 then overwrote slot 0
    counters = [image.memory[first * 4 + 1 : first * 4 + 5] for first in SLOT_FIRST_PAGES]
    assert counters == [(3).to_bytes(4, "big"), (2).to_bytes(4, "big")]


def test_fast_read_takes_fewer_commands_than_read_binary(card_emulator, reader):
    """Both read paths give the same card; FAST_READ through the transparent exchange
    needs fewer exchanges (on most readers READ BINARY is the NTAG's 16-byte READ)."""
    card_emulator.present(put_purse(issued_card(ISSUER, NUMBER), OLD, TERMINALS[1]))
    before = card_emulator.status()["frames"]
    fast = tap(reader).read(KEYS)
    fast_commands = card_emulator.status()["frames"] - before
    reader.abilities.fast_read = False
    reader.abilities.read_binary_bytes = 16
    before = card_emulator.status()["frames"]
    slow = tap(reader).read(KEYS)
    slow_commands = card_emulator.status()["frames"] - before
    assert slow == fast
    # GET_VERSION, READ_SIG and 3 FAST_READs (layout in 60-page chunks, config); the UID
    # is the reader's own answer (GET DATA), no command to the card
    assert fast_commands == 5
    assert slow_commands > 2 * fast_commands


def test_card_taken_off_is_seen(card_emulator, reader):
    card_emulator.present(issued_card(ISSUER, NUMBER))
    session = tap(reader)
    assert not session.wait_removed(timeout_s=0.2)  # still there
    card_emulator.remove()
    started = time.monotonic()
    assert session.wait_removed(timeout_s=5)
    assert time.monotonic() - started < 2  # pcscd polls vpcd every 0.4 s
    assert reader.wait_for_card(0.3) is None
    assert reader.connected  # no card is not no reader


def test_a_card_taken_off_mid_read_is_tap_again(card_emulator, reader):
    card_emulator.present(issued_card(ISSUER, NUMBER))
    session = tap(reader)
    card_emulator.tear(after=2)
    with pytest.raises(HCardError) as caught:
        session.read(KEYS)
    assert caught.value.code is Code.CARD_UNREADABLE


def test_a_refused_password_leaves_the_card_usable(card_emulator, reader):
    """A wrong PWD_AUTH is a NAK, after which an NTAG answers nothing until activated
    again: the backend resets the card, so the next tap of the card left on the reader
    reads it."""
    card_emulator.present(issued_card(ISSUER, NUMBER))
    session = tap(reader)
    session.read(replace(KEYS, write_secret=b"another site's secret, 32 bytes"))
    with pytest.raises(HCardError) as caught:
        session.write_purse(Purse(1, 1, 1), TERMINALS[1])
    assert caught.value.code is Code.CARD_NOT_ISSUED
    session = tap(reader)
    view = session.read(KEYS)
    session.write_purse(Purse(1, view.next_counter, 1), TERMINALS[1])
    assert tap(reader).read(KEYS).purse == Purse(1, 1, 1)


def take_off(card_emulator, session) -> None:
    """The card leaves, and the reader has seen it leave before the next card comes.

    pcscd learns of a vpcd card by polling it every 0.4 s: a card swapped faster than
    that is the old card still there to pcscd, its first command then fails (a real
    reader reports a removal at once). A hand is slower than 0.4 s."""
    card_emulator.remove()
    assert session.wait_removed(timeout_s=5)


def commands_of_a_write(card_emulator, reader, card) -> int:
    card_emulator.present(card, name="probe")
    session = tap(reader)
    session.read(KEYS)
    before = card_emulator.status()["frames"]
    session.write_purse(NEW, TERMINALS[2])
    commands = int(card_emulator.status()["frames"] - before)
    take_off(card_emulator, session)
    return commands


@pytest.mark.parametrize("commit", [False, True], ids=["lost-before", "done-answer-lost"])
def test_card_pulled_away_after_every_command_of_a_purse_write(card_emulator, reader, commit):
    """Tear after some of the write's APDUs; the card always keeps a valid purse."""
    card = put_purse(issued_card(ISSUER, NUMBER), OLD, TERMINALS[1], slot=0)
    commands = commands_of_a_write(card_emulator, reader, card)
    assert commands == 21  # PWD_AUTH + 20 page writes, one APDU each
    # Every tear point of the session logic is torn through nfcpy (test_purse_write.py);
    # here the first, second, a middle and the last APDU (about 1.5 s each: two removals
    # that pcscd sees at its 0.4 s polls).
    seen = set()
    for after in TEAR_AFTER:
        path = card_emulator.present(card, name=f"torn-{after}")
        session = tap(reader)
        session.read(KEYS)
        card_emulator.tear(after=after, commit=commit)
        with pytest.raises(HCardError) as caught:
            session.write_purse(NEW, TERMINALS[2])
        assert caught.value.code is Code.CARD_UNREADABLE
        assert caught.value.details["written"] == ("none" if after == 0 else "unknown")
        assert session.wait_removed(timeout_s=5), after  # torn: the card left
        card_emulator.present(path)  # the same card, tapped again
        again = tap(reader)
        view = again.read(KEYS)
        assert view.purse in (OLD, NEW), after
        assert view.purse_code is None
        seen.add(view.purse)
        take_off(card_emulator, again)
    assert seen == ({OLD, NEW} if commit else {OLD})


def test_a_look_at_a_connected_reader_sends_nothing_to_an_ntag(card_emulator, reader):
    """The till looks at the reader every few seconds, also with a card left on it: the
    look finds the card (its ATR is pcscd's) without an APDU, so it cannot disturb a
    card or use up the commands of a tear test."""
    card_emulator.present(issued_card(ISSUER, NUMBER))
    assert reader.wait_for_card(1, _OpenOnly()) is None
    tap(reader).close()  # the card is there (pcscd sees a vpcd card within 0.4 s)
    for _ in range(3):
        started = time.monotonic()
        session = reader.wait_for_card(0.02)  # core.READER_SENSE_WINDOW_S
        assert session is not None
        assert time.monotonic() - started < 0.5
        session.close()
    assert card_emulator.status()["frames"] == 0


# --- NTAG 424 DNA ----------------------------------------------------------------------


def test_an_ntag424_reads_and_keeps_its_purse_through_pcsc(card_emulator, reader):
    state = issued_state(images.blank424(), NUMBER, ISSUER, SUN_BASE, SECRETS_424)
    card_emulator.present(with_purse(state, OLD, TERMINALS[1], KEYS_424))
    session = tap(reader)
    assert session.chip == "NTAG424DNA"
    assert session.uid == state.uid
    view = session.read(KEYS_424)
    assert (view.card_number, view.uid, view.purse) == (NUMBER, state.uid, OLD)
    assert view.url is not None
    assert view.url.startswith(SUN_BASE + "/k?p=")
    session.write_purse(Purse(4000, view.next_counter, 2), TERMINALS[2])
    again = tap(reader).read(KEYS_424)
    assert again.purse == Purse(4000, 2, 2)
    assert again.tap_counter is not None
    assert view.tap_counter is not None
    assert again.tap_counter > view.tap_counter
    card_emulator.remove()
    assert session.wait_removed(timeout_s=5)


# --- the till's view ----------------------------------------------------------------------


def test_the_till_shows_a_pcsc_reader_as_a_usb_one(live_server, card_emulator, terminal_factory):
    """`Status.reader_connected` (the cashier's "✓ Kartenleser" / "✗ KEIN KARTENLESER")
    means the same on PC/SC: connected before the first tap and through payments looked at
    all the time; a reader the path names that is not there shows as missing, and a
    payment waiting for a card on it can be cancelled."""
    from fixtures.terminal import server_card

    from hcard.terminal.till import Outcome

    number, card = server_card(live_server, 1_000)
    card_emulator.present(card)
    till = terminal_factory(live_server, card_emulator.reader_path).till(
        reader_check_interval_s=0.01
    )
    deadline_s = time.monotonic() + TAP_TIMEOUT_S
    while not till.status().reader_connected:
        assert time.monotonic() < deadline_s, "the reader was not opened at start"
        time.sleep(0.02)
    results = [till.pay(100, card_timeout_s=TAP_TIMEOUT_S) for _ in range(3)]
    assert [result.outcome for result in results] == [Outcome.APPROVED] * 3
    assert till.status().reader_connected
    assert live_server.staff.card(number)["balance_cents"] == 700
    missing = terminal_factory(live_server, "pcsc:Leser der Kasse 9").till(
        reader_check_interval_s=0.05
    )
    assert missing.look_at_reader() is False
    assert missing.status().reader_connected is False
    threading.Timer(0.3, missing.cancel).start()
    assert missing.pay(100, card_timeout_s=10).outcome == Outcome.CANCELLED


# --- pcscd going away: a pcscd of the test's own -----------------------------------------

READER_CHILD = r"""
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
from hcard.terminal.card import open_reader
reader = open_reader(sys.argv[1])
for line in sys.stdin:
    timeout_s = float(line)
    session = reader.wait_for_card(timeout_s)
    uid = session.uid.hex() if session is not None else None
    print(json.dumps({"connected": reader.connected, "uid": uid}), flush=True)
reader.close()
"""


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (vpcd listens on one port per slot)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two free ports in a row")


UNSHARE = ("unshare", "--mount", "--propagation", "private")


class OwnPcscd:
    """A pcscd for one test: own /run/pcscd (mount namespace), reader.conf, vpcd ports."""

    def __init__(self, folder: Path) -> None:
        self.run_dir = folder / "run"
        self.conf_dir = folder / "reader.conf.d"
        self.log_path = folder / "pcscd.log"
        self.run_dir.mkdir()
        self.conf_dir.mkdir()
        self.port = _free_port_pair()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "pcscd.comm"

    def start(self, reader_name: str = "Virtual PCD") -> None:
        (self.conf_dir / "vpcd").write_text(
            f'FRIENDLYNAME "{reader_name}"\n'
            f"DEVICENAME   /dev/null:0x{self.port:04X}\n"
            "LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so\n"
            f"CHANNELID    0x{self.port:04X}\n"
        )
        script = 'mount --bind "$0" /run/pcscd && exec pcscd -f -c "$1"'
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*UNSHARE, "sh", "-c", script, str(self.run_dir), str(self.conf_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline_s = time.monotonic() + 15
        while not self._answers():
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline_s, "own pcscd did not start"
            time.sleep(0.05)

    def _answers(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket_path))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)
            self.process = None


def _own_pcscd_possible() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a pcscd of its own in a mount namespace)"
    for program in ("unshare", "pcscd"):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    if not Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so").exists():
        return "vsmartcard-vpcd is not installed"
    return None


@pytest.fixture
def own_pcscd(tmp_path: Path) -> Iterator[OwnPcscd]:
    why_not = _own_pcscd_possible()
    if why_not:
        pytest.skip(why_not)
    daemon = OwnPcscd(tmp_path)
    try:
        yield daemon
    finally:
        daemon.stop()


class ReaderChild:
    """A PcscReader in a process of its own that talks to `own_pcscd`."""

    def __init__(self, path: str, daemon: OwnPcscd, log_path: Path) -> None:
        env = dict(os.environ, PCSCLITE_CSOCK_NAME=str(daemon.socket_path))
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", READER_CHILD, path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                text=True,
            )

    def wait_for_card(self, timeout_s: float) -> dict[str, object]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{timeout_s}\n")
        self.process.stdin.flush()
        answer: dict[str, object] = json.loads(self.process.stdout.readline())
        return answer

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=15)


def test_pcscd_stopped_and_started_again(own_pcscd, tmp_path):
    """pcscd stops (restarted, or its reader unplugged: no reader): `connected` goes False
    with a message saying so, and the reader comes back by itself with its card."""
    own_pcscd.start()
    card = issued_card(ISSUER, NUMBER)
    (tmp_path / "cards").mkdir()
    emulator = CardEmulator(tmp_path / "cards", vpcd_port=own_pcscd.port)
    child = ReaderChild("pcsc:Virtual PCD 00 00", own_pcscd, tmp_path / "reader.log")
    try:
        emulator.present(card)
        assert child.wait_for_card(TAP_TIMEOUT_S) == {"connected": True, "uid": card.uid.hex()}
        own_pcscd.stop()
        assert child.wait_for_card(0.5) == {"connected": False, "uid": None}
        assert child.wait_for_card(0.5) == {"connected": False, "uid": None}
        own_pcscd.start()
        started = time.monotonic()
        # back within the backoff (0.2, 0.4, 0.8 s ... while it was away); the card
        # process finds vpcd again by itself
        assert child.wait_for_card(TAP_TIMEOUT_S) == {"connected": True, "uid": card.uid.hex()}
        assert time.monotonic() - started < 5
    finally:
        child.close()
        emulator.stop()
    log = child.log
    assert "reader pcsc:Virtual PCD 00 00 lost: PC/SC service pcscd stopped" in log
    assert "not available (PC/SC service pcscd is not running" in log
    assert log.count("opened (Virtual PCD 00 00)") == 2


def test_a_reader_named_in_the_path_that_comes_later(own_pcscd, tmp_path):
    """The till's path names its reader; another reader there does not do: not connected
    and the log lists the readers there are, until the named one is there."""
    own_pcscd.start()
    child = ReaderChild("pcsc:Kasse 2", own_pcscd, tmp_path / "reader.log")
    try:
        assert child.wait_for_card(0.3) == {"connected": False, "uid": None}
        own_pcscd.stop()
        own_pcscd.start(reader_name="Leser Kasse 2")
        deadline_s = time.monotonic() + 5  # the backoff's next try, at most
        while child.wait_for_card(0.2) != {"connected": True, "uid": None}:
            assert time.monotonic() < deadline_s, child.log
    finally:
        child.close()
    log = child.log
    assert "no PC/SC reader named like 'Kasse 2' (readers: Virtual PCD 00 00; " in log
    assert "reader pcsc:Kasse 2 opened (Leser Kasse 2 00 00)" in log
