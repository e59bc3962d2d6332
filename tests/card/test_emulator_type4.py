"""The emulator plays an NTAG 424 DNA to the real nfcpy stack over `udp:` as a Type 4A tag.

nfcpy activates it (SAK 0x20, RATS/ATS), frames its APDUs as ISO-DEP blocks with chaining
both ways, checks presence with R(NAK); the APDUs reach `Ntag424` in the emulator process and
what they change is in the saved image. The frame layer's rules (block numbers, retransmission,
DESELECT, HLTA) are pinned on `EmulatedType4` directly.
"""

from __future__ import annotations

import random

import ndef
import nfc
import nfc.tag.tt4
import pytest
from fixtures.card import authenticate_424, connect

from hcard import ntag424
from hcard.ntag424 import CommMode, FileNo, Ins
from hcard.terminal.card import image as images
from hcard.terminal.card.emulated_type4 import ATS, EmulatedType4, State
from hcard.terminal.card.model import TagIOError
from hcard.terminal.card.nfcpy_reader import NfcpyReader
from hcard.terminal.card.ntag424_model import TEST_ORIGINALITY_PUBLIC_KEY_HEX
from hcard.terminal.card.ntag424_session import Ntag424Session
from hcard.terminal.card.session import TagSession

UID = bytes.fromhex("04a1b2c3d4e5f6")
SELECT_NDEF_APP = bytes.fromhex("00A4040007D276000085010100")
OK, NATIVE_OK, MORE = b"\x90\x00", b"\x91\x00", b"\x91\xaf"


def transceive(tag: nfc.tag.tt4.Type4Tag, apdu: bytes) -> bytes:
    return bytes(tag.transceive(apdu))


def read_data(file_no: int, offset: int = 0, length: int = 0) -> bytes:
    header = bytes([file_no]) + offset.to_bytes(3, "little") + length.to_bytes(3, "little")
    return ntag424.native_command(Ins.READ_DATA, header)


def write_data(file_no: int, data: bytes, offset: int = 0) -> bytes:
    header = bytes([file_no]) + offset.to_bytes(3, "little") + len(data).to_bytes(3, "little")
    return ntag424.native_command(Ins.WRITE_DATA, header + data)


def test_nfcpy_activates_a_type_4a_tag_with_our_ats(card_emulator, clf):
    card_emulator.present(images.blank424(UID))
    tag = connect(clf)
    assert isinstance(tag, nfc.tag.tt4.Type4ATag)
    assert tag.identifier == UID
    assert tag._dep.miu == 128 - 3  # FSCI 7 from the ATS
    assert tag._dep.fwt == pytest.approx(4096 / 13.56e6 * 2**8)  # FWI 8: ~77 ms
    assert tag.is_present  # R(NAK) presence check, answered with R(ACK)
    assert transceive(tag, SELECT_NDEF_APP) == OK
    version = transceive(tag, ntag424.native_command(Ins.GET_VERSION))
    assert version == bytes.fromhex("04040230001105") + MORE
    assert transceive(tag, ntag424.native_command(Ins.ADDITIONAL_FRAME))[-2:] == MORE
    last = transceive(tag, ntag424.native_command(Ins.ADDITIONAL_FRAME))
    assert last[:7] == UID
    assert last[-2:] == NATIVE_OK
    signature = transceive(tag, ntag424.native_command(Ins.READ_SIG, b"\x00"))
    assert ntag424.originality_ok(UID, signature[:-2], TEST_ORIGINALITY_PUBLIC_KEY_HEX)


def test_nfcpy_reads_and_writes_the_ndef_file_and_the_image_keeps_it(card_emulator, clf):
    card_emulator.present(images.blank424(UID))
    tag = connect(clf)
    assert tag.ndef is not None  # CC file E103 → NDEF file E104, free read and write
    assert tag.ndef.records == []
    tag.ndef.records = [ndef.UriRecord("https://karte.hattingen.test/k?p=00")]
    tag = connect(clf)  # RFOFF, a new tap
    assert tag.ndef.records[0].iri == "https://karte.hattingen.test/k?p=00"
    saved = card_emulator.current_image()
    assert isinstance(saved, images.CardState)
    assert b"karte.hattingen.test" in saved.files[FileNo.NDEF].content


