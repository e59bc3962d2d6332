"""The journal finds every kind of damage, and says where: the first bad seq."""

import sqlite3

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fixtures.terminal import JOURNAL_CARD, offline_payment_body

from hcard.errors import Code, HCardError
from hcard.terminal import journal as jr

CARD = JOURNAL_CARD
TERMINAL_ID = 7


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def filled(tmp_path, key):
    """A journal with 6 records of all kinds; returns its path."""
    path = tmp_path / "journal.sqlite"
    journal = jr.Journal(path, TERMINAL_ID, key)
    for n in range(1, 5):
        journal.append(
            "payment",
            offline_payment_body(n),
            state=jr.State.APPROVED,
            day="2026-11-25",
            created_s=0.0,
        )
        journal.finish(n)
    journal.void(
        2,
        {"card": CARD, "voids_seq": 2, "amount_cents": 102},
        day="2026-11-25",
        created_s=0.0,
        state=jr.State.VOIDED,
    )
    journal.append(
        "day_close",
        {"count": 4, "sum_cents": 410, "void_count": 1, "void_sum_cents": 102, "offline_count": 4},
        state=None,
        day="2026-11-25",
        created_s=0.0,
    )
    assert journal.verify() is None
    assert journal.last_seq() == 6
    assert journal.entry(2).state == jr.State.VOIDED
    journal.close()
    return path


def _problem(path, key):
    journal = jr.Journal(path, TERMINAL_ID, key)
    try:
        return journal.verify()
    finally:
        journal.close()


def _wire(path, seq) -> bytes:
    with sqlite3.connect(path) as db:
        return bytes(db.execute("SELECT wire FROM records WHERE seq = ?", [seq]).fetchone()[0])


def _set_wire(path, seq, wire: bytes) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE records SET wire = ? WHERE seq = ?", [wire, seq])


def test_every_single_byte_flip_is_reported_at_its_seq(filled, key):
    seq = 3
    original = _wire(filled, seq)
    for index in range(len(original)):
        for mask in (0x01, 0x80):
            damaged = bytearray(original)
            damaged[index] ^= mask
            _set_wire(filled, seq, bytes(damaged))
            problem = _problem(filled, key)
            assert problem is not None, (index, mask)
            assert problem.seq == seq, (index, mask, problem)
    _set_wire(filled, seq, original)
    assert _problem(filled, key) is None


