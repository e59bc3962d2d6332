"""A till's and the office's side of an NTAG 424 DNA, against the chip model.

`Ntag424Session` drives `Ntag424(state).handle` directly (no reader in between): issuance
and a tap read back; the purse written into alternating split slots; a card pulled away
after any command of a tap or of an issuance; and every refusal a cashier can meet (wrong
key, factory keys, a counter that went backwards, a copy, a MAC that does not verify, a
replayed authentication), plus the SUN link a tap leaves in the NDEF file.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from hcard import cardnumber, keys, ntag424, signed
from hcard.errors import Code, HCardError
from hcard.ntag424 import (
    ACCESS_FREE,
    FACTORY_KEY,
    CommMode,
    FileNo,
    Ins,
    KeyNo,
    MasterKind,
    SdmOption,
)
from hcard.terminal.card import layout, layout424
from hcard.terminal.card.model import CardKeys, Purse, TagIOError
from hcard.terminal.card.ntag424_cards import issued_state, with_purse
from hcard.terminal.card.ntag424_model import (
    HARDWARE_VERSION,
    TEST_ORIGINALITY_KEY,
    TEST_ORIGINALITY_PUBLIC_KEY_HEX,
    CardState,
    Ntag424,
    factory_state,
)
from hcard.terminal.card.ntag424_session import (
    Ntag424Secrets,
    Ntag424Session,
    is_ntag424_version,
    purse_key,
)

H = bytes.fromhex
UID = H("04A1B2C3D4E5F6")
OTHER_UID = H("04010203040506")
NUMBER = cardnumber.from_serial(424)
OTHER_NUMBER = cardnumber.from_serial(425)
SUN_BASE = "https://karte.hattingen.test"
SECRETS = Ntag424Secrets(
    write_secret=b"hcard-test-card-write-secret-01",
    sun_secret=b"hcard-test-sun-secret-000000001",
    admin_secret=b"hcard-test-admin-secret-0000001",
)
OTHER_SITE = Ntag424Secrets(b"another-town-write-secret-00001", b"s" * 16, b"a" * 16)
ISSUER = keys.generate()
TERMINALS = {1: keys.generate(), 2: keys.generate()}
KEYS = CardKeys(
    issuer_public=ISSUER.public_key(),
    terminal_keys={tid: key.public_key() for tid, key in TERMINALS.items()},
    write_secret=SECRETS.write_secret,
    originality_424_key_hex=TEST_ORIGINALITY_PUBLIC_KEY_HEX,
)
OLD, NEW = Purse(5000, 1, 1), Purse(4250, 2, 2)
READ_COMMANDS = 7  # select, ReadData 02, Read_Sig, authenticate (2), ReadData 03, counters
WRITE_COMMANDS = 2  # WriteData head, WriteData signature


class Field:
    """A card in a reader's field that can leave after `after` more commands; with `commit`
    the command it leaves during still takes effect, its answer lost (as the emulator tears)."""

    def __init__(self, state: CardState) -> None:
        self.card = Ntag424(state)
        self.commands = 0
        self.present = True
        self.tear_at: int | None = None
        self.commit = False

    @property
    def state(self) -> CardState:
        return self.card.state

    def transceive(self, apdu: bytes) -> bytes:
        if not self.present:
            raise TagIOError("card gone")
        self.commands += 1
        if self.tear_at is not None and self.commands > self.tear_at:
            if self.commit:
                self.card.handle(apdu)
            self.present = False
            raise TagIOError("card left the field")
        return self.card.handle(apdu)

    def tear(self, after: int, commit: bool = False) -> None:
        self.tear_at, self.commit = self.commands + after, commit

    def tap(self, transceive: Callable[[bytes], bytes] | None = None) -> Ntag424Session:
        """The card put (back) on the reader: power up, a new session."""
        self.card.power_up()
        self.present, self.tear_at = True, None
        return Ntag424Session(self.state.uid, transceive or self.transceive, lambda: self.present)


def issued(uid: bytes = UID, number: str = NUMBER, secrets: Ntag424Secrets = SECRETS) -> CardState:
    return issued_state(factory_state(uid), number, ISSUER, SUN_BASE, secrets)


def keys_with(**changes: object) -> CardKeys:
    return dataclasses.replace(KEYS, **changes)


def refused(call: Callable[[], object]) -> HCardError:
    with pytest.raises(HCardError) as caught:
        call()
    return caught.value


def sun_keys() -> tuple[bytes, Callable[[bytes], bytes]]:
    master = ntag424.master_key(SECRETS.sun_secret, MasterKind.SUN)
    return ntag424.site_key(master, KeyNo.SUN_META_READ), lambda uid: ntag424.card_key(
        master, uid, KeyNo.SUN_FILE_READ
    )


def verify_link(url: str, last_counter: int | None = None) -> ntag424.PiccData:
    query = parse_qs(urlsplit(url).query)
    meta_key, file_key = sun_keys()
    return ntag424.verify_sun(query["p"][0], query["m"][0], meta_key, file_key, b"", last_counter)


# --- issuance and a tap ------------------------------------------------------------------


def test_issued_card_reads_back():
    field = Field(issued())
    view = field.tap().read(KEYS)
    assert (view.card_number, view.uid, view.chip) == (NUMBER, UID, "NTAG424DNA")
    assert view.purse is None
    assert view.counter == 0
    assert view.purse_code is None
    assert view.tap_counter == 1
    assert view.url is not None
    assert view.url.startswith(SUN_BASE + "/k?p=")
    assert field.commands == READ_COMMANDS


def test_issuance_sets_keys_files_and_settings_as_documented():
    state = issued()
    assert state.keys == list(SECRETS.card_keys(UID).keys)
    assert state.key_versions == [layout424.KEY_VERSION] * 5
    ndef, purse = state.files[FileNo.NDEF].settings, state.files[FileNo.PROPRIETARY].settings
    assert ndef.comm_mode is CommMode.PLAIN
    access = ndef.access
    assert (access.read, access.write, access.read_write, access.change) == (ACCESS_FREE, 1, 0, 0)
    assert ndef.sdm is not None
    assert ndef.sdm.options == SdmOption.UID | SdmOption.READ_COUNTER | SdmOption.ASCII
    sdm = ndef.sdm
    assert (sdm.meta_read, sdm.file_read, sdm.counter_read) == (2, 3, 1)
    assert sdm.mac_input_offset == sdm.mac_offset  # the MAC's input is empty
    assert purse.comm_mode is CommMode.FULL
    access = purse.access
    assert (access.read, access.write, access.read_write, access.change) == (1, 1, 0, 0)
    cc = state.files[FileNo.CC].content
    assert cc[layout424.CC_NDEF_WRITE_ACCESS_OFFSET] == 0xFF
    content = state.files[FileNo.NDEF].content
    assert content[224:] == bytes(32)
    assert state.files[FileNo.PROPRIETARY].content == bytes(128)
    # Offsets as the document computes them for a 79-byte link record.
    link = layout424.sun_link_template(SUN_BASE).encode()
    assert content[sdm.picc_data_offset : sdm.picc_data_offset + 32] == b"0" * 32
    assert bytes(content[sdm.mac_offset - 3 : sdm.mac_offset + 16]) == b"&m=" + b"0" * 16
    assert link.endswith(b"&m=" + b"0" * 16)


def test_issued_state_leaves_its_input_alone():
    blank = factory_state(UID)
    before = copy.deepcopy(blank)
    issued_state(blank, NUMBER, ISSUER, SUN_BASE, SECRETS)
    assert blank == before


def test_a_phone_reads_the_link_but_cannot_write_the_card():
    field = Field(issued())
    field.tap()
    assert field.transceive(H("00A4040C07D276000085010100")) == H("9000")
    assert field.transceive(H("00A4000C02E104")) == H("9000")
    assert field.transceive(H("00D6000002") + H("0000")) == H("6982")
    assert field.transceive(H("00B0000002"))[-2:] == H("9000")


def test_the_link_of_a_tap_verifies_and_an_old_one_is_stale():
    field = Field(issued())
    first = field.tap().read(KEYS)
    second = field.tap().read(KEYS)
    assert first.url is not None
    assert second.url is not None
    assert first.url != second.url
    assert verify_link(first.url) == ntag424.PiccData(UID, 1)
    assert verify_link(second.url, last_counter=1) == ntag424.PiccData(UID, 2)
    stale = refused(lambda: verify_link(first.url or "", last_counter=2))
    assert stale.code is Code.SUN_STALE


def test_format_new_card_points_to_issue():
    session = Field(factory_state(UID)).tap()
    with pytest.raises(NotImplementedError, match="issue"):
        session.format_new_card(NUMBER, bytes(64), SUN_BASE + "/c/" + NUMBER, b"x" * 16)


def test_issue_refuses_bad_input():
    session = Field(factory_state(UID)).tap()
    with pytest.raises(ValueError, match="Card number"):
        session.issue("1234", bytes(64), SUN_BASE, SECRETS)
    with pytest.raises(ValueError, match="64 bytes"):
        session.issue(NUMBER, bytes(63), SUN_BASE, SECRETS)
    with pytest.raises(ValueError, match="https"):
        session.issue(NUMBER, bytes(64), "http://karte.hattingen.test", SECRETS)


def test_a_card_issued_again_is_a_fresh_card():
    state = with_purse(issued(), OLD, TERMINALS[1], KEYS)
    again = issued_state(state, OTHER_NUMBER, ISSUER, SUN_BASE, SECRETS)
    view = Field(again).tap().read(KEYS)
    assert (view.card_number, view.purse, view.counter) == (OTHER_NUMBER, None, 0)
    assert view.purse_code is None


# --- the purse ---------------------------------------------------------------------------


def slot_counters(state: CardState) -> list[int]:
    content = state.files[FileNo.NDEF].content
    return [int.from_bytes(content[at + 1 : at + 5], "big") for at in layout424.SLOT_HEAD_OFFSETS]


def test_writes_alternate_slots_and_the_newest_wins():
    field = Field(with_purse(issued(), OLD, TERMINALS[1], KEYS))
    assert slot_counters(field.state) == [1, 0]
    session = field.tap()
    assert session.read(KEYS).purse == OLD
    before = field.commands
    session.write_purse(NEW, TERMINALS[2])
    assert field.commands - before == WRITE_COMMANDS
    assert slot_counters(field.state) == [1, 2]
    session.write_purse(Purse(3000, 3, 1), TERMINALS[1])  # a second write in the same tap
    assert slot_counters(field.state) == [3, 2]
    view = field.tap().read(KEYS)
    assert (view.purse, view.counter, view.next_counter) == (Purse(3000, 3, 1), 3, 4)
    # The signature is in file 03: a slot is exactly layout.encode_slot's 80 bytes.
    raw = layout424.raw_slots(
        bytes(field.state.files[FileNo.NDEF].content),
        bytes(field.state.files[FileNo.PROPRIETARY].content),
    )[0]
    slot = layout.decode_slot(raw, UID, NUMBER, dict(KEYS.terminal_keys))
    assert slot == layout.Slot(layout.SlotStatus.VALID, Purse(3000, 3, 1))


def test_write_needs_a_read_and_a_fresh_counter():
    session = Field(with_purse(issued(), OLD, TERMINALS[1], KEYS)).tap()
    with pytest.raises(RuntimeError):
        session.write_purse(NEW, TERMINALS[2])
    session.read(KEYS)
    with pytest.raises(ValueError, match="counter"):
        session.write_purse(Purse(1, 1, 1), TERMINALS[1])
    session.write_purse(Purse(1, 5, 1), TERMINALS[1])  # skipping counters is allowed


def test_a_purse_by_an_unknown_terminal_is_not_trusted():
    stranger = keys.generate()
    keys_knowing_it = keys_with(terminal_keys={9: stranger.public_key()})
    state = with_purse(issued(), Purse(100, 1, 9), stranger, keys_knowing_it)
    view = Field(state).tap().read(KEYS)
    assert view.purse is None
    assert view.purse_code is Code.PURSE_INVALID
    assert view.counter == 1


@pytest.mark.parametrize("commit", [False, True], ids=["lost", "done-answer-lost"])
@pytest.mark.parametrize("after", range(READ_COMMANDS + WRITE_COMMANDS + 1))
def test_a_tap_torn_after_any_command_leaves_the_old_or_the_new_purse(after, commit):
    field = Field(with_purse(issued(), OLD, TERMINALS[1], KEYS))
    session = field.tap()
    field.tear(after, commit)

    def pay() -> None:
        session.read(KEYS)
        session.write_purse(NEW, TERMINALS[2])

    if after < READ_COMMANDS + WRITE_COMMANDS:
        error = refused(pay)
        assert error.code is Code.CARD_UNREADABLE
        if after >= READ_COMMANDS:
            assert error.details["written"] == "unknown"
    else:
        pay()
    view = field.tap().read(KEYS)
    done = after == READ_COMMANDS + WRITE_COMMANDS or (
        after == READ_COMMANDS + WRITE_COMMANDS - 1 and commit
    )
    assert view.purse == (NEW if done else OLD)
    assert view.purse_code is None
    # and the card takes the next payment into the right slot
    session = field.tap()
    next_counter = session.read(KEYS).next_counter
    session.write_purse(Purse(1000, next_counter, 1), TERMINALS[1])
    assert field.tap().read(KEYS).purse == Purse(1000, next_counter, 1)


def issuance_commands() -> int:
    field = Field(factory_state(UID))
    field.tap().issue(NUMBER, sign(UID, NUMBER), SUN_BASE, SECRETS)
    return field.commands


def sign(uid: bytes, number: str) -> bytes:
    return signed.sign_card(ISSUER, number, uid)


ISSUANCE_COMMANDS = issuance_commands()


@pytest.mark.parametrize("commit", [False, True], ids=["lost", "done-answer-lost"])
@pytest.mark.parametrize("after", range(ISSUANCE_COMMANDS))
def test_an_issuance_torn_after_any_command_can_be_run_again(after, commit):
    field = Field(factory_state(UID))
    session = field.tap()
    field.tear(after, commit)
    with pytest.raises(HCardError) as caught:
        session.issue(NUMBER, sign(UID, NUMBER), SUN_BASE, SECRETS)
    assert caught.value.code is Code.CARD_UNREADABLE
    finished = after == ISSUANCE_COMMANDS - 1 and commit
    sun_on = field.state.files[FileNo.NDEF].settings.sdm is not None
    if not finished:
        # Key 1 is changed last: a till never accepts a card whose issuance was torn.
        assert refused(lambda: field.tap().read(KEYS)).code is Code.CARD_FACTORY_KEYS
    field.tap().require_issuable(SECRETS)  # the office takes it for blank, and it is ours
    field.tap().issue(NUMBER, sign(UID, NUMBER), SUN_BASE, SECRETS)
    assert field.state.keys == list(SECRETS.card_keys(UID).keys)
    # Byte for byte a card issued in one go, the counter too: SUN's settings are written
    # once, so the counter is 0 then, plus the till's read above if they were on before it.
    taps_since_sun = 1 if sun_on and not finished else 0
    assert field.state == issued_state_with(field.state.signature, taps_since_sun)
    view = field.tap().read(KEYS)
    assert (view.card_number, view.purse, view.purse_code) == (NUMBER, None, None)
    assert view.tap_counter == taps_since_sun + 1


def issued_state_with(signature: bytes, sdm_read_counter: int) -> CardState:
    """A card issued in one go, with `signature` (ECDSA: another one for each chip made)
    and the tap counter it has after `sdm_read_counter` reads."""
    reference = issued()
    assert reference.sdm_read_counter == 0
    reference.sdm_read_counter = sdm_read_counter
    reference.signature = signature
    return reference


def test_an_issued_card_issued_again_keeps_its_tap_counter():
    """Its file 02 settings are the same: no ChangeFileSettings, which would reset the
    counter below what tills and the server saw (module docstring of ntag424_session)."""
    field = Field(with_purse(issued(), OLD, TERMINALS[1], KEYS))
    for _tap in range(3):
        field.tap().read(KEYS)
    assert field.state.sdm_read_counter == 4
    before = field.commands
    field.tap().issue(NUMBER, sign(UID, NUMBER), SUN_BASE, SECRETS)
    # No ChangeKey (5) and so no new key-0 session (2), no ChangeFileSettings of file 02.
    assert field.commands - before == ISSUANCE_COMMANDS - 5 - 2 - 1
    assert field.state == issued_state_with(field.state.signature, 4)
    till = keys_with(last_tap_counter={UID: 4}.get)
    view = field.tap().read(till)
    assert (view.card_number, view.purse, view.tap_counter) == (NUMBER, None, 5)
    assert verify_link(view.url or "", last_counter=4) == ntag424.PiccData(UID, 5)


def test_a_card_issued_again_with_other_settings_starts_its_counter_at_0():
    """Another balance-page host moves the SUN offsets: ChangeFileSettings is sent and the
    chip resets the counter, so tills that saw the card refuse it until it passes them."""
    field = Field(issued())
    for _tap in range(3):
        field.tap().read(KEYS)
    field.tap().issue(NUMBER, sign(UID, NUMBER), "https://karte.hattingen.example", SECRETS)
    assert field.state.sdm_read_counter == 0
    till = keys_with(last_tap_counter={UID: 3}.get)
    assert refused(lambda: field.tap().read(till)).code is Code.CARD_COUNTER_BACKWARDS


# --- before issuance: is it a 424, and can issue complete it? ----------------------------


def test_a_424_is_told_by_its_version():
    assert is_ntag424_version(HARDWARE_VERSION)
    field = Field(factory_state(UID))
    before = copy.deepcopy(field.state)
    field.tap().require_ntag424()
    assert field.commands == 3  # GetVersion's three frames
    assert field.state == before


@pytest.mark.parametrize(
    "hardware",
    [
        "04010133001A05",  # MIFARE DESFire EV3: type 01
        "04040210001105",  # NTAG 413 DNA: major version 10
        "05040230001105",  # another vendor
        "0404",  # too short
    ],
)
def test_an_iso_dep_tag_that_is_no_424_is_refused_by_its_version(hardware):
    field = Field(factory_state(UID))

    def other_chip(apdu: bytes) -> bytes:
        answer = field.transceive(apdu)
        return H(hardware) + answer[-2:] if apdu[:2] == H("9060") else answer

    error = refused(field.tap(other_chip).require_ntag424)
    assert (error.code, error.details["hardware"]) == (Code.CARD_NOT_GENUINE, hardware.lower())


@pytest.mark.parametrize("status", ["6E00", "6D00", "911C"], ids=["class", "ins", "native"])
def test_a_tag_that_refuses_get_version_is_refused(status):
    """A bank card or a phone: CLA 90 is not its language."""
    session = Ntag424Session(UID, lambda _apdu: H(status), lambda: True)
    error = refused(session.require_ntag424)
    assert (error.code, error.details["status"]) == (Code.CARD_NOT_GENUINE, status)


def test_a_tag_that_does_not_answer_get_version_is_unreadable():
    field = Field(factory_state(UID))
    session = field.tap()
    field.tear(1)
    assert refused(session.require_ntag424).code is Code.CARD_UNREADABLE


def changed_by_another_system(key_number: KeyNo, version: int, state: CardState) -> CardState:
    """`state` after another system changed one key (to a key we do not have) to `version`,
    in a session with its key 0 (the factory's while key 0 is not the one changed)."""
    field = Field(copy.deepcopy(state))
    field.tap()
    exchange = field.transceive
    ntag424.select_application(exchange)
    master = ntag424.authenticate(exchange, KeyNo.APP_MASTER, FACTORY_KEY)
    ntag424.change_key(exchange, master, key_number, H("A5" * 16), version)
    return field.state


@pytest.mark.parametrize(
    ("key_number", "version"),
    [
        (KeyNo.APP_MASTER, 0x10),  # a version of its own
        (KeyNo.APP_MASTER, 0x00),  # changed, the factory's version kept
        (KeyNo.APP_MASTER, layout424.KEY_VERSION),  # our version, not our key
        (KeyNo.SUN_FILE_READ, 0x00),  # key 0 left alone: ChangeKey 3 would fail
        (KeyNo.SUN_META_READ, layout424.KEY_VERSION),  # issue would keep it
        (KeyNo.SPARE, 0x10),
    ],
)
def test_a_424_of_another_system_with_the_factory_key_1_is_not_issuable(key_number, version):
    """Its key 1 is the factory's, so a till's checks take it for blank; `issue` could not
    complete it (it would fail on every attempt), so the office refuses it before binding."""
    state = changed_by_another_system(key_number, version, factory_state(UID))
    field = Field(state)
    assert refused(lambda: field.tap().read(KEYS)).code is Code.CARD_FACTORY_KEYS
    error = refused(lambda: field.tap().require_issuable(SECRETS))
    assert error.code is Code.CARD_AUTH_FAILED
    assert error.details["key_number"] == key_number
    if version not in (0, layout424.KEY_VERSION):
        assert error.details["key_version"] == version


def test_a_new_chip_and_a_card_of_ours_are_issuable():
    for state in (factory_state(UID), issued()):
        field = Field(state)
        before = copy.deepcopy(state)
        field.tap().require_issuable(SECRETS)
        assert field.commands == 16  # select, 5 versions, 5 authentications (2 each)
        assert field.state == before
    assert (
        refused(lambda: Field(issued(secrets=OTHER_SITE)).tap().require_issuable(SECRETS)).code
        is Code.CARD_AUTH_FAILED
    )


# --- refusals ------------------------------------------------------------------------------


def test_a_card_of_another_site_is_refused():
    field = Field(issued(secrets=OTHER_SITE))
    assert refused(lambda: field.tap().read(KEYS)).code is Code.CARD_AUTH_FAILED


def test_a_card_with_factory_keys_is_refused():
    field = Field(factory_state(UID))
    assert refused(lambda: field.tap().read(KEYS)).code is Code.CARD_FACTORY_KEYS


def test_a_chip_not_made_by_nxp_is_refused():
    state = issued()
    state.signature = bytes(56)
    assert refused(lambda: Field(state).tap().read(KEYS)).code is Code.CARD_NOT_GENUINE


def test_a_counter_that_went_backwards_is_refused():
    field = Field(issued())
    saved = copy.deepcopy(field.state)
    for _tap in range(3):
        field.tap().read(KEYS)
    seen = {UID: field.state.sdm_read_counter}  # 3
    till = keys_with(last_tap_counter=seen.get)
    assert field.tap().read(till).tap_counter == 4
    restored = Field(saved)  # the card's state of before, played again
    error = refused(lambda: restored.tap().read(till))
    assert error.code is Code.CARD_COUNTER_BACKWARDS
    assert error.details == {"read_counter": 1, "last_seen": 3}


def copy_files(source: CardState, target: CardState) -> CardState:
    copied = copy.deepcopy(target)
    copied.files = copy.deepcopy(source.files)
    copied.sdm_read_counter = source.sdm_read_counter
    return copied


def test_a_copy_is_refused():
    original = with_purse(issued(), OLD, TERMINALS[1], KEYS)
    # its files on a blank chip: no key 1
    blank = copy_files(original, factory_state(OTHER_UID))
    assert refused(lambda: Field(blank).tap().read(KEYS)).code is Code.CARD_FACTORY_KEYS
    # its files on a card we issued (keys ours): the issuer record is for another UID
    ours = copy_files(original, issued(OTHER_UID, OTHER_NUMBER))
    assert refused(lambda: Field(ours).tap().read(KEYS)).code is Code.CARD_COPIED
    # everything, keys too, under another UID: keys are per UID
    cloned = copy.deepcopy(original)
    cloned.uid = OTHER_UID
    cloned.signature = ntag424.originality_signature(OTHER_UID, TEST_ORIGINALITY_KEY)
    assert refused(lambda: Field(cloned).tap().read(KEYS)).code is Code.CARD_AUTH_FAILED
    # an emulator with the original's UID and signature but the keys of another site
    faked = issued(secrets=OTHER_SITE)
    faked.files = copy.deepcopy(original.files)
    assert refused(lambda: Field(faked).tap().read(KEYS)).code is Code.CARD_AUTH_FAILED


def flipping(field: Field, command: int, at: int) -> Callable[[bytes], bytes]:
    """A transceive that flips byte `at` of the answer to the `command`-th command (from 1)."""
    count = 0

    def transceive(apdu: bytes) -> bytes:
        nonlocal count
        count += 1
        answer = bytearray(field.transceive(apdu))
        if count == command:
            answer[at] ^= 0x01
        return bytes(answer)

    return transceive


MACED_READ_ANSWERS = {"file 03": 6, "tap counter": 7}


@pytest.mark.parametrize("at", [0, -3], ids=["data", "mac"])
@pytest.mark.parametrize("command", MACED_READ_ANSWERS.values(), ids=MACED_READ_ANSWERS.keys())
def test_a_read_answer_that_does_not_verify_is_refused(command, at):
    field = Field(issued())
    session = field.tap(flipping(field, command, at))
    assert refused(lambda: session.read(KEYS)).code is Code.CARD_MAC_INVALID


@pytest.mark.parametrize("at", [0, -3], ids=["data", "mac"])
def test_a_write_answer_that_does_not_verify_is_refused(at):
    """The signature's WriteData answers with a MAC only (no data): both bytes are MAC."""
    field = Field(with_purse(issued(), OLD, TERMINALS[1], KEYS))
    session = field.tap(flipping(field, READ_COMMANDS + WRITE_COMMANDS, at))
    session.read(KEYS)
    error = refused(lambda: session.write_purse(NEW, TERMINALS[2]))
    assert error.code is Code.CARD_MAC_INVALID
    assert error.details["written"] == "unknown"
    assert field.tap().read(KEYS).purse == NEW  # the card did write: the next read says so


def test_a_replayed_authentication_is_refused():
    """An emulator that plays back a real card's answers to an earlier authentication."""
    field = Field(issued())
    recorded: list[bytes] = []

    def recording(apdu: bytes) -> bytes:
        answer = field.transceive(apdu)
        if apdu[1] in (Ins.AUTHENTICATE_EV2_FIRST, Ins.ADDITIONAL_FRAME):
            recorded.append(answer)
        return answer

    field.tap(recording).read(KEYS)
    playback = iter(recorded)

    def replaying(apdu: bytes) -> bytes:
        if apdu[1] in (Ins.AUTHENTICATE_EV2_FIRST, Ins.ADDITIONAL_FRAME):
            return next(playback)
        return field.transceive(apdu)

    assert refused(lambda: field.tap(replaying).read(KEYS)).code is Code.CARD_AUTH_REPLAYED


@pytest.mark.parametrize("garble", [b"\xd5", b"\xff\xff"], ids=["record type", "nlen"])
def test_a_garbled_ndef_file_is_unreadable(garble):
    state = issued()
    at = {1: 5, 2: 0}[len(garble)]  # the URI record's type byte; NLEN
    state.files[FileNo.NDEF].content[at : at + len(garble)] = garble
    assert refused(lambda: Field(state).tap().read(KEYS)).code is Code.CARD_UNREADABLE


def test_a_card_that_does_not_answer_is_unreadable():
    field = Field(issued())
    session = field.tap()
    field.tear(1)
    error = refused(lambda: session.read(KEYS))
    assert error.code is Code.CARD_UNREADABLE
    assert error.details["reason"] == "card left the field"
    assert session.wait_removed(0.1)


def test_a_uid_that_is_not_seven_bytes_is_unreadable():
    field = Field(issued())
    session = Ntag424Session(H("08010203"), field.transceive, lambda: True)
    assert refused(lambda: session.read(KEYS)).code is Code.CARD_UNREADABLE


def test_the_purse_key_is_the_one_issuance_gives():
    assert purse_key(SECRETS.write_secret, UID) == SECRETS.card_keys(UID).keys[KeyNo.PURSE]
    assert purse_key(SECRETS.write_secret, UID) != FACTORY_KEY
