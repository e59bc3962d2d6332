"""The NTAG 424 DNA model, driven by the reader's side of hcard.ntag424 as a till would drive it.

First the model answers NXP's example sessions (AN12196, see test_ntag424_crypto) with the
published bytes, so it is the chip's crypto and not only our reader's mirror image. Then a
card personalised like a Hattingen Card: the purse file read and written with MAC and
encryption, a wrong key, a replayed authentication, a bad MAC, factory keys, the SUN link
of every tap and an old one, a counter that went backwards, the counter reset when SDM is
enabled, key versions read without a session, and a write torn after any command.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from card.test_ntag424_crypto import (
    T14_CHALLENGE,
    T14_COMMAND_1,
    T14_COMMAND_2,
    T14_CONFIRMATION,
    T14_RND_B,
    T14_TI,
    T17_ANSWER,
    T17_COMMAND,
    T17_DATA,
    T18_ANSWER,
    T18_COMMAND,
    T19_CHALLENGE,
    T19_COMMAND_2,
    T19_CONFIRMATION,
    T19_TI,
    T21_ANSWER,
    T21_COMMAND,
)

from hcard import ntag424
from hcard.errors import Code, HCardError
from hcard.ntag424 import (
    ACCESS_FREE,
    FACTORY_KEY,
    AccessRights,
    CommMode,
    FileNo,
    FileSettings,
    KeyNo,
    SdmOption,
    SdmSettings,
    SecureChannel,
)
from hcard.terminal.card.ntag424_model import (
    TEST_ORIGINALITY_PUBLIC_KEY_HEX,
    CardState,
    Ntag424,
    factory_state,
)

H = bytes.fromhex
OK = H("9100")
UID = H("04A1B2C3D4E5F6")
MASTER_ISSUE = H("11" * 16)  # keys 0 and 4: issuance only
MASTER_PURSE = H("22" * 16)  # key 1: the tills
MASTER_SUN = H("33" * 16)  # keys 2 and 3: the server's balance page
SELECT_APPLICATION = H("00A4040C07D276000085010100")
URL_HEAD = "karte.hattingen.de/k?p="
URL_TEMPLATE = URL_HEAD + "0" * 32 + "&m=" + "0" * 16
PICC_OFFSET = 2 + 4 + 1 + len(URL_HEAD)  # NLEN, record header, URI prefix code, URL so far
MAC_OFFSET = PICC_OFFSET + 32 + len("&m=")


def card_keys(uid: bytes) -> dict[KeyNo, bytes]:
    """The keys issuance gives card `uid` (docs/card-format.md: one master key per holder)."""
    return {
        KeyNo.APP_MASTER: ntag424.card_key(MASTER_ISSUE, uid, KeyNo.APP_MASTER),
        KeyNo.PURSE: ntag424.card_key(MASTER_PURSE, uid, KeyNo.PURSE),
        KeyNo.SUN_META_READ: ntag424.site_key(MASTER_SUN, KeyNo.SUN_META_READ),
        KeyNo.SUN_FILE_READ: ntag424.card_key(MASTER_SUN, uid, KeyNo.SUN_FILE_READ),
        KeyNo.SPARE: ntag424.card_key(MASTER_ISSUE, uid, KeyNo.SPARE),
    }


class CardGoneError(Exception):
    """The card left the field: the reader got no answer."""


class Field:
    """A card in a reader's field, torn as the card emulator tears an NTAG215
    (`emulator.Emulator.on_frame`): it leaves after `after` more commands; with `commit` the
    next one still takes effect on the card, but its answer is lost."""

    def __init__(self, card: Ntag424) -> None:
        self.card = card
        self.present = True
        self.commands = 0
        self.tear_at: int | None = None
        self.commit = False

    def transceive(self, apdu: bytes) -> bytes:
        if not self.present:
            raise CardGoneError
        self.commands += 1
        if self.tear_at is not None and self.commands > self.tear_at:
            if self.commit:
                self.card.handle(apdu)
            self.present = False
            raise CardGoneError
        return self.card.handle(apdu)

    def tear(self, after: int, commit: bool) -> None:
        self.tear_at, self.commit = self.commands + after, commit

    def tap(self) -> Field:
        """The card taken away and put back: power off and on, no tear pending."""
        self.card.power_up()
        self.present, self.tear_at = True, None
        return self


def scripted(*values: bytes) -> Callable[[int], bytes]:
    """The card's random numbers, in order: for the published examples."""
    queue = list(values)

    def take(size: int) -> bytes:
        value = queue.pop(0)
        assert len(value) == size
        return value

    return take


