"""The emulator's cards behind the real PC/SC stack: pcscd, vsmartcard's vpcd, raw pyscard.

What a PC/SC reader backend sees: the ATR of each chip, the UID command, APDUs reaching the
NTAG 424 DNA model, PC/SC part 3 read/update binary and the transparent exchange on an
NTAG215 (the byte conventions of `hcard.terminal.card.vpcd`), a card taken away and put back,
tearing counted in APDUs.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest
from fixtures.card import CardEmulator, authenticate_424
from smartcard.CardConnection import CardConnection
from smartcard.Exceptions import CardConnectionException, NoCardException
from smartcard.scard import SCARD_RESET_CARD
from smartcard.System import readers

from hcard import ntag424
from hcard.ntag424 import CommMode, FileNo, Ins
from hcard.terminal.card import image as images
from hcard.terminal.card import vpcd
from hcard.terminal.card.emulator import EmulatorProcess
from hcard.terminal.card.ntag import NTAG215
from hcard.terminal.card.originality import TEST_PUBLIC_KEY_HEX, signature_ok

UID = bytes.fromhex("04a1b2c3d4e5f6")
OK = b"\x90\x00"
SEEN_TIMEOUT_S = 5.0  # pcscd polls vpcd about every 0.4 s


@pytest.fixture
def card_stack() -> str:
    return "pcsc"


def connect(emulator: CardEmulator, timeout_s: float = SEEN_TIMEOUT_S) -> CardConnection:
    """A pyscard connection to the card on the emulator's reader, once pcscd sees it."""
    name = emulator.reader_path.removeprefix("pcsc:")
    (reader,) = [r for r in readers() if str(r) == name]
    deadline_s = time.monotonic() + timeout_s
    while True:
        connection = reader.createConnection()
        try:
            connection.connect()
            return connection
        except (NoCardException, CardConnectionException):
            if time.monotonic() > deadline_s:
                raise
            time.sleep(0.05)


def until_gone(emulator: CardEmulator, timeout_s: float = SEEN_TIMEOUT_S) -> None:
    """Wait for pcscd to notice the card is gone: a connect raises NoCardException."""
    deadline_s = time.monotonic() + timeout_s
    while True:
        try:
            connection = connect(emulator, timeout_s=0)
        except NoCardException:
            return
        connection.disconnect()
        assert time.monotonic() < deadline_s, "pcscd still sees the card"
        time.sleep(0.05)


def transmitter(connection: CardConnection) -> Callable[[bytes], bytes]:
    def transmit(apdu: bytes) -> bytes:
        data, sw1, sw2 = connection.transmit(list(apdu))
        return bytes(data) + bytes([sw1, sw2])

    return transmit


@pytest.fixture
def ntag215(card_emulator: CardEmulator) -> Iterator[Callable[[bytes], bytes]]:
    card_emulator.present(images.blank(NTAG215, UID))
    connection = connect(card_emulator)
    yield transmitter(connection)
    with contextlib.suppress(CardConnectionException):
        connection.disconnect()  # the card may be gone by now


def exchange(frame: bytes) -> bytes:
    """A transparent exchange carrying one raw NTAG frame."""
    body = bytes([0x95, len(frame)]) + frame
    return bytes([0xFF, 0xC2, 0x00, 0x01, len(body)]) + body


@pytest.mark.parametrize(
    ("card", "atr"),
    [
        (images.blank(NTAG215, UID), vpcd.ATR_NTAG21X),
        (images.blank424(UID), vpcd.ATR_NTAG424),
    ],
    ids=["NTAG215", "NTAG424DNA"],
)
def test_atr_and_uid_of_each_chip(card_emulator, card, atr):
    card_emulator.present(card)
    connection = connect(card_emulator)
    assert bytes(connection.getATR()) == atr
    transmit = transmitter(connection)
    assert transmit(bytes.fromhex("FFCA000000")) == UID + OK
    assert transmit(bytes.fromhex("FFCA000004")) == bytes.fromhex("6C07")
    assert transmit(bytes.fromhex("FFCA010000")) == bytes.fromhex("6A81")
    assert transmit(bytes.fromhex("FF00000000")) == bytes.fromhex("6D00")
    status = card_emulator.status()
    assert status["mode"] == "vpcd"
    assert status["connected"]
    # APDUs to the card; neither the control messages nor GET DATA (a reader answers it
    # itself) count
    assert status["frames"] == 1
    connection.disconnect()


