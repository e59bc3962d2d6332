"""The card emulator answers the real nfcpy reader stack like an NTAG21x would."""

from __future__ import annotations

import time

import nfc
import nfc.tag.tt2
import pytest
from fixtures.card import connect

from hcard.terminal.card import image as images
from hcard.terminal.card.emulated_tag import EmulatedTag, State
from hcard.terminal.card.ntag import CHIPS, NTAG215, bcc
from hcard.terminal.card.originality import TEST_PUBLIC_KEY_HEX, signature_ok

UID = bytes.fromhex("04a1b2c3d4e5f6")


@pytest.mark.parametrize("chip", ["NTAG213", "NTAG215", "NTAG216"])
def test_nfcpy_identifies_chip_and_reads_empty_ndef(card_emulator, clf, chip):
    card_emulator.present(images.blank(CHIPS[chip], UID))
    tag = connect(clf)
    assert tag is not None
    assert tag.product == f"NXP {chip}"
    assert tag.identifier == UID
    assert tag.ndef is not None
    assert tag.ndef.capacity > 0
    assert len(tag.ndef.records) == 0
    assert signature_ok(UID, tag.signature, TEST_PUBLIC_KEY_HEX)


def test_nfcpy_writes_ndef_and_it_is_saved_to_the_image(card_emulator, clf):
    import ndef

    path = card_emulator.present(images.blank(NTAG215, UID))
    tag = connect(clf)
    tag.ndef.records = [ndef.UriRecord("https://example.org/hello")]
    tag = connect(clf)
    assert tag.ndef.records[0].iri == "https://example.org/hello"
    saved = images.load(path)
    assert b"example.org/hello" in saved.memory


def test_no_card_means_no_tag(card_emulator, clf):
    started = time.monotonic()
    assert connect(clf, timeout_s=1.5) is None
    assert time.monotonic() - started < 10


def test_password_protection_latches_at_next_power_up(card_emulator, clf):
    card_emulator.present(images.blank(NTAG215, UID))
    tag = connect(clf)
    # nfcpy's own protect(): writes CFG0 (AUTH0), CFG1, PWD, PACK, then re-senses.
    assert tag.protect(b"\x11\x22\x33\x44\xaa\xbb", read_protect=True, protect_from=4)
    # Same field session as the protect: AUTH0 is not latched yet, but protect()
    # re-sensed (RFOFF), so now it is. Reading page 4 needs the password.
    tag = connect(clf)
    with pytest.raises(nfc.tag.tt2.Type2TagCommandError):
        tag.read(4)
    tag = connect(clf)
    assert tag.read(0)[0:3] == UID[0:3]  # pages below AUTH0 stay readable
    assert not tag.authenticate(b"\x00\x00\x00\x00\xaa\xbb")  # wrong password: NAK
    tag = connect(clf)
    assert tag.authenticate(b"\x11\x22\x33\x44\xaa\xbb")
    assert len(tag.read(4)) == 16
    tag.write(5, b"\x01\x02\x03\x04")
    tag = connect(clf)  # new power-up: authentication is gone
    with pytest.raises(nfc.tag.tt2.Type2TagCommandError):
        tag.write(5, b"\x05\x06\x07\x08")


def test_state_machine_details():
    card = images.blank(NTAG215, UID)
    tag = EmulatedTag(card)
    assert tag.handle(b"\x30\x00") is None  # IDLE: silent
    assert tag.handle(b"\x26") == bytes.fromhex("4400")
    cl1 = tag.handle(b"\x93\x20")
    assert cl1 == b"\x88" + UID[0:3] + bytes([bcc(b"\x88" + UID[0:3])])
    assert tag.handle(b"\x93\x70" + cl1) == b"\x04"
    cl2 = tag.handle(b"\x95\x20")
    assert cl2 == UID[3:7] + bytes([bcc(UID[3:7])])
    assert tag.handle(b"\x95\x70" + cl2) == b"\x00"
    assert tag.state is State.ACTIVE
    assert tag.handle(b"\x60") == NTAG215.version
    # READ rolls over after the last page; PWD and PACK read as zeros.
    assert tag.handle(bytes([0x30, 133])) == bytes(8) + card.page(0) + card.page(1)
    assert tag.handle(bytes([0x30, 135])) == b"\x00"  # NAK: out of range ...
    assert tag.state is State.IDLE  # ... and back to IDLE
    assert tag.handle(bytes([0x30, 0])) is None