def ndef_file(url: str) -> bytes:
    """NLEN ‖ one short URI record (https://, prefix code 04)."""
    payload = b"\x04" + url.encode("ascii")
    record = bytes([0xD1, 0x01, len(payload), 0x55]) + payload
    return len(record).to_bytes(2, "big") + record


def personalise(field: Field) -> None:
    """Issuance: the SUN link, file settings and keys of a Hattingen Card (key 0 last)."""
    transceive, keys = field.transceive, card_keys(field.card.state.uid)
    ntag424.select_application(transceive)
    session = ntag424.authenticate(transceive, KeyNo.APP_MASTER, FACTORY_KEY)
    ntag424.write_data(transceive, session, FileNo.NDEF, 0, ndef_file(URL_TEMPLATE), CommMode.PLAIN)
    ntag424.change_file_settings(transceive, session, FileNo.NDEF, SUN_FILE)
    ntag424.change_file_settings(transceive, session, FileNo.PROPRIETARY, PURSE_FILE)
    for number in (KeyNo.PURSE, KeyNo.SUN_META_READ, KeyNo.SUN_FILE_READ, KeyNo.SPARE):
        ntag424.change_key(transceive, session, number, keys[number], 1)
    ntag424.change_key(transceive, session, KeyNo.APP_MASTER, keys[KeyNo.APP_MASTER], 1)


SUN_FILE = FileSettings(
    CommMode.PLAIN,
    AccessRights(read=ACCESS_FREE, write=KeyNo.PURSE, read_write=0, change=0),
    256,
    SdmSettings(
        SdmOption.UID | SdmOption.READ_COUNTER | SdmOption.ASCII,
        meta_read=KeyNo.SUN_META_READ,
        file_read=KeyNo.SUN_FILE_READ,
        counter_read=KeyNo.PURSE,
        picc_data_offset=PICC_OFFSET,
        mac_input_offset=MAC_OFFSET,
        mac_offset=MAC_OFFSET,
    ),
)
PURSE_FILE = FileSettings(CommMode.FULL, AccessRights(1, 1, 1, 0), 128)


@pytest.fixture
def field() -> Field:
    """A personalised card, in the field, nothing selected."""
    card = Field(Ntag424(factory_state(UID)))
    personalise(card)
    return card.tap()


def till_session(field: Field, key: bytes | None = None) -> SecureChannel:
    ntag424.select_application(field.transceive)
    key = key or card_keys(field.card.state.uid)[KeyNo.PURSE]
    return ntag424.authenticate_card(field.transceive, KeyNo.PURSE, key)


def refused(call: Callable[[], object]) -> Code:
    with pytest.raises(HCardError) as caught:
        call()
    return caught.value.code


# --- NXP's example sessions, card side ---------------------------------------------------


def test_the_model_answers_nxps_first_session_byte_for_byte():
    """AN12196 Tables 14, 17, 18: authenticate with key 0, write the NDEF file in
    CommMode.Full, configure SUN. The model applies the file's CommMode, so the NDEF file is
    set to Full with write key 0 first (the crypto bytes do not depend on it)."""
    state = factory_state()
    state.files[FileNo.NDEF].settings = FileSettings(CommMode.FULL, AccessRights(0xE, 0, 0, 0), 256)
    card = Ntag424(state, random_bytes=scripted(T14_RND_B, T14_TI))
    assert card.handle(SELECT_APPLICATION) == H("9000")
    assert card.handle(T14_COMMAND_1) == T14_CHALLENGE + H("91AF")
    assert card.handle(T14_COMMAND_2) == T14_CONFIRMATION + OK
    assert card.handle(T17_COMMAND) == T17_ANSWER + OK
    assert bytes(state.files[FileNo.NDEF].content[:0x80]) == T17_DATA
    assert card.handle(T18_COMMAND) == T18_ANSWER + OK
    sdm = state.files[FileNo.NDEF].settings.sdm
    assert sdm is not None
    assert (sdm.picc_data_offset, sdm.mac_offset) == (0x20, 0x43)