def test_ntag424_apdus_reach_the_chip(card_emulator):
    path = card_emulator.present(images.blank424(UID))
    connection = connect(card_emulator)
    transmit = transmitter(connection)
    session = authenticate_424(transmit, 0, ntag424.FACTORY_KEY)
    command = session.wrap(Ins.GET_FILE_SETTINGS, bytes([FileNo.PROPRIETARY]), b"", CommMode.MAC)
    answer = transmit(command)
    assert answer[-2:] == b"\x91\x00"
    settings = ntag424.FileSettings.from_answer(session.unwrap(answer[:-2], CommMode.MAC))
    assert settings.comm_mode is CommMode.FULL
    # a 256-byte ReadData answer in one response APDU, a write kept in the image
    header = bytes([FileNo.NDEF]) + bytes(6)
    answer = transmit(ntag424.native_command(Ins.READ_DATA, header))
    assert len(answer) == 256 + 2
    write = bytes([FileNo.NDEF]) + bytes(3) + (5).to_bytes(3, "little") + b"hello"
    assert transmit(ntag424.native_command(Ins.WRITE_DATA, write)) == b"\x91\x00"
    saved = images.load(path)
    assert isinstance(saved, images.CardState)
    assert bytes(saved.files[FileNo.NDEF].content[:5]) == b"hello"
    # a reset is a new tap: no application selected any more
    connection.reconnect(disposition=SCARD_RESET_CARD)
    answer = transmit(ntag424.native_command(Ins.READ_DATA, header))
    assert answer == b"\x91\xf0"
    connection.disconnect()


def test_part3_read_and_update_binary(card_emulator, ntag215):
    page_0_to_3 = ntag215(bytes.fromhex("FFB0000010"))
    assert page_0_to_3[-2:] == OK
    assert page_0_to_3[:3] == UID[:3]
    assert page_0_to_3[12:16] == bytes.fromhex("E1103E00")  # the CC
    assert len(ntag215(bytes.fromhex("FFB0000000"))) == 256 + 2  # Le 00: 256 bytes
    assert ntag215(bytes.fromhex("FFB0008704")) == bytes.fromhex("6300")  # page 135: NAK
    assert ntag215(bytes.fromhex("FFB0010004")) == bytes.fromhex("6B00")
    # the NAK put the tag back in IDLE: nothing answers until a new tap
    assert ntag215(bytes.fromhex("FFB0000004")) == bytes.fromhex("6300")
    card_emulator.remove()  # (a new tap)
    until_gone(card_emulator)
    path = card_emulator.present(card_emulator.workdir / "card.json")
    transmit = transmitter(connect(card_emulator))
    assert transmit(bytes.fromhex("FFD6000508DEADBEEF01020304")) == OK
    assert transmit(bytes.fromhex("FFB0000508")) == bytes.fromhex("DEADBEEF01020304") + OK
    assert transmit(bytes.fromhex("FFD6000503DEADBE")) == bytes.fromhex("6700")
    assert images.load(path).memory[20:28] == bytes.fromhex("DEADBEEF01020304")


