"""Writing the purse: alternate slots, and a card pulled away mid-write keeps a valid purse."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fixtures.card import TEST_URL_BASE, TEST_WRITE_SECRET, card_keys, issued_card, put_purse

from hcard import cardnumber, keys, signed
from hcard.errors import Code, HCardError
from hcard.terminal.card import Purse, open_reader
from hcard.terminal.card import image as images
from hcard.terminal.card.layout import SLOT_FIRST_PAGES

NUMBER = cardnumber.from_serial(7)
ISSUER = keys.generate()
TERMINALS = {1: keys.generate(), 2: keys.generate()}
KEYS = card_keys(ISSUER, TERMINALS)
OLD = Purse(5000, 1, 1)


@pytest.fixture
def reader(card_emulator):
    reader = open_reader(card_emulator.reader_path)
    yield reader
    reader.close()


def tap(reader):
    session = reader.wait_for_card(timeout_s=10)
    assert session is not None, "no card found"
    return session


@pytest.mark.parametrize("chip", ["NTAG215", "NTAG216"])
def test_writes_alternate_slots_and_the_newest_wins(card_emulator, reader, chip):
    card = issued_card(ISSUER, NUMBER, chip=chip)
    card_emulator.present(put_purse(card, OLD, TERMINALS[1], slot=0))
    session = tap(reader)
    view = session.read(KEYS)
    assert view.purse == OLD
    session.write_purse(Purse(4000, 2, 2), TERMINALS[2])
    session.write_purse(Purse(3000, 3, 1), TERMINALS[1])
    image = card_emulator.current_image()
    # 2 went to slot 1 (the older one), 3 then overwrote slot 0.
    counters = [image.memory[first * 4 + 1 : first * 4 + 5] for first in SLOT_FIRST_PAGES]
    assert counters == [(3).to_bytes(4, "big"), (2).to_bytes(4, "big")]
    assert tap(reader).read(KEYS).purse == Purse(3000, 3, 1)


def test_write_needs_a_read_and_a_fresh_counter(card_emulator, reader):
    card_emulator.present(put_purse(issued_card(ISSUER, NUMBER), OLD, TERMINALS[1]))
    session = tap(reader)
    with pytest.raises(RuntimeError):
        session.write_purse(Purse(1, 2, 1), TERMINALS[1])
    session.read(KEYS)
    with pytest.raises(ValueError, match="counter"):
        session.write_purse(Purse(1, 1, 1), TERMINALS[1])


def test_wrong_card_password_is_refused(card_emulator, reader):
    card_emulator.present(issued_card(ISSUER, NUMBER))
    session = tap(reader)
    session.read(replace(KEYS, write_secret=b"another site's secret, 32 bytes"))
    with pytest.raises(HCardError) as caught:
        session.write_purse(Purse(1, 1, 1), TERMINALS[1])
    assert caught.value.code is Code.CARD_NOT_ISSUED


def test_issuance_through_the_reader_writes_what_the_image_helper_writes(card_emulator, reader):
    blank = images.blank()
    card_emulator.present(blank)
    session = tap(reader)
    signature = signed.sign_card(ISSUER, NUMBER, blank.uid)
    session.format_new_card(NUMBER, signature, TEST_URL_BASE + NUMBER, TEST_WRITE_SECRET)
    written = card_emulator.current_image()
    expected = images.issue(blank, NUMBER, ISSUER, TEST_URL_BASE + NUMBER, TEST_WRITE_SECRET)
    assert written.memory == expected.memory
    view = tap(reader).read(KEYS)
    assert view.card_number == NUMBER
    assert view.purse is None


def test_issued_card_is_write_protected_for_others(card_emulator):
    import time

    import nfc

    card_emulator.present(issued_card(ISSUER, NUMBER))
    clf = nfc.ContactlessFrontend(card_emulator.reader_path)
    try:
        deadline = time.monotonic() + 10
        tag = clf.connect(
            rdwr={"targets": ["106A"], "on-connect": lambda _tag: False},
            terminate=lambda: time.monotonic() > deadline,
        )
        assert tag.ndef is not None  # phones read the URL ...
        assert tag.ndef.records[0].iri == TEST_URL_BASE + NUMBER
        assert not tag.ndef.is_writeable  # ... and see a read-only card
        with pytest.raises(nfc.tag.TagCommandError):
            tag.write(SLOT_FIRST_PAGES[0], b"\xff\xff\xff\xff")
    finally:
        clf.close()


def frames_of_a_write(card_emulator, reader, card) -> int:
    """The commands of a purse write, as the frames the card received: the fewest of three
    writes, because nfcpy sends a command again when its answer is late (a loaded machine),
    and the card counts that frame too."""
    counted = []
    for attempt in range(3):
        card_emulator.present(card, name=f"probe-{attempt}")
        session = tap(reader)
        session.read(KEYS)
        before = card_emulator.status()["frames"]
        session.write_purse(Purse(4000, 2, 2), TERMINALS[2])
        counted.append(card_emulator.status()["frames"] - before)
    return min(counted)


@pytest.mark.parametrize("commit", [False, True], ids=["lost-before", "done-answer-lost"])
def test_card_pulled_away_after_every_command_of_a_purse_write(card_emulator, reader, commit):
    """Tear after 0, 1, ... n-1 commands of the write; the card always keeps a valid purse."""
    card = put_purse(issued_card(ISSUER, NUMBER), OLD, TERMINALS[1], slot=0)
    new = Purse(4000, 2, 2)
    commands = frames_of_a_write(card_emulator, reader, card)
    assert commands == 21  # PWD_AUTH + 20 page writes
    seen = set()
    for after in range(commands):
        path = card_emulator.present(card, name=f"torn-{after}")
        session = tap(reader)
        session.read(KEYS)
        card_emulator.tear(after=after, commit=commit)
        with pytest.raises(HCardError) as caught:
            session.write_purse(new, TERMINALS[2])
        assert caught.value.code is Code.CARD_UNREADABLE
        # PWD_AUTH unanswered: nothing written; a page write unanswered: maybe written.
        assert caught.value.details["written"] == ("none" if after == 0 else "unknown")
        card_emulator.present(path)  # the same card, tapped again
        view = tap(reader).read(KEYS)
        assert view.purse in (OLD, new), after
        assert view.purse_code is None
        seen.add(view.purse)
    # Without commit the last page never lands: always the old purse. With commit
    # the last tear leaves the new one complete.
    assert seen == ({OLD, new} if commit else {OLD})