def test_the_model_answers_nxps_write_of_the_proprietary_file_with_factory_settings():
    """AN12196 Tables 19 and 21: key 3, then WriteData in CommMode.Full to file 03."""
    rnd_b = ntag424._decrypt(FACTORY_KEY, ntag424.ZERO_IV, T19_CHALLENGE)
    state = factory_state()
    card = Ntag424(state, random_bytes=scripted(rnd_b, T19_TI))
    card.handle(SELECT_APPLICATION)
    assert card.handle(ntag424.authenticate_command(3)) == T19_CHALLENGE + H("91AF")
    assert card.handle(T19_COMMAND_2) == T19_CONFIRMATION + OK
    assert card.handle(T21_COMMAND) == T21_ANSWER + OK
    assert bytes(state.files[FileNo.PROPRIETARY].content[:10]) == H("0102030405060708090A")


# --- the purse, with MAC and encryption --------------------------------------------------


def test_purse_file_is_written_and_read_encrypted(field):
    session = till_session(field)
    purse = os.urandom(80)
    ntag424.write_data(field.transceive, session, FileNo.PROPRIETARY, 48, purse, CommMode.FULL)
    read = ntag424.read_data(field.transceive, session, FileNo.PROPRIETARY, 48, 80, CommMode.FULL)
    assert read == purse
    assert bytes(field.card.state.files[FileNo.PROPRIETARY].content[48:]) == purse
    assert session.cmd_counter == 2


def test_purse_file_in_mac_mode(field):
    keys = card_keys(UID)
    ntag424.select_application(field.transceive)
    master = ntag424.authenticate(field.transceive, KeyNo.APP_MASTER, keys[KeyNo.APP_MASTER])
    mac_file = FileSettings(CommMode.MAC, PURSE_FILE.access, 128)
    ntag424.change_file_settings(field.transceive, master, FileNo.PROPRIETARY, mac_file)
    session = till_session(field.tap())
    ntag424.write_data(field.transceive, session, FileNo.PROPRIETARY, 0, b"purse", CommMode.MAC)
    assert ntag424.read_data(field.transceive, session, 3, 0, 5, CommMode.MAC) == b"purse"
    settings = ntag424.get_file_settings(field.transceive, FileNo.PROPRIETARY, session)
    assert settings == mac_file


def test_purse_file_is_closed_without_the_purse_key(field):
    ntag424.select_application(field.transceive)
    assert refused(lambda: ntag424.read_data(field.transceive, None, 3, 0, 16, CommMode.PLAIN)) is (
        Code.CARD_AUTH_FAILED
    )
    assert field.transceive(H("00A4000C02E105")) == H("9000")
    assert field.transceive(H("00B0000010")) == H("6982")  # ISOReadBinary: no plain access
    assert field.transceive(H("00D6000001FF")) == H("6982")


# --- keys ----------------------------------------------------------------------------------


def test_a_wrong_key_is_refused(field):
    assert refused(lambda: till_session(field, key=os.urandom(16))) is Code.CARD_AUTH_FAILED
    wrong_site = ntag424.card_key(H("44" * 16), UID, KeyNo.PURSE)
    assert refused(lambda: till_session(field.tap(), key=wrong_site)) is Code.CARD_AUTH_FAILED


def test_factory_keys_are_detected():
    field = Field(Ntag424(factory_state(UID)))
    assert refused(lambda: till_session(field)) is Code.CARD_FACTORY_KEYS
    assert ntag424.get_key_version(field.tap().transceive, KeyNo.PURSE) == 0


def test_issuance_sets_every_key_and_version(field):
    state = field.card.state
    assert FACTORY_KEY not in state.keys
    assert state.keys == list(card_keys(UID).values())
    ntag424.select_application(field.transceive)
    assert [ntag424.get_key_version(field.transceive, n) for n in KeyNo] == [1] * 5
    session = till_session(field)
    assert ntag424.get_key_version(field.transceive, KeyNo.APP_MASTER, session) == 1
    assert ntag424.get_file_settings(field.transceive, FileNo.NDEF, session) == SUN_FILE


def test_only_the_master_key_changes_keys(field):
    session = till_session(field)
    new_key = os.urandom(16)
    assert (
        refused(lambda: ntag424.change_key(field.transceive, session, KeyNo.SPARE, new_key, 2))
        is Code.CARD_AUTH_FAILED
    )
    keys = card_keys(UID)
    ntag424.select_application(field.transceive)
    master = ntag424.authenticate(field.transceive, KeyNo.APP_MASTER, keys[KeyNo.APP_MASTER])
    wrong_old = os.urandom(16)  # the CRC over the recovered key does not match
    assert (
        refused(
            lambda: ntag424.change_key(field.transceive, master, KeyNo.SPARE, new_key, 2, wrong_old)
        )
        is Code.CARD_MAC_INVALID
    )
    assert field.card.state.keys[KeyNo.SPARE] == keys[KeyNo.SPARE]


