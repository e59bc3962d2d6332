"""The card layout as pure functions: slot choice, encoding, sizes, password."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hcard import cardnumber, keys
from hcard.terminal.card import Purse, layout
from hcard.terminal.card.layout import Slot, SlotStatus
from hcard.terminal.card.ntag import CHIPS

UID = bytes.fromhex("04a1b2c3d4e5f6")
NUMBER = cardnumber.from_serial(5)
KEY = keys.generate()
EMPTY = Slot(SlotStatus.EMPTY)
BAD = Slot(SlotStatus.INVALID)


def valid(counter: int) -> Slot:
    return Slot(SlotStatus.VALID, Purse(100 * counter, counter, 1))


def unknown(counter: int) -> Slot:
    return Slot(SlotStatus.UNKNOWN_KEY, Purse(1, counter, 9))


@pytest.mark.parametrize(
    ("slots", "purse_counter", "counter", "write_slot", "trusted"),
    [
        ((EMPTY, EMPTY), None, 0, 0, True),  # fresh card
        ((valid(1), EMPTY), 1, 1, 1, True),
        ((valid(3), valid(4)), 4, 4, 0, True),  # newest wins, write the older
        ((valid(5), valid(4)), 5, 5, 1, True),
        ((valid(3), BAD), 3, 3, 1, True),  # torn write next to a good purse
        ((BAD, EMPTY), None, 0, 0, True),  # first write torn
        ((BAD, BAD), None, 0, 0, False),  # nothing good: damaged or tampered
        ((valid(3), unknown(4)), 3, 4, 0, False),  # newer by an unknown terminal
        ((valid(5), unknown(4)), 5, 5, 1, True),  # older unknown: harmless
        ((unknown(2), EMPTY), None, 2, 1, False),
    ],
)
def test_choose(slots, purse_counter, counter, write_slot, trusted):
    choice = layout.choose(slots)
    assert (choice.purse.counter if choice.purse else None) == purse_counter
    assert choice.counter == counter
    assert choice.write_slot == write_slot
    assert choice.trusted is trusted


@given(
    balance=st.integers(-(2**31), 2**31 - 1),
    counter=st.integers(1, 2**31 - 1),
    terminal_id=st.integers(1, 2**32 - 1),
)
def test_slot_round_trip(balance, counter, terminal_id):
    purse = Purse(balance, counter, terminal_id)
    raw = layout.encode_slot(purse, UID, NUMBER, KEY)
    assert len(raw) == layout.SLOT_BYTES
    slot = layout.decode_slot(raw, UID, NUMBER, {terminal_id: KEY.public_key()})
    assert slot == Slot(SlotStatus.VALID, purse)


def test_slot_bound_to_uid_and_card_number():
    raw = layout.encode_slot(Purse(1, 1, 1), UID, NUMBER, KEY)
    known = {1: KEY.public_key()}
    other_uid = bytes.fromhex("04000000000001")
    assert layout.decode_slot(raw, other_uid, NUMBER, known).status is SlotStatus.INVALID
    other_number = cardnumber.from_serial(6)
    assert layout.decode_slot(raw, UID, other_number, known).status is SlotStatus.INVALID
    flipped = bytearray(raw)
    flipped[6] ^= 1  # balance
    assert layout.decode_slot(bytes(flipped), UID, NUMBER, known).status is SlotStatus.INVALID
    assert layout.decode_slot(bytes(80), UID, NUMBER, known).status is SlotStatus.EMPTY


def test_purse_ranges():
    with pytest.raises(ValueError, match="counter"):
        Purse(0, 0, 1)
    with pytest.raises(ValueError, match="terminal_id"):
        Purse(0, 1, 2**32)
    with pytest.raises(ValueError, match="balance"):
        Purse(2**31, 1, 1)


def test_ndef_area_round_trip_and_size_limit():
    record = layout.IssuerRecord(NUMBER, UID, bytes(range(64)))
    url = f"https://karte.hattingen.de/c/{NUMBER}"
    area = layout.ndef_area(url, record)
    assert len(area) == layout.NDEF_AREA_BYTES
    assert layout.parse_ndef_area(area) == (url, record)
    with pytest.raises(ValueError, match="does not fit"):
        layout.ndef_area("https://" + "x" * 200 + f"/c/{NUMBER}", record)


def test_only_ntag215_and_216_fit():
    assert {name for name, chip in CHIPS.items() if layout.fits(chip)} == {"NTAG215", "NTAG216"}


def test_card_password_is_per_card():
    secret = b"0123456789abcdef"
    pwd, pack = layout.card_password(secret, UID)
    assert (len(pwd), len(pack)) == (4, 2)
    assert layout.card_password(secret, bytes.fromhex("04000000000001")) != (pwd, pack)
    with pytest.raises(ValueError, match="secret"):
        layout.card_password(b"short", UID)


@pytest.mark.parametrize(
    "area",
    [bytes(237) + b"\x03\xff\x01", b"\x03\x05\xd1", b"\x03\x03\xd1\x01\x00", b"\x01\x03"],
)
def test_truncated_tlvs_are_layout_errors(area):
    with pytest.raises(layout.LayoutError):
        layout.parse_ndef_area(area)


@given(
    st.one_of(
        st.binary(max_size=layout.NDEF_AREA_BYTES),
        st.binary(max_size=64).map(lambda tail: b"\x03" + tail),  # an NDEF TLV, then noise
        st.binary(max_size=8).map(lambda tail: bytes(230) + b"\x03\xff" + tail),
    )
)
def test_any_ndef_area_parses_or_raises_layout_error(area):
    with contextlib.suppress(layout.LayoutError):
        layout.parse_ndef_area(area)


@given(st.binary(min_size=layout.SLOT_BYTES, max_size=layout.SLOT_BYTES))
def test_any_slot_bytes_decode_to_a_status(raw):
    slot = layout.decode_slot(raw, UID, NUMBER, {1: KEY.public_key()})
    assert slot.status in (SlotStatus.EMPTY, SlotStatus.INVALID, SlotStatus.UNKNOWN_KEY)