def test_long_commands_and_answers_are_chained(card_emulator, clf):
    """A 213-byte WriteData goes in two I-blocks (FSC 128), the 258-byte answer of a
    ReadData of the whole NDEF file comes back in two (nfcpy's FSD 256)."""
    card_emulator.present(images.blank424(UID))
    tag = connect(clf)
    assert transceive(tag, SELECT_NDEF_APP) == OK
    content = bytes(random.Random(1).randbytes(200))
    before = card_emulator.status()["frames"]
    assert transceive(tag, write_data(FileNo.NDEF, content, offset=40)) == NATIVE_OK
    assert card_emulator.status()["frames"] - before == 2  # command chaining: two blocks
    before = card_emulator.status()["frames"]
    answer = transceive(tag, read_data(FileNo.NDEF))
    assert card_emulator.status()["frames"] - before == 2  # I(chaining), R(ACK)
    assert len(answer) == 256 + 2
    assert answer[40:240] == content
    assert answer[-2:] == NATIVE_OK
    saved = card_emulator.current_image()
    assert isinstance(saved, images.CardState)
    assert saved.files[FileNo.NDEF].content[40:240] == content


def test_an_authenticated_session_over_udp_and_rfoff_ends_it(card_emulator, clf):
    card_emulator.present(images.blank424(UID))
    tag = connect(clf)
    session = authenticate_424(lambda apdu: transceive(tag, apdu), 0, ntag424.FACTORY_KEY)
    # In a session GetFileSettings is MAC'd both ways: the proprietary file is CommMode FULL.
    command = session.wrap(Ins.GET_FILE_SETTINGS, bytes([FileNo.PROPRIETARY]), b"", CommMode.MAC)
    answer = transceive(tag, command)
    assert answer[-2:] == NATIVE_OK
    settings = ntag424.FileSettings.from_answer(session.unwrap(answer[:-2], CommMode.MAC))
    assert settings.comm_mode is CommMode.FULL
    tag = connect(clf)  # nfcpy mutes first: RFOFF, the chip powers up again
    # no application selected any more, no session: ReadData finds no file
    assert transceive(tag, read_data(FileNo.NDEF))[-2:] == b"\x91\xf0"


def test_tearing_counts_frames_and_commit_keeps_the_write(card_emulator, clf):
    path = card_emulator.present(images.blank424(UID))
    tag = connect(clf)
    assert transceive(tag, SELECT_NDEF_APP) == OK
    card_emulator.tear(0, commit=True)  # the next frame is done, its answer never comes
    with pytest.raises(nfc.tag.tt4.Type4TagCommandError):
        transceive(tag, write_data(FileNo.NDEF, b"\x00\x05hello"))
    assert not card_emulator.status()["present"]
    saved = images.load(path)
    assert isinstance(saved, images.CardState)
    assert bytes(saved.files[FileNo.NDEF].content[:7]) == b"\x00\x05hello"
    card_emulator.present(path)
    tag = connect(clf)
    assert transceive(tag, SELECT_NDEF_APP) == OK
    card_emulator.tear(0)  # without commit: the write never happens
    with pytest.raises(nfc.tag.tt4.Type4TagCommandError):
        transceive(tag, write_data(FileNo.NDEF, b"\x00\x05world"))
    saved = images.load(path)
    assert bytes(saved.files[FileNo.NDEF].content[:7]) == b"\x00\x05hello"


def test_a_card_taken_away(card_emulator, clf):
    card_emulator.present(images.blank424(UID))
    tag = connect(clf)
    card_emulator.remove()
    assert not tag.is_present
    assert connect(clf, timeout_s=1.5) is None


def test_nfcpy_reader_gives_an_ntag424_session_and_keeps_ntag21x_sessions(card_emulator):
    reader = NfcpyReader(card_emulator.reader_path)
    try:
        card_emulator.present(images.blank424(UID))
        session = reader.wait_for_card(10)
        assert isinstance(session, Ntag424Session)
        assert session.uid == UID
        assert session.chip == "NTAG424DNA"
        transceive_424 = session._transceive
        assert transceive_424(SELECT_NDEF_APP) == OK
        assert session._is_present()
        card_emulator.remove()
        with pytest.raises(TagIOError):
            transceive_424(SELECT_NDEF_APP)
        assert session.wait_removed(2)
        card_emulator.present(images.blank(uid=UID))
        session = reader.wait_for_card(10)
        assert isinstance(session, TagSession)
        assert session.chip == "NTAG215"
    finally:
        reader.close()


# --- the frame layer itself -------------------------------------------------------------------


def activate(tag: EmulatedType4, rats: bytes = b"\xe0\x80") -> None:
    assert tag.handle(b"\x26") == bytes.fromhex("4403")
    cl1 = tag.handle(b"\x93\x20")
    assert cl1 == bytes([0x88, *UID[:3], 0x88 ^ UID[0] ^ UID[1] ^ UID[2]])
    assert tag.handle(b"\x93\x70" + cl1) == b"\x04"
    cl2 = tag.handle(b"\x95\x20")
    assert tag.handle(b"\x95\x70" + cl2) == b"\x20"  # SAK: ISO 14443-4
    assert tag.handle(rats) == ATS
    assert tag.state is State.PROTOCOL