# --- replays and MACs ------------------------------------------------------------------


def recording(field: Field) -> tuple[Callable[[bytes], bytes], list[bytes], list[bytes]]:
    """A transceive that records what went to the card and what came back."""
    sent: list[bytes] = []
    answers: list[bytes] = []

    def transceive(apdu: bytes) -> bytes:
        sent.append(apdu)
        answers.append(field.transceive(apdu))
        return answers[-1]

    return transceive, sent, answers


def test_a_replayed_card_answer_is_refused(field):
    """An emulator that plays back a real card's recorded authentication: our fresh RndA
    does not come back (the reader refuses with CARD_AUTH_REPLAYED)."""
    ntag424.select_application(field.transceive)
    transceive, _sent, answers = recording(field)
    ntag424.authenticate(transceive, KeyNo.PURSE, card_keys(UID)[KeyNo.PURSE])
    playback = iter(answers)
    key = card_keys(UID)[KeyNo.PURSE]
    code = refused(lambda: ntag424.authenticate(lambda _apdu: next(playback), KeyNo.PURSE, key))
    assert code is Code.CARD_AUTH_REPLAYED


def test_a_replayed_reader_proof_is_refused_by_the_card(field):
    """A recorded reader's second part, played to the card: its RndB is new every time."""
    ntag424.select_application(field.transceive)
    transceive, sent, _answers = recording(field)
    ntag424.authenticate(transceive, KeyNo.PURSE, card_keys(UID)[KeyNo.PURSE])
    assert field.transceive(sent[0])[-2:] == H("91AF")
    assert field.transceive(sent[1]) == H("91AE")


def test_a_command_with_a_bad_mac_is_refused_and_ends_the_session(field):
    session = till_session(field)
    command = bytearray(
        session.wrap(ntag424.Ins.READ_DATA, H("03000000100000"), b"", CommMode.FULL)
    )
    command[-2] ^= 0x01  # the last byte of the MAC
    assert field.transceive(bytes(command)) == H("911E")
    assert field.card.authenticated_key is None
    code = refused(lambda: ntag424.read_data(field.transceive, session, 3, 0, 16, CommMode.FULL))
    assert code is Code.CARD_AUTH_FAILED  # no session any more: permission denied


@pytest.mark.parametrize("at", [0, -3], ids=["data", "mac"])
def test_an_answer_with_a_bad_mac_is_refused(field, at):
    session = till_session(field)

    def tampered(apdu: bytes) -> bytes:
        answer = bytearray(field.transceive(apdu))
        answer[at] ^= 0x01
        return bytes(answer)

    code = refused(lambda: ntag424.read_data(tampered, session, 3, 0, 16, CommMode.FULL))
    assert code is Code.CARD_MAC_INVALID


# --- SUN: the link of every tap ----------------------------------------------------------


def phone_tap(field: Field) -> str:
    """What a phone does when the card comes near: the URL it opens."""
    return read_url(field.tap().transceive)


def read_url(transceive: Callable[[bytes], bytes]) -> str:
    """Select the application and the NDEF file, read NLEN, then the message."""
    ntag424.select_application(transceive)
    assert transceive(H("00A4000C02E104")) == H("9000")
    nlen = transceive(H("00B0000002"))
    assert nlen[-2:] == H("9000")
    size = int.from_bytes(nlen[:2], "big")
    record = transceive(H("00B00002") + bytes([size]))
    assert record[-2:] == H("9000")
    assert record[:4] == bytes([0xD1, 0x01, size - 4, 0x55])
    return "https://" + record[5:-2].decode("ascii")


def verify(url: str, last_counter: int | None = None) -> ntag424.PiccData:
    query = parse_qs(urlsplit(url).query)
    meta_key = ntag424.site_key(MASTER_SUN, KeyNo.SUN_META_READ)

    def file_key(uid: bytes) -> bytes:
        return ntag424.card_key(MASTER_SUN, uid, KeyNo.SUN_FILE_READ)

    return ntag424.verify_sun(query["p"][0], query["m"][0], meta_key, file_key, b"", last_counter)