@pytest.mark.parametrize("seq", [1, 4, 6])
def test_a_flip_in_any_record_names_that_record(filled, key, seq):
    damaged = bytearray(_wire(filled, seq))
    damaged[len(damaged) // 2] ^= 0x04
    _set_wire(filled, seq, bytes(damaged))
    assert _problem(filled, key).seq == seq


def test_deleted_record_is_a_gap_at_its_seq(filled, key):
    with sqlite3.connect(filled) as db:
        db.execute("DELETE FROM records WHERE seq = 3")
    problem = _problem(filled, key)
    assert (problem.seq, problem.code) == (3, Code.CHAIN_GAP)


def test_reordered_records_are_reported_at_the_first_moved(filled, key):
    two, three = _wire(filled, 2), _wire(filled, 3)
    _set_wire(filled, 2, three)
    _set_wire(filled, 3, two)
    assert _problem(filled, key).seq == 2


def test_truncated_journal_is_reported_at_the_first_missing_seq(filled, key):
    with sqlite3.connect(filled) as db:
        db.execute("DELETE FROM records WHERE seq >= 5")
    problem = _problem(filled, key)
    assert (problem.seq, problem.code) == (5, Code.CHAIN_GAP)
    with pytest.raises(HCardError) as raised:
        jr.open_verified(filled, TERMINAL_ID, key)
    assert raised.value.details["seq"] == 5


def test_journal_of_another_terminal_is_refused(filled, key):
    with pytest.raises(HCardError) as raised:
        jr.Journal(filled, TERMINAL_ID + 1, key)
    assert raised.value.code == Code.JOURNAL_FOREIGN
    with pytest.raises(HCardError) as raised:
        jr.Journal(filled, TERMINAL_ID, Ed25519PrivateKey.generate())
    assert raised.value.code == Code.JOURNAL_FOREIGN


def test_sqlite_settings_make_commits_durable(filled, key):
    journal = jr.Journal(filled, TERMINAL_ID, key)
    try:
        assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        journal.close()


def test_acknowledgement_never_moves_back(filled, key):
    journal = jr.Journal(filled, TERMINAL_ID, key)
    try:
        journal.mark_acked(4)
        journal.mark_acked(2)
        assert journal.acked_seq() == 4
        assert [r.seq for r in journal.unsent(10)] == [5, 6]
        assert journal.unsent_count() == 2
    finally:
        journal.close()


def test_nothing_is_uploaded_from_a_payment_still_being_decided(filled, key):
    """An online payment waiting for its answer, an offline one whose card write is under
    way: the upload stops before either (the server is told which payments were shown)."""
    journal = jr.Journal(filled, TERMINAL_ID, key)
    try:
        waiting = journal.append(
            "payment",
            {**offline_payment_body(5), "mode": "online"},
            state=jr.State.INTENT,
            day="d",
            created_s=0.0,
        )
        writing = journal.append(
            "payment", offline_payment_body(6), state=jr.State.APPROVED, day="d", created_s=0.0
        )
        assert [r.seq for r in journal.unsent(10)] == [1, 2, 3, 4, 5, 6]
        journal.set_state(waiting.seq, jr.State.FINAL)
        assert [r.seq for r in journal.unsent(10)][-2:] == [6, 7]
        journal.set_state(writing.seq, jr.State.FINAL)
        assert [r.seq for r in journal.unsent(10)][-2:] == [7, 8]
    finally:
        journal.close()


def test_an_older_journal_gets_receipt_numbers_once_and_keeps_those_shown(tmp_path, key):
    """A journal from before receipt numbers (no column): the payments and top-ups it showed
    keep the number they were shown with (their seq); new ones continue after its last seq,
    so no number the old version showed is given to another payment."""
    path = tmp_path / "journal.sqlite"
    journal = jr.Journal(path, TERMINAL_ID, key)
    moves = [  # seq 1..4: unshown, final, final, declined
        (jr.State.INTENT, jr.State.UNSHOWN),
        (jr.State.APPROVED, jr.State.FINAL),
        (jr.State.APPROVED, jr.State.FINAL),
        (jr.State.INTENT, jr.State.DECLINED),
    ]
    for n, (start, state) in enumerate(moves, start=1):
        journal.append(
            "payment", offline_payment_body(n), state=start, day="2026-11-25", created_s=0.0
        )
        journal.set_state(n, state)
    journal.void(
        3,
        {"card": CARD, "voids_seq": 3, "amount_cents": 103},
        day="d",
        created_s=0,
        state=jr.State.VOIDED,
    )  # seq 5
    journal.append(
        "topup_request",
        {"card": CARD, "amount_cents": 500},
        state=jr.State.INTENT,
        day="d",
        created_s=0,
    )  # seq 6
    journal.set_state(6, jr.State.FINAL)
    journal.close()
    with sqlite3.connect(path) as db:  # what the version before receipt numbers left
        db.execute("DROP INDEX local_receipt")
        db.execute("ALTER TABLE local DROP COLUMN receipt_no")
        db.execute("DELETE FROM meta WHERE name = 'receipt_base'")
    db.close()

    for _ in range(2):  # numbered once: opening it again changes nothing
        journal = jr.open_verified(path, TERMINAL_ID, key)
        numbers = {e.record.seq: e.receipt_no for e in journal.entries()}
        assert numbers == {1: None, 2: 2, 3: 3, 4: None, 5: None, 6: 6}
        journal.close()

    journal = jr.open_verified(path, TERMINAL_ID, key)
    journal.append(
        "payment", offline_payment_body(7), state=jr.State.APPROVED, day="d", created_s=0.0
    )
    assert journal.finish(7) == 7  # after seq 6: the void's seq 5 was shown as a number too
    journal.append(
        "payment", offline_payment_body(8), state=jr.State.INTENT, day="d", created_s=0.0
    )
    journal.set_state(8, jr.State.UNSHOWN)
    journal.append(
        "payment", offline_payment_body(9), state=jr.State.APPROVED, day="d", created_s=0.0
    )
    assert journal.finish(9) == 8
    assert journal.by_receipt(3).record.seq == 3
    assert journal.by_receipt(8).record.seq == 9
    assert journal.by_receipt(5) is None
    journal.close()


def test_receipt_numbers_follow_what_was_shown_not_the_seq(tmp_path, key):
    journal = jr.Journal(tmp_path / "journal.sqlite", TERMINAL_ID, key)
    journal.append(
        "payment", offline_payment_body(1), state=jr.State.INTENT, day="d", created_s=0.0
    )
    journal.set_state(1, jr.State.UNSHOWN)  # an online try without answer
    journal.append(
        "payment", offline_payment_body(2), state=jr.State.APPROVED, day="d", created_s=0.0
    )
    assert journal.finish(2) == 1
    journal.append(
        "payment", offline_payment_body(3), state=jr.State.APPROVED, day="d", created_s=0.0
    )
    journal.void(
        3,
        {"card": CARD, "voids_seq": 3, "amount_cents": 103},
        day="d",
        created_s=0,
        state=jr.State.CANCELLED,
    )  # card pulled away: never shown
    journal.append(
        "payment", offline_payment_body(5), state=jr.State.APPROVED, day="d", created_s=0.0
    )
    assert journal.finish(5) == 2
    journal.set_state(5, jr.State.VOIDED)  # voided by the cashier: keeps its number
    with pytest.raises(HCardError) as refused:  # and it is never shown again
        journal.set_state(5, jr.State.FINAL)
    assert refused.value.code == Code.STATE_TRANSITION_REFUSED
    assert (journal.entry(5).state, journal.entry(5).receipt_no) == (jr.State.VOIDED, 2)
    assert [e.receipt_no for e in journal.entries()] == [None, 1, None, None, 2]
    journal.close()


def test_records_are_read_back_one_way(filled, key):
    """`decode` is how every reader (verify, unsent, entries, hash_of) gets a record back."""
    journal = jr.Journal(filled, TERMINAL_ID, key)
    try:
        records = [entry.record for entry in journal.entries()]
        assert [jr.decode(_wire(filled, seq)) for seq in range(1, 7)] == records
        assert journal.unsent(10) == records
        assert [journal.hash_of(seq) for seq in range(1, 7)] == [r.hash for r in records]
    finally:
        journal.close()
    with pytest.raises(UnicodeDecodeError):
        jr.decode(b"\xff" + _wire(filled, 1))


def test_tap_counters_keep_the_highest_and_survive_a_reopen(tmp_path, key):
    path = tmp_path / "journal.sqlite"
    journal = jr.Journal(path, TERMINAL_ID, key)
    uid = "04a1b2c3d4e5f6"
    assert journal.tap_counter(uid) is None
    journal.note_tap_counter(uid, 7)
    journal.note_tap_counter(uid, 5)  # an older tap noted late never lowers it
    journal.note_tap_counter("04000000000001", 1)
    assert journal.tap_counter(uid) == 7
    journal.close()
    reopened = jr.Journal(path, TERMINAL_ID, key)
    assert reopened.tap_counter(uid) == 7
    assert reopened.tap_counter("04000000000001") == 1
    reopened.close()


def test_a_topups_counter_is_kept_beside_it_and_never_used_again(tmp_path, key):
    """A top-up's record carries no counter, but the server keeps the one its authorise
    request named as a write the card may hold: the till's next writes go above it."""
    journal = jr.Journal(tmp_path / "journal.sqlite", TERMINAL_ID, key)
    try:
        assert journal.topup_counter_floor(CARD) == 0
        journal.append(
            "payment", offline_payment_body(1), state=jr.State.APPROVED, day="d", created_s=0.0
        )
        assert journal.topup_counter_floor(CARD) == 0  # a payment's counter is in its record
        topup = {"card": CARD, "amount_cents": 500}
        journal.append(
            "topup_request", topup, state=jr.State.INTENT, day="d", created_s=0.0, counter=7
        )
        assert journal.topup_counter_floor(CARD) == 7
        assert journal.topup_counter_floor("9276000000000024") == 0
        assert "counter" not in journal.entry(2).record.body  # the signed record is unchanged
    finally:
        journal.close()