def test_part3_transparent_exchange(ntag215):
    version = ntag215(exchange(b"\x60"))
    assert version == bytes.fromhex("C003009000") + b"\x97\x08" + NTAG215.version + OK
    signature = ntag215(exchange(b"\x3c\x00"))
    assert signature[:7] == bytes.fromhex("C003009000 9720")
    assert signature[-2:] == OK
    assert signature_ok(UID, signature[7:-2], TEST_PUBLIC_KEY_HEX)
    fast_read = ntag215(exchange(bytes([0x3A, 0, 63])))  # 256 bytes: BER length 82 01 00
    assert fast_read[:9] == bytes.fromhex("C003009000 97820100")
    assert fast_read[9:12] == UID[:3]
    assert len(fast_read) == 9 + 256 + 2
    fast_read = ntag215(exchange(bytes([0x3A, 0, 39])))  # 160 bytes: 81 A0
    assert fast_read[:8] == bytes.fromhex("C003009000 9781A0")
    # timer and flags are accepted and ignored
    timed = bytes.fromhex("5F460400010000") + bytes.fromhex("95 01 60")
    apdu = bytes([0xFF, 0xC2, 0x00, 0x01, len(timed)]) + timed
    assert ntag215(apdu) == version
    assert ntag215(bytes.fromhex("FFC20001 03 930160")) == bytes.fromhex("C003016A81") + OK
    assert ntag215(bytes.fromhex("FFC20001 02 9505")) == bytes.fromhex("C003006700") + OK
    assert ntag215(bytes.fromhex("FFC20002 00")) == bytes.fromhex("6A81")
    # a wrong password: the tag NAKs (a 1-byte answer) and is back in IDLE ...
    assert ntag215(exchange(b"\x1b\x00\x00\x00\x00")) == bytes.fromhex("C003009000 970100") + OK
    # ... so the next frame gets no answer at all
    assert ntag215(exchange(b"\x30\x00")) == bytes.fromhex("C003016401") + OK
    # RF off and on through the session: the reader activates the tag again
    assert ntag215(bytes.fromhex("FFC20000 04 8300 8400")) == bytes.fromhex("C003009000") + OK
    write = ntag215(exchange(bytes.fromhex("A2 04 01020304")))
    assert write == bytes.fromhex("C003009000 97010A") + OK  # ACK
    assert ntag215(exchange(b"\x50\x00")) == bytes.fromhex("C003016401") + OK  # HLTA: silence


def test_card_removed_and_back(card_emulator):
    path = card_emulator.present(images.blank424(UID))
    connection = connect(card_emulator)
    transmit = transmitter(connection)
    assert transmit(bytes.fromhex("FFCA000000")) == UID + OK
    card_emulator.remove()
    with pytest.raises(CardConnectionException):
        transmit(bytes.fromhex("FFCA000000"))
    until_gone(card_emulator)
    with pytest.raises(NoCardException):
        connect(card_emulator, timeout_s=0)
    card_emulator.present(path)
    connection = connect(card_emulator)
    assert bytes(connection.getATR()) == vpcd.ATR_NTAG424
    assert transmitter(connection)(bytes.fromhex("FFCA000000")) == UID + OK
    connection.disconnect()


def test_tearing_counts_apdus(card_emulator):
    path = card_emulator.present(images.blank(NTAG215, UID))
    transmit = transmitter(connect(card_emulator))
    card_emulator.tear(1, commit=True)
    assert transmit(bytes.fromhex("FFB0000004"))[-2:] == OK
    with pytest.raises(CardConnectionException):
        transmit(bytes.fromhex("FFD6000404CAFEBABE"))  # done, its answer lost
    assert not card_emulator.status()["present"]
    assert images.load(path).memory[16:20] == bytes.fromhex("CAFEBABE")


def test_a_card_waits_for_vpcd_to_come_back(tmp_path):
    """While pcscd is away the card stays in the field and reconnects when vpcd listens. The
    listener here plays vpcd (pcscd itself is shared by the whole machine)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    emulator = EmulatorProcess(tmp_path, vpcd_port=port)
    try:
        emulator.control.present(tmp_path / "card.json", chip="NTAG424DNA")
        status = emulator.control.status()
        assert status["present"]
        assert not status["connected"]
        assert status["chip"] == "NTAG424DNA"
        with socket.create_server(("127.0.0.1", port)) as server:
            server.settimeout(5)
            link, _ = server.accept()
            with link:
                link.sendall(struct.pack(">H", 1) + bytes([vpcd.Control.ATR]))
                assert link.recv(64) == struct.pack(">H", 6) + vpcd.ATR_NTAG424
                apdu = bytes.fromhex("FFCA000000")
                link.sendall(struct.pack(">H", len(apdu)) + apdu)
                assert link.recv(64) == struct.pack(">H", 9) + uid_of(tmp_path) + OK
                assert emulator.control.status()["connected"]
        # "pcscd" gone (its end closed) and back: the card goes on the reader again
        with socket.create_server(("127.0.0.1", port)) as server:
            server.settimeout(5)
            link, _ = server.accept()
            with link:
                link.sendall(struct.pack(">H", 1) + bytes([vpcd.Control.ATR]))
                assert link.recv(64) == struct.pack(">H", 6) + vpcd.ATR_NTAG424
                assert emulator.control.status()["present"]
    finally:
        emulator.stop()


def uid_of(folder) -> bytes:
    return images.load(folder / "card.json").uid
