"""The signed checkpoint and the archive: the start checks only what came after the
checkpoint and still finds damage before it; old acknowledged days move into compressed
chunks that every reader still reaches and `verify_archive` checks in full."""

import json
import sqlite3

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fixtures.terminal import JOURNAL_CARD, offline_payment_body, server_card

from hcard import keys
from hcard.errors import Code, HCardError
from hcard.records import GENESIS_HASH, RecordKind
from hcard.terminal import archive as ar
from hcard.terminal import journal as jr
from hcard.terminal.checkpoint import DIGEST_START, digest_over
from hcard.terminal.cli import EXIT_BROKEN, EXIT_OK
from hcard.terminal.cli import main as cli_main
from hcard.terminal.config import TerminalConfig, TerminalState
from hcard.terminal.till import Outcome

TERMINAL_ID = 7
DAY_S = 86400.0
CLOSE = {"count": 0, "sum_cents": 0, "void_count": 0, "void_sum_cents": 0, "offline_count": 0}


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


def _pay(journal: jr.Journal, n: int, day: int) -> int:
    record = journal.append(
        RecordKind.PAYMENT,
        offline_payment_body(n),
        state=jr.State.APPROVED,
        day=f"d{day}",
        created_s=day * DAY_S,
    )
    journal.finish(record.seq)
    return record.seq


def _days(journal: jr.Journal, days: int, per_day: int = 3) -> None:
    """`days` business days of `per_day` shown payments and a day close each."""
    n = journal.last_seq()
    for day in range(days):
        for _ in range(per_day):
            n += 1
            _pay(journal, n, day)
        journal.append(
            RecordKind.DAY_CLOSE, CLOSE, state=None, day=f"d{day}", created_s=day * DAY_S + 1
        )
        n += 1


def _wire(path, seq) -> bytes:
    with sqlite3.connect(path) as db:
        return bytes(db.execute("SELECT wire FROM records WHERE seq = ?", [seq]).fetchone()[0])


def _sql(path, sql, params=()) -> None:
    with sqlite3.connect(path) as db:
        db.execute(sql, params)


def _problem(path, key, full=False):
    journal = jr.Journal(path, TERMINAL_ID, key)
    try:
        return journal.verify(full=full)
    finally:
        journal.close()


@pytest.fixture
def acked(tmp_path, key):
    """8 records (two days), the first 6 acknowledged: a checkpoint at 6."""
    path = tmp_path / "journal.sqlite"
    journal = jr.Journal(path, TERMINAL_ID, key)
    _days(journal, 2)
    journal.mark_acked(6)
    journal.close()
    return path


def test_the_ack_signs_a_checkpoint_in_its_transaction(acked, key):
    journal = jr.Journal(acked, TERMINAL_ID, key)
    try:
        checkpoint = journal.chain_checkpoint()
        assert checkpoint is not None
        assert (checkpoint.seq, checkpoint.hash) == (6, journal.hash_of(6))
        assert checkpoint.signature_ok(key.public_key())
        wires = [_wire(acked, seq) for seq in range(1, 7)]
        assert checkpoint.digest == digest_over(DIGEST_START, wires)
        # never backwards: a server restored from a backup rewinds the ack, not the checkpoint
        journal.rewind_acked(2)
        journal.mark_acked(4)
        assert journal.chain_checkpoint() == checkpoint
        journal.mark_acked(8)  # on from the last checkpoint's digest
        assert journal.chain_checkpoint().digest == digest_over(
            DIGEST_START, [*wires, _wire(acked, 7), _wire(acked, 8)]
        )
        assert journal.verify() is None
    finally:
        journal.close()


def test_a_rewind_with_expected_leaves_an_acknowledgement_that_moved(acked, key):
    """A payment's answer names the head the server had when it decided; if the sync agent
    moved the acknowledgement since, that head is no news of a restore (`Payments._ask`)."""
    journal = jr.Journal(acked, TERMINAL_ID, key)
    try:
        journal.rewind_acked(3, expected=5)  # acknowledged up to 6 meanwhile
        assert journal.acked_seq() == 6
        journal.rewind_acked(3, expected=6)
        assert journal.acked_seq() == 3
        journal.rewind_acked(5, expected=3)  # never forwards
        assert journal.acked_seq() == 3
    finally:
        journal.close()