def test_otp_lock_and_read_cnt():
    card = images.blank(NTAG215, UID)
    card.set_page(NTAG215.cfg1_page, b"\x10\x00\x00\x00")  # NFC_CNT_EN
    tag = EmulatedTag(card)

    def activate():
        tag.power_up()
        for frame in (b"\x26", b"\x93\x20"):
            cl1 = tag.handle(frame)
        tag.handle(b"\x93\x70" + cl1)
        cl2 = tag.handle(b"\x95\x20")
        tag.handle(b"\x95\x70" + cl2)

    activate()
    assert tag.handle(b"\x39\x02") == b"\x00\x00\x00"
    tag.handle(b"\x30\x04")
    tag.handle(b"\x30\x08")
    assert tag.handle(b"\x39\x02") == b"\x01\x00\x00"  # once per power-up
    # CC is one-time programmable: bits are only ever set.
    assert tag.handle(b"\xa2\x03\x00\x00\x00\x0f") == b"\x0a"
    assert card.page(3) == bytes([0xE1, 0x10, 0x3E, 0x0F])
    # Static lock bit for page 4 makes it read-only.
    assert tag.handle(b"\xa2\x02\x00\x00\x10\x00") == b"\x0a"
    assert tag.handle(b"\xa2\x04\x01\x02\x03\x04") == b"\x00"
    activate()
    assert tag.handle(b"\xa2\x05\x01\x02\x03\x04") == b"\x0a"
    assert tag.handle(b"\x3c\x00") == card.signature
    assert tag.handle(b"\x50\x00") is None  # HLTA: halted ...
    assert tag.handle(b"\x26") is None  # ... REQA does not wake it ...
    assert tag.handle(b"\x52") == bytes.fromhex("4400")  # ... WUPA does


def test_missing_image_becomes_a_blank_test_signed_ntag215(card_emulator):
    blank = images.load(card_emulator.workdir / "blank.json")  # made by the start
    assert blank.chip is NTAG215
    assert blank.uid[0] == 0x04
    assert signature_ok(blank.uid, blank.signature, TEST_PUBLIC_KEY_HEX)
    assert blank.memory[16:19] == b"\x03\x00\xfe"  # empty NDEF message
    fresh = card_emulator.workdir / "fresh.json"
    card_emulator.control.present(fresh, chip="NTAG216")
    assert images.load(fresh).chip.name == "NTAG216"


def test_control_channel_refuses_nonsense(card_emulator):
    with pytest.raises(RuntimeError, match="unknown op"):
        card_emulator.control.request("explode")
    with pytest.raises(RuntimeError, match="after"):
        card_emulator.control.request("tear", after=-1)


def test_garbage_datagrams_do_not_disturb_the_emulator(card_emulator, clf):
    import random
    import socket

    card_emulator.present(images.blank(NTAG215, UID))
    rng = random.Random(7)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(300):
            junk = rng.choice(
                [
                    rng.randbytes(rng.randint(0, 40)),
                    b"106A " + rng.randbytes(rng.randint(0, 20)).hex().encode(),
                    b"106A zz",
                    b"212F 0600ffff0100",
                ]
            )
            sock.sendto(junk, ("127.0.0.1", card_emulator.port))
    tag = connect(clf)
    assert tag is not None
    assert tag.product == "NXP NTAG215"


@pytest.mark.parametrize("seed", range(5))
def test_state_machine_survives_random_frames(seed):
    import random

    rng = random.Random(seed)
    tag = EmulatedTag(images.blank(NTAG215, UID))
    for _ in range(2000):
        frame = rng.randbytes(rng.randint(1, 8))
        if rng.random() < 0.3:
            frame = bytes([rng.choice([0x26, 0x52, 0x93, 0x95, 0x30, 0x3A, 0xA2, 0x1B])]) + frame
        answer = tag.handle(frame)
        assert answer is None or 1 <= len(answer) <= 16 * 4 * 135
        if rng.random() < 0.05:
            tag.power_up()