def test_every_tap_gives_a_new_link_that_verifies(field):
    first, second = phone_tap(field), phone_tap(field)
    assert first.startswith("https://" + URL_HEAD)
    assert first != second
    assert verify(first) == ntag424.PiccData(UID, 1)  # two reads in one tap: counted once
    assert verify(second, last_counter=1) == ntag424.PiccData(UID, 2)
    assert field.transceive(H("00A4000C023F00")) == H("9000")  # the MF: still the same tap
    assert field.transceive(H("00A4000C02E110")) == H("9000")  # the application by its id
    assert read_url(field.transceive) == second


def test_an_old_link_is_refused(field):
    old, new = phone_tap(field), phone_tap(field)
    last = verify(new).read_counter
    assert refused(lambda: verify(old, last_counter=last)) is Code.SUN_STALE
    assert refused(lambda: verify(new, last_counter=last)) is Code.SUN_STALE  # the same again


def test_an_altered_link_is_refused(field):
    url = phone_tap(field)
    digit = url[-1]
    altered = url[:-1] + ("0" if digit != "0" else "1")
    assert refused(lambda: verify(altered)) is Code.SUN_INVALID
    other_card = Field(Ntag424(factory_state(H("04010203040506"))))
    personalise(other_card)
    mixed = url.split("&m=")[0] + "&m=" + phone_tap(other_card).split("&m=")[1]
    assert refused(lambda: verify(mixed)) is Code.SUN_INVALID


def test_the_till_reads_the_counter_and_refuses_one_that_went_backwards(field):
    """A card saved and restored to an earlier state (an emulator replaying a real card's
    memory cannot have its keys, but a counter is the check that needs none of them)."""
    saved: CardState = copy.deepcopy(field.card.state)
    last_seen = 0
    for _tap in range(3):
        session = till_session(field.tap())
        ntag424.read_data(field.transceive, session, FileNo.NDEF, 0, 2, CommMode.PLAIN)
        counter = ntag424.get_file_counters(field.transceive, session, FileNo.NDEF)
        ntag424.require_newer_counter(counter, last_seen)
        last_seen = counter
    assert last_seen == 3
    restored = Field(Ntag424(saved))
    session = till_session(restored)
    ntag424.read_data(restored.transceive, session, FileNo.NDEF, 0, 2, CommMode.PLAIN)
    counter = ntag424.get_file_counters(restored.transceive, session, FileNo.NDEF)
    assert refused(lambda: ntag424.require_newer_counter(counter, last_seen)) is (
        Code.CARD_COUNTER_BACKWARDS
    )


def change_ndef_settings(field: Field, settings: FileSettings) -> None:
    """ChangeFileSettings of file 02 in a key-0 session, as issuance sends it."""
    ntag424.select_application(field.transceive)
    master = ntag424.authenticate(
        field.transceive, KeyNo.APP_MASTER, card_keys(UID)[KeyNo.APP_MASTER]
    )
    ntag424.change_file_settings(field.transceive, master, FileNo.NDEF, settings)


def test_enabling_sdm_resets_the_read_counter(field):
    """NT4H2421Gx 9.3.1: "The SDMReadCtr is reset to 000000h when enabling SDM with
    ChangeFileSettings", also when it was on already; disabling it leaves the counter."""
    for _tap in range(3):
        phone_tap(field)
    assert field.card.state.sdm_read_counter == 3
    change_ndef_settings(field.tap(), SUN_FILE)  # the same settings again
    assert field.card.state.sdm_read_counter == 0
    # The next read, in the same power-up, counts from 0: the link says 1, and verifies.
    assert verify(read_url(field.transceive)) == ntag424.PiccData(UID, 1)
    assert verify(phone_tap(field)) == ntag424.PiccData(UID, 2)
    plain = FileSettings(SUN_FILE.comm_mode, SUN_FILE.access, SUN_FILE.size)
    change_ndef_settings(field.tap(), plain)
    assert field.card.state.sdm_read_counter == 2
    ntag424.change_file_settings(  # a file without SDM: no counter to reset
        field.transceive,
        ntag424.authenticate(field.transceive, KeyNo.APP_MASTER, card_keys(UID)[0]),
        FileNo.PROPRIETARY,
        PURSE_FILE,
    )
    assert field.card.state.sdm_read_counter == 2
    change_ndef_settings(field.tap(), SUN_FILE)
    assert field.card.state.sdm_read_counter == 0