def test_signatures_before_the_checkpoint_are_not_checked_at_start(acked, key):
    """What the start saves, shown: a record whose signature is bad but which was already
    there when the checkpoint was signed passes the start, and only the full check finds it."""
    wire = json.loads(_wire(acked, 2))
    wire["sig"] = "0" * 128
    _sql(
        acked,
        "UPDATE records SET wire = ? WHERE seq = 2",
        [json.dumps(wire, separators=(",", ":"), sort_keys=True).encode()],
    )
    _sql(acked, "DELETE FROM chain_checkpoint")
    journal = jr.Journal(acked, TERMINAL_ID, key)
    journal.mark_acked(6)
    journal.close()
    assert _problem(acked, key) is None
    problem = _problem(acked, key, full=True)
    assert (problem.seq, problem.code) == (2, Code.BAD_SIGNATURE)


@pytest.mark.parametrize("seq", [1, 3, 6, 7])
def test_a_changed_record_before_or_after_the_checkpoint_is_named(acked, key, seq):
    damaged = bytearray(_wire(acked, seq))
    damaged[len(damaged) // 2] ^= 0x04
    _sql(acked, "UPDATE records SET wire = ? WHERE seq = ?", [bytes(damaged), seq])
    assert _problem(acked, key).seq == seq


def test_a_checkpoint_beyond_the_last_record_is_refused(acked, key):
    """Records cut off after the checkpoint and `head` moved back with them: the chain and
    the head agree, only the checkpoint knows."""
    _sql(acked, "DELETE FROM records WHERE seq > 4")
    _sql(acked, "DELETE FROM local WHERE seq > 4")
    journal = jr.Journal(acked, TERMINAL_ID, key)
    head_hash = journal.hash_of(4)
    journal.close()
    _sql(acked, "UPDATE head SET seq = 4, hash = ?", [head_hash])
    assert _problem(acked, key, full=True) is None
    problem = _problem(acked, key)
    assert (problem.seq, problem.code) == (5, Code.CHAIN_GAP)
    with pytest.raises(HCardError) as raised:
        jr.open_verified(acked, TERMINAL_ID, key)
    assert raised.value.code == Code.CHAIN_GAP


def test_a_forged_checkpoint_is_refused(acked, key):
    journal = jr.Journal(acked, TERMINAL_ID, key)
    hash_4 = journal.hash_of(4)
    journal.close()
    wires = [_wire(acked, seq) for seq in range(1, 5)]
    _sql(
        acked,
        "UPDATE chain_checkpoint SET seq = 4, hash = ?, digest = ?",
        [hash_4, digest_over(DIGEST_START, wires)],
    )
    problem = _problem(acked, key)
    assert (problem.seq, problem.code) == (4, Code.BAD_SIGNATURE)


def test_a_journal_from_before_checkpoints_is_checked_in_full_once(acked, key):
    _sql(acked, "DELETE FROM chain_checkpoint")
    journal = jr.open_verified(acked, TERMINAL_ID, key)
    try:
        checkpoint = journal.chain_checkpoint()
        assert checkpoint is not None
        assert checkpoint.seq == 6
    finally:
        journal.close()


def test_which_records_may_be_archived():
    facts = {"acked_seq": 12, "checkpoint_seq": 12, "day_close_seq": 12, "first_open_seq": None}
    assert ar.archive_upto(**facts) == 12
    assert ar.archive_upto(**{**facts, "acked_seq": 11}) == 0  # its day close not acked
    assert ar.archive_upto(**{**facts, "checkpoint_seq": 11}) == 0
    assert ar.archive_upto(**{**facts, "first_open_seq": 6}) == 5  # an unsettled one stays
    assert ar.archive_upto(**{**facts, "day_close_seq": 0}) == 0


@pytest.fixture
def archived(tmp_path, key):
    """5 days of 3 payments + a day close (seq 20 the last), a void of seq 17 (21) and a
    payment (22); acknowledged up to the third day close (12)."""
    path = tmp_path / "journal.sqlite"
    journal = jr.Journal(path, TERMINAL_ID, key)
    _days(journal, 5)
    journal.void(
        17,
        {"card": JOURNAL_CARD, "voids_seq": 17, "amount_cents": 117},
        day="d4",
        created_s=4 * DAY_S,
        state=jr.State.VOIDED,
    )
    journal.mark_acked(12)
    _pay(journal, 22, 5)
    return path, journal


def test_archive_moves_old_acknowledged_days_and_every_reader_still_reaches_them(
    archived, key, monkeypatch
):
    path, journal = archived
    before = {seq: journal.entry(seq) for seq in range(1, 23)}
    receipts = {no: journal.by_receipt(no) for no in range(1, 17)}
    monkeypatch.setattr(ar, "CHUNK_RECORDS", 5)
    assert journal.archive() == 12  # up to the last acknowledged day close
    assert journal.archive_size() == (12, 3)
    assert journal.archive() == 0
    journal.mark_acked(21)  # the checkpoint goes on from the archived part
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT min(seq) FROM records").fetchone()[0] == 13
    assert {seq: journal.entry(seq) for seq in range(1, 23)} == before
    assert {no: journal.by_receipt(no) for no in range(1, 17)} == receipts
    assert [e.record.seq for e in journal.entries(after_seq=10)] == list(range(11, 23))
    assert [p.seq for p in journal.card_payments(JOURNAL_CARD)][:3] == [1, 2, 3]
    assert journal.hash_of(12) == before[12].record.hash
    assert journal.last_day_close_seq() == 20
    assert [r.seq for r in journal.unsent(10)] == [22]
    journal.rewind_acked(2)  # a server restored to before the archive: sent again from there
    assert [r.seq for r in journal.unsent(12)] == list(range(3, 15))
    journal.mark_acked(22)
    assert journal.verify() is None
    assert journal.verify(full=True) is None
    assert journal.verify_archive() is None
    journal.close()
    assert _problem(path, key) is None
    jr.open_verified(path, TERMINAL_ID, key).close()


def test_the_archive_keeps_back_a_record_that_may_still_move(tmp_path, key):
    """An online payment never answered (`unshown`, acknowledged: the sync agent settles it
    by a later answer) stays live, and everything after it."""
    journal = jr.Journal(tmp_path / "journal.sqlite", TERMINAL_ID, key)
    _pay(journal, 1, 0)
    online = journal.append(
        RecordKind.PAYMENT,
        {**offline_payment_body(2), "mode": "online"},
        state=jr.State.INTENT,
        day="d0",
        created_s=0.0,
    )
    journal.set_state(online.seq, jr.State.UNSHOWN)
    journal.append(RecordKind.DAY_CLOSE, CLOSE, state=None, day="d0", created_s=1.0)
    _days(journal, 2)
    journal.mark_acked(journal.last_seq())
    assert journal.archive() == 1
    assert [e.record.seq for e in journal.entries(states=(jr.State.UNSHOWN,))] == [2]
    journal.close()


def test_a_cancelled_topups_void_in_the_archive_still_counts_after_a_restored_server(tmp_path, key):
    journal = jr.Journal(tmp_path / "journal.sqlite", TERMINAL_ID, key)
    topup = journal.append(
        RecordKind.TOPUP_REQUEST,
        {"card": JOURNAL_CARD, "amount_cents": 500},
        state=jr.State.INTENT,
        day="d0",
        created_s=0.0,
    )
    journal.set_state(topup.seq, jr.State.APPROVED)
    journal.void(
        topup.seq,
        {"card": JOURNAL_CARD, "voids_seq": topup.seq, "amount_cents": 500},
        day="d0",
        created_s=0.0,
        state=jr.State.CANCELLED,
    )
    journal.append(RecordKind.DAY_CLOSE, CLOSE, state=None, day="d0", created_s=1.0)
    journal.mark_acked(3)
    assert journal.archive() == 3
    assert journal.verify() is None  # the checkpoint's record is the archive's last
    assert journal.unsettled_topups_cents(JOURNAL_CARD) == 0  # the void is acknowledged
    journal.rewind_acked(0)  # the server lost it: until it is sent again, leave it out
    assert journal.unsettled_topups_cents(JOURNAL_CARD) == 500
    journal.close()


def test_verify_archive_finds_a_damaged_chunk_the_start_does_not_open(archived, key):
    path, journal = archived
    journal.archive()
    journal.close()
    with sqlite3.connect(path) as db:
        data = db.execute("SELECT data FROM archive").fetchone()[0]
    wires = ar.unpack(data)
    damaged = bytearray(wires[2])
    damaged[30] ^= 0x01
    _sql(
        path,
        "UPDATE archive SET data = ? WHERE first_seq = 1",
        [ar.pack([*wires[:2], bytes(damaged), *wires[3:]])],
    )
    assert _problem(path, key) is None
    journal = jr.Journal(path, TERMINAL_ID, key)
    problem = journal.verify_archive()
    journal.close()
    assert problem.seq == 3
    _sql(path, "UPDATE archive SET data = ? WHERE first_seq = 1", [b"not zlib"])
    journal = jr.Journal(path, TERMINAL_ID, key)
    problem = journal.verify_archive()
    journal.close()
    assert (problem.seq, problem.code) == (1, Code.JOURNAL_CORRUPT)


def test_verify_journal_command(archived, key):
    """`hcard-terminal verify-journal`: 0 when the journal and its archive hold, 3 when not."""
    path, journal = archived
    journal.archive()
    journal.close()
    state = TerminalState(path.parent)
    assert state.journal_path == path
    keys.save_private(key, state.key_path)
    state.save_config(
        TerminalConfig(
            server_url="http://127.0.0.1:9",
            terminal_id=TERMINAL_ID,
            merchant_id=1,
            merchant_name="Café",
            issuer_public_key=keys.public_hex(Ed25519PrivateKey.generate()),
            name="Kasse",
        )
    )
    assert cli_main(["--state", str(state.dir), "verify-journal"]) == EXIT_OK
    _sql(path, "UPDATE archive SET last_hash = ? WHERE first_seq = 1", [GENESIS_HASH])
    assert cli_main(["--state", str(state.dir), "verify-journal"]) == EXIT_BROKEN


def test_the_sync_agent_archives_a_closed_day_and_the_till_starts_and_reads_on(
    live_server, card_emulator, terminal_factory
):
    """End to end: the real sync acknowledges and signs the checkpoint, the round archives
    the closed day, a restarted till starts from the checkpoint and finds the old receipt
    (too late to void, as before the archive)."""
    number, image = server_card(live_server, 1_000)
    terminal = terminal_factory(live_server, card_emulator.reader_path)
    till = terminal.till()
    till.sync_now()
    card_emulator.present(image)
    first = till.pay(100, card_timeout_s=10)
    assert first.outcome == Outcome.APPROVED
    till.day_close()
    till.sync_now()
    assert till.journal.archive_size() == (first.seq + 1, 1)  # the payment, the day close
    assert till.journal.chain_checkpoint().seq == first.seq + 1
    till.close()

    till = terminal.till()
    assert till.journal.by_receipt(first.receipt_no).record.seq == first.seq
    assert till.void(first.receipt_no).code == Code.VOID_TOO_LATE
    assert till.pay(200, card_timeout_s=10).outcome == Outcome.APPROVED
    till.sync_now()
    assert till.journal.unsent_count() == 0
    assert till.journal.verify_archive() is None
    assert live_server.staff.card(number)["balance_cents"] == 700
