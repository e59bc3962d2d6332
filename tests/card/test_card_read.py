"""Reading and checking cards through nfcpy and the emulator: every refusal has its reason."""

from __future__ import annotations

import pytest
from fixtures.card import card_keys, issued_card, put_purse

from hcard import cardnumber, keys
from hcard.errors import Code, HCardError
from hcard.terminal.card import Purse, open_reader
from hcard.terminal.card import image as images
from hcard.terminal.card.layout import NDEF_FIRST_PAGE
from hcard.terminal.card.ntag import NTAG213, PAGE_SIZE

NUMBER = cardnumber.from_serial(42)
ISSUER = keys.generate()
TERMINAL = keys.generate()
TERMINAL_ID = 7


def read(card_emulator, card, keys_=None):
    card_emulator.present(card)
    reader = open_reader(card_emulator.reader_path)
    try:
        session = reader.wait_for_card(timeout_s=10)
        assert session is not None, "no card found"
        return session.read(keys_ or card_keys(ISSUER, {TERMINAL_ID: TERMINAL}))
    finally:
        reader.close()


def refusal(card_emulator, card, keys_=None) -> Code:
    with pytest.raises(HCardError) as caught:
        read(card_emulator, card, keys_)
    return caught.value.code


def test_issued_card_reads(card_emulator):
    card = issued_card(ISSUER, NUMBER)
    view = read(card_emulator, card)
    assert view.card_number == NUMBER
    assert view.uid == card.uid
    assert view.chip == "NTAG215"
    assert view.url == f"https://karte.hattingen.test/c/{NUMBER}"
    assert view.purse is None
    assert view.counter == 0
    assert view.next_counter == 1
    assert view.purse_code is None


def test_ntag216_works(card_emulator):
    view = read(card_emulator, issued_card(ISSUER, NUMBER, chip="NTAG216"))
    assert view.chip == "NTAG216"
    assert view.card_number == NUMBER


def test_ntag213_is_refused_as_too_small(card_emulator):
    assert refusal(card_emulator, images.blank(NTAG213)) is Code.CARD_TOO_SMALL


def test_blank_card_is_not_issued(card_emulator):
    assert refusal(card_emulator, images.blank()) is Code.CARD_NOT_ISSUED


def test_copy_on_another_genuine_chip_is_refused_as_copy(card_emulator):
    original = issued_card(ISSUER, NUMBER)
    copy = images.with_uid(original, images.random_uid())
    assert refusal(card_emulator, copy) is Code.CARD_COPIED


def test_forged_issuer_signature_is_refused(card_emulator):
    forger = keys.generate()
    assert refusal(card_emulator, issued_card(forger, NUMBER)) is Code.CARD_NOT_ISSUED


def test_chip_without_valid_originality_signature_is_not_genuine(card_emulator):
    card = issued_card(ISSUER, NUMBER)
    fake_chip = images.with_uid(card, card.uid, genuine=False)  # same UID, a "magic" tag
    assert refusal(card_emulator, fake_chip) is Code.CARD_NOT_GENUINE


def test_production_trusts_only_nxp_key(card_emulator):
    from dataclasses import replace

    keys_ = replace(card_keys(ISSUER), originality_key_hex=images.originality.NXP_PUBLIC_KEY_HEX)
    assert refusal(card_emulator, issued_card(ISSUER, NUMBER), keys_) is Code.CARD_NOT_GENUINE


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x03\x10" + b"\xff" * 16,  # NDEF TLV with a message that does not decode
        b"\x03\xf0\xd1",  # TLV longer than the area
        b"\x42" * 16,  # no TLV structure at all
    ],
)
def test_garbage_ndef_is_unreadable(card_emulator, garbage):
    card = issued_card(ISSUER, NUMBER)
    start = NDEF_FIRST_PAGE * PAGE_SIZE
    card.memory[start : start + len(garbage)] = garbage
    assert refusal(card_emulator, card) is Code.CARD_UNREADABLE


def test_purse_is_read_and_newest_slot_wins(card_emulator):
    card = issued_card(ISSUER, NUMBER)
    card = put_purse(card, Purse(5000, 3, TERMINAL_ID), TERMINAL, slot=0)
    card = put_purse(card, Purse(4200, 4, TERMINAL_ID), TERMINAL, slot=1)
    view = read(card_emulator, card)
    assert view.purse == Purse(4200, 4, TERMINAL_ID)
    assert view.next_counter == 5


def test_purse_by_unknown_terminal_is_untrusted(card_emulator):
    card = issued_card(ISSUER, NUMBER)
    card = put_purse(card, Purse(5000, 3, TERMINAL_ID), TERMINAL, slot=0)
    card = put_purse(card, Purse(9000, 4, 99), keys.generate(), slot=1)
    view = read(card_emulator, card)
    assert view.purse_code is Code.PURSE_INVALID
    assert view.counter == 4  # the next write never reuses the unknown terminal's counter


def test_forged_purse_is_refused(card_emulator):
    card = issued_card(ISSUER, NUMBER)
    forger = keys.generate()  # claims to be terminal 7
    card = put_purse(card, Purse(900000, 8, TERMINAL_ID), forger, slot=0)
    card = put_purse(card, Purse(900000, 9, TERMINAL_ID), forger, slot=1)
    view = read(card_emulator, card)
    assert view.purse is None
    assert view.purse_code is Code.PURSE_INVALID


def test_purse_moved_from_another_card_does_not_verify(card_emulator):
    donor = put_purse(
        issued_card(ISSUER, cardnumber.from_serial(43)), Purse(9999, 5, TERMINAL_ID), TERMINAL
    )
    card = issued_card(ISSUER, NUMBER)
    card = put_purse(card, Purse(100, 2, TERMINAL_ID), TERMINAL, slot=1)
    slot0 = slice(64 * PAGE_SIZE, 84 * PAGE_SIZE)
    card.memory[slot0] = donor.memory[slot0]
    view = read(card_emulator, card)
    assert view.purse == Purse(100, 2, TERMINAL_ID)  # the foreign slot is ignored


def test_card_removed_mid_read_is_unreadable(card_emulator):
    card_emulator.present(issued_card(ISSUER, NUMBER))
    reader = open_reader(card_emulator.reader_path)
    try:
        session = reader.wait_for_card(timeout_s=10)
        assert session is not None
        card_emulator.tear(after=1)  # answers the first FAST_READ, then leaves
        with pytest.raises(HCardError) as caught:
            session.read(card_keys(ISSUER))
        assert caught.value.code is Code.CARD_UNREADABLE
    finally:
        reader.close()


def test_unknown_tag_type_is_unreadable(card_emulator):
    from hcard.terminal.card.ntag import ULTRALIGHT_EV1

    assert refusal(card_emulator, images.blank(ULTRALIGHT_EV1)) is Code.CARD_UNREADABLE