def test_block_numbers_retransmission_and_presence_check():
    tag = EmulatedType4(images.blank424(UID))
    activate(tag)
    answer = tag.handle(b"\x02" + SELECT_NDEF_APP)  # I(0)
    assert answer == b"\x02" + OK
    assert tag.handle(b"\xb2") == answer  # R(NAK) with our number: the last block again
    assert tag.handle(b"\xa2") == answer  # R(ACK) with our number too
    assert tag.handle(b"\xb3") == b"\xa2"  # R(NAK) with the other number: R(ACK), ours
    assert tag.handle(b"\x03" + SELECT_NDEF_APP) == b"\x03" + OK  # I(1)
    assert tag.handle(b"\x0a\x05" + SELECT_NDEF_APP) == b"\x0a\x05" + OK  # CID echoed
    assert tag.handle(b"\x50\x00") is None  # not a block: ignored
    activate(tag)  # REQA amid ISO-DEP: a new reader whose predecessor sent no RFOFF
    assert tag.handle(b"\x02" + SELECT_NDEF_APP) == b"\x02" + OK  # block numbers anew
    assert tag.handle(b"\xc2") == b"\xc2"  # S(DESELECT) ...
    assert tag.state is State.HALT
    assert tag.handle(b"\x26") is None  # ... HALT: REQA does not wake it ...
    assert tag.handle(b"\x52") == bytes.fromhex("4403")  # ... WUPA does


def test_chaining_both_ways_with_a_small_fsd():
    tag = EmulatedType4(images.blank424(UID))
    activate(tag, rats=b"\xe0\x20")  # FSDI 2: 32-byte frames, 29 bytes of information
    assert tag.handle(b"\x02" + SELECT_NDEF_APP) == b"\x02" + OK
    command = read_data(FileNo.CC)
    assert tag.handle(b"\x13" + command[:6]) == b"\xa3"  # chained part: R(ACK)
    first = tag.handle(b"\x02" + command[6:])
    assert first is not None
    assert first[0] == 0x12  # I(0) with chaining
    assert len(first) == 1 + 29
    assert tag.handle(b"\xa2") == first  # R(ACK) with our number: again
    second = tag.handle(b"\xa3")
    assert second is not None
    assert second[0] == 0x03  # last part, I(1)
    answer = first[1:] + second[1:]
    assert answer[:-2] == images.blank424(UID).files[FileNo.CC].content
    assert answer[-2:] == NATIVE_OK


def test_hlta_before_rats_and_nonsense_frames():
    tag = EmulatedType4(images.blank424(UID))
    assert tag.handle(b"\x02\x00") is None  # IDLE: silent
    assert tag.handle(b"\x26") is not None
    cl1 = tag.handle(b"\x93\x20")
    assert cl1 is not None
    tag.handle(b"\x93\x70" + cl1)
    cl2 = tag.handle(b"\x95\x20")
    assert cl2 is not None
    tag.handle(b"\x95\x70" + cl2)
    assert tag.handle(b"\x50\x00") is None
    assert tag.state is State.HALT
    tag.power_up()
    assert tag.state is State.IDLE
    assert tag.handle(b"\x26") is not None
    assert tag.handle(b"\x93\x70\x00\x00\x00\x00\x00") is None  # a wrong select: IDLE
    assert tag.state is State.IDLE


def test_apdu_marks_the_image_dirty_only_on_change():
    tag = EmulatedType4(images.blank424(UID))
    assert tag.apdu(SELECT_NDEF_APP) == OK
    assert tag.apdu(read_data(FileNo.NDEF))[-2:] == NATIVE_OK
    assert not tag.dirty
    assert tag.apdu(write_data(FileNo.NDEF, b"\x00\x00")) == NATIVE_OK  # the same bytes
    assert not tag.dirty
    assert tag.apdu(write_data(FileNo.NDEF, b"\x00\x05")) == NATIVE_OK
    assert tag.dirty


@pytest.mark.parametrize("seed", range(3))
def test_frame_layer_survives_random_frames(seed):
    rng = random.Random(seed)
    tag = EmulatedType4(images.blank424(UID))
    for _ in range(2000):
        if rng.random() < 0.02:
            tag.power_up()
            activate(tag)
        frame = rng.randbytes(rng.randint(0, 12))
        if rng.random() < 0.5:
            frame = bytes([rng.choice([0x02, 0x03, 0x12, 0x13, 0xA2, 0xB3, 0xC2, 0x0A])]) + frame
        answer = tag.handle(frame)
        assert answer is None or len(answer) <= 256