def test_key_versions_are_read_without_authentication():
    """GetKeyVersion needs no session (NT4H2421Gx 10.6.2 has no authentication error), so
    issuance reads all five before it knows which key 0 to use; a version another system
    gave (here 10h) is told apart from ours and the factory's."""
    field = Field(Ntag424(factory_state(UID)))
    ntag424.select_application(field.transceive)
    master = ntag424.authenticate(field.transceive, KeyNo.APP_MASTER, FACTORY_KEY)
    ntag424.change_key(field.transceive, master, KeyNo.APP_MASTER, os.urandom(16), 0x10)
    ntag424.select_application(field.tap().transceive)
    assert [ntag424.get_key_version(field.transceive, n) for n in KeyNo] == [0x10, 0, 0, 0, 0]
    assert (
        refused(lambda: ntag424.authenticate(field.transceive, KeyNo.APP_MASTER, FACTORY_KEY))
        is Code.CARD_AUTH_FAILED
    )


# --- tearing ---------------------------------------------------------------------------

OLD_PURSE, NEW_PURSE = b"\x01" * 80, b"\x02" * 80
WRITE_COMMANDS = 4  # select, authenticate (2), write


def write_purse(field: Field) -> None:
    session = till_session(field)
    ntag424.write_data(field.transceive, session, FileNo.PROPRIETARY, 0, NEW_PURSE, CommMode.FULL)


def read_purse(field: Field) -> bytes:
    session = till_session(field.tap())
    return ntag424.read_data(field.transceive, session, FileNo.PROPRIETARY, 0, 80, CommMode.FULL)


@pytest.mark.parametrize("commit", [False, True], ids=["lost", "done-answer-lost"])
@pytest.mark.parametrize("after", range(WRITE_COMMANDS + 1))
def test_a_write_torn_after_any_command_leaves_old_or_new(field, after, commit):
    field.card.state.files[FileNo.PROPRIETARY].content[:80] = OLD_PURSE
    field.tear(after, commit)
    if after < WRITE_COMMANDS:
        with pytest.raises(CardGoneError):
            write_purse(field)
    else:
        write_purse(field)
    written = after == WRITE_COMMANDS or (after == WRITE_COMMANDS - 1 and commit)
    assert read_purse(field) == (NEW_PURSE if written else OLD_PURSE)
    assert field.card.state.sdm_read_counter == 0  # the purse has nothing to do with SUN


# --- chip information and plain refusals -------------------------------------------------


def test_version_and_originality_signature():
    field = Field(Ntag424(factory_state(UID)))
    hardware, software, production = ntag424.get_version(field.transceive)
    assert hardware[:3] == software[:3] == H("040402")  # NXP, NTAG, 50 pF
    assert production[:7] == UID
    signature = ntag424.read_signature(field.transceive)
    assert ntag424.originality_ok(UID, signature, TEST_ORIGINALITY_PUBLIC_KEY_HEX)
    assert not ntag424.originality_ok(UID, signature)  # never under NXP's key


@pytest.mark.parametrize(
    ("apdu", "answer"),
    [
        ("90AD0000070300000010000000", "91F0"),  # ReadData before selecting the application
        ("9071000002000000", "919D"),  # authentication before selecting it
        ("90AA000000", "911C"),  # no such command
        ("80A4040007D276000085010100", "6E00"),  # no such class
        ("00A4000C02E104", "6A82"),  # a file of the application not selected
        ("90AF000000", "91CA"),  # a continuation nothing waits for
        ("903C00000101", "919E"),  # Read_Sig of another address
    ],
)
def test_refusals_outside_the_application(apdu, answer):
    assert Ntag424(factory_state(UID)).handle(H(apdu)) == H(answer)


def test_refusals_in_the_application():
    card = Ntag424(factory_state(UID))
    assert card.handle(SELECT_APPLICATION) == H("9000")
    assert card.handle(H("9071000002050000")) == H("9140")  # key 5
    assert card.handle(H("90AD000007090000000000")) == H("917E")  # Lc 7, 6 bytes follow
    assert card.handle(H("90AD0000070300000000000000")) == H("919D")  # file 03 needs key 2
    assert card.handle(H("90AD00000702000100020000" + "00")) == H("91BE")  # beyond the file
    assert card.handle(H("908D00000802000000010000FF00")) == OK  # the new NDEF file: free
    assert card.handle(H("00A4000C02E104")) == H("9000")
    assert card.handle(H("00B0000001")) == H("FF9000")
    assert card.handle(H("00B0010000")) == H("6B00")  # offset 256: past the end
    assert card.handle(H("00B0820002")) == H("FF00") + H("9000")  # by short file id 02
    assert card.handle(H("00B0830002")) == H("6982")  # file 03: no plain access
