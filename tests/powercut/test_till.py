"""The till's journal under a power cut at every write and every sync (docs/power-cuts.md).

The workload (`till_workload.py`: a first start, ten payments online and offline, a
declined one, a failed card write, a void, a day close, acknowledgements with their signed
checkpoints, the archive of the acknowledged day, the close) runs once
under the tracer; then every disk a power cut can leave is opened as the till starts
(`open_verified`, `Payments.recover`), and must hold every payment the till showed as
approved, under the receipt number it showed, voided once if it showed the void, and no
payment it did not show as approved as approved.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from powercut import harness
from powercut.till_workload import (
    JOURNAL,
    KEY,
    TERMINAL_ID,
    UNREACHABLE,
    ScriptedServer,
    payments,
)

from hcard.records import RecordKind
from hcard.terminal import journal as jr
from hcard.terminal.states import SHOWN


@dataclass(frozen=True)
class Till:
    """What the till found after its start (the recovery done): per seq (kind, state,
    receipt number), the voids, the acknowledgement, the archive."""

    records: dict[int, tuple[RecordKind, jr.State | None, int | None]]
    voids: dict[int, list[int]]  # voided seq -> the void records' seqs
    acked_seq: int
    archived: int  # records in the archive
    archive_problem: str | None


def inspect(folder: Path) -> Till:
    journal = jr.open_verified(folder / JOURNAL, TERMINAL_ID, KEY)
    try:
        server = ScriptedServer()
        server.next = UNREACHABLE
        payments(journal, folder, server).recover()
        records: dict[int, tuple[RecordKind, jr.State | None, int | None]] = {}
        voids: dict[int, list[int]] = {}
        for entry in journal.entries():
            record = entry.record
            records[record.seq] = (RecordKind(record.kind), entry.state, entry.receipt_no)
            if record.kind == RecordKind.VOID:
                voids.setdefault(record.body["voids_seq"], []).append(record.seq)
        problem = journal.verify_archive()
        acked, (archived, _chunks) = journal.acked_seq(), journal.archive_size()
    finally:
        journal.close()
    return Till(records, voids, acked, archived, problem and str(problem))


def check(till: Till, shown: list[str]) -> list[str]:
    problems = [] if till.archive_problem is None else [f"archive: {till.archive_problem}"]
    for seq, (_kind, state, _receipt) in till.records.items():
        if state in (jr.State.INTENT, jr.State.APPROVED):
            problems.append(f"seq {seq} still {state} after the recovery")
    for seq, void_seqs in till.voids.items():
        if len(void_seqs) > 1:
            problems.append(f"seq {seq} voided {len(void_seqs)} times")
    receipts = Counter(r for _k, _s, r in till.records.values() if r is not None)
    problems += [f"receipt {r} given {n} times" for r, n in receipts.items() if n > 1]
    for line in shown:
        word, *numbers = line.split()
        if word == "approved":
            seq, receipt_no = map(int, numbers)
            kind, state, receipt = till.records.get(seq, (None, None, None))
            if state not in SHOWN or receipt != receipt_no:
                problems.append(f"{line!r} shown, the journal has {kind} {state} {receipt}")
        elif word == "declined":
            (seq,) = map(int, numbers)
            _kind, state, receipt = till.records.get(seq, (None, None, None))
            if state in SHOWN or receipt is not None:
                problems.append(f"{line!r} shown, the journal has it {state}, receipt {receipt}")
        elif word == "voided":
            receipt_no, void_seq = map(int, numbers)
            paid = [s for s, (_k, _st, r) in till.records.items() if r == receipt_no]
            if not paid or till.records[paid[0]][1] != jr.State.VOIDED:
                problems.append(f"{line!r} shown, the payment is not voided")
            elif till.voids.get(paid[0]) != [void_seq]:
                problems.append(f"{line!r} shown, its voids are {till.voids.get(paid[0])}")
        elif word == "acked" and till.acked_seq < int(numbers[0]):
            problems.append(f"{line!r} committed, the journal says acked {till.acked_seq}")
        elif word == "archived" and till.archived < int(numbers[0]):
            problems.append(f"{line!r} committed, the archive holds {till.archived}")
        elif word == "record":
            (seq,) = map(int, numbers)
            if seq not in till.records:
                problems.append(f"{line!r} journalled (fsync), then lost")
    return problems


def content_key(folder: Path) -> str:
    return harness.sqlite_rows_key(folder / JOURNAL)


@pytest.fixture(scope="module")
def trace(powercut_shim, tmp_path_factory):
    folder = tmp_path_factory.mktemp("till") / "state"
    folder.mkdir()
    return harness.traced(powercut_shim, folder, "powercut.till_workload")


def test_every_write_and_sync_of_the_till_is_a_power_cut_point(trace):
    """The trace has the operations a power cut must hit (else the test proves nothing)."""
    ops = Counter((e.op.name, e.path) for e in trace.entries)
    assert ops["SYNC", "journal.sqlite-wal"] >= 20  # a durable commit per journal step
    assert ops["SYNC", "journal.sqlite"] >= 1  # the checkpoints
    assert ops["SYNC", ""] >= 1  # the folder, for the new WAL's name
    shown = trace.shown(len(trace.entries))
    assert len(shown) >= 17
    archived = [int(line.split()[1]) for line in shown if line.startswith("archived")]
    assert archived[0] >= 14  # the whole acknowledged day went into the archive


@pytest.mark.parametrize("seed", [0, 1])
def test_a_power_cut_anywhere_keeps_what_the_till_showed(trace, tmp_path, seed):
    report = harness.sweep(trace, content_key, inspect, check, tmp_path, seed=seed)
    print(report.summary())
    assert not report.failures, report.summary()
