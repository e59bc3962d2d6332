"""The till's start with a year's journal, against an empty one, in the same run.

    python bench/till_start.py [--records 70000] [--runs 21]

Two enrolled state directories (key, config, journal; no server: the start does not ask
one): one with an empty journal, one with a busy year (`--records`, ~190 a day over 365
days: offline payments made `final` with their receipt numbers, every twentieth voided,
a day close each day), acknowledged day by day as the sync agent does (`mark_acked`,
which signs the checkpoint) and archived as it does (`Journal.archive`: everything up to
the last acknowledged day close). The year is written through the real `Journal` API
(`append`, `set_state`, `void`, `mark_acked`, `archive`) on a connection without the fsync
of each commit (`synchronous=OFF`; the rows are the same).

Measured: the start the real till makes, `TerminalTill(...)` (`open_verified`: the
checkpoint's check and the records after it; the restart recovery; the snapshot; the
client and the sync agent built), without the Kivy UI, without starting the agent's thread
and the reader watch (they run beside the till, after its start). Runs alternate empty
and year; medians of `--runs` each after one warm-up of each.

Prints one JSON object on its last line: `start_s`, `start_empty_s`, `ratio` (target at
most 1.5), the journal's `records`, `archived`, `live_records`, `journal_mb` (the file:
SQLite reuses the pages the archived rows left, it does not give them back) and
`archive_mb` (the compressed chunks), and
`verify_all_s`: every signature of the year checked on every core (`hcard-terminal
verify-journal`: `verify_archive` + `verify(full=True)`), which is what each start cost
before the checkpoint.
`measure_start(folder)` is the same for `bench/town_year.py`.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from hcard import cardnumber, keys
from hcard.records import RecordKind
from hcard.terminal import journal as jr
from hcard.terminal.config import TerminalConfig, TerminalState

TERMINAL_ID = 1
DAYS = 365
CARDS = 2000
DAY_S = 86400.0
YEAR_START_S = 1_767_225_600.0  # 2026-01-01 UTC


def _state(folder: Path) -> TerminalState:
    """An enrolled state directory without a server (config as `enrol` writes it)."""
    state = TerminalState(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keys.save_private(keys.generate(), state.key_path)
    state.save_config(
        TerminalConfig(
            server_url="http://127.0.0.1:9",
            terminal_id=TERMINAL_ID,
            merchant_id=1,
            merchant_name="Bench-Café",
            issuer_public_key=keys.public_hex(keys.generate()),
            name="Kasse",
            reader="udp:127.0.0.1:9",
        )
    )
    return state


def _fill_year(state: TerminalState, records: int) -> dict[str, Any]:
    """A busy year in the journal, acknowledged and archived as the sync agent does."""
    journal = jr.Journal(state.journal_path, TERMINAL_ID, state.load_key())
    # no fsync per commit while the year is written (the rows are the same)
    journal._db.execute("PRAGMA synchronous=OFF")
    per_day = max(2, records // DAYS)
    counters: dict[str, int] = {}
    try:
        day = 0
        while journal.last_seq() < records:
            start_s = YEAR_START_S + day * DAY_S
            today = time.strftime("%Y-%m-%d", time.gmtime(start_s))
            count, sum_cents, void_count, void_sum_cents = 0, 0, 0, 0
            for n in range(per_day - 1):
                if journal.last_seq() >= records - 1:
                    break
                now_s = start_s + 8 * 3600 + n * 60
                card = cardnumber.from_serial(1 + (day * per_day + n) % CARDS)
                counters[card] = counters.get(card, 0) + 1
                amount_cents = 100 + (n * 37) % 2000
                if n % 20 == 19 and count:  # the previous payment voided
                    paid = journal.last_seq()
                    body = journal.entry(paid)
                    assert body is not None
                    journal.void(
                        paid,
                        {
                            "card": body.record.body["card"],
                            "voids_seq": paid,
                            "amount_cents": body.record.body["amount_cents"],
                        },
                        day=today,
                        created_s=now_s,
                        state=jr.State.VOIDED,
                    )
                    void_count += 1
                    void_sum_cents += body.record.body["amount_cents"]
                    continue
                record = journal.append(
                    RecordKind.PAYMENT,
                    {
                        "card": card,
                        "uid": "04a1b2c3d4e5f6",
                        "amount_cents": amount_cents,
                        "tip_cents": 0,
                        "mode": "offline",
                        "counter": counters[card],
                        "purse_cents": 10_000,
                    },
                    state=jr.State.APPROVED,
                    day=today,
                    created_s=now_s,
                )
                journal.set_state(record.seq, jr.State.FINAL, card_written=True)
                count, sum_cents = count + 1, sum_cents + amount_cents
            journal.append(
                RecordKind.DAY_CLOSE,
                {
                    "count": count,
                    "sum_cents": sum_cents,
                    "void_count": void_count,
                    "void_sum_cents": void_sum_cents,
                    "offline_count": count,
                },
                state=None,
                day=today,
                created_s=start_s + 20 * 3600,
            )
            journal.mark_acked(journal.last_seq())
            journal.checkpoint()  # the WAL into the file, as the sync agent does each round
            day += 1
        archived = journal.archive()
        return {
            "records": journal.last_seq(),
            "archived": archived,
            "live_records": journal.last_seq() - journal.archive_size()[0],
        }
    finally:
        journal.close()


def _verify_all_s(state: TerminalState) -> float:
    """The whole journal checked, archive and all (what `verify-journal` does)."""
    journal = jr.Journal(state.journal_path, TERMINAL_ID, state.load_key())
    try:
        started = time.perf_counter()
        problem = journal.verify_archive() or journal.verify(full=True)
        elapsed = time.perf_counter() - started
    finally:
        journal.close()
    if problem is not None:
        raise SystemExit(f"the year's journal does not verify: {problem}")
    return elapsed


def _start_s(state: TerminalState) -> float:
    """One start of the real till on `state` (module docstring), in seconds."""
    from hcard.terminal.core import TerminalTill

    started = time.perf_counter()
    till = TerminalTill(state.dir, start_sync=False, reader_check_interval_s=None)
    elapsed = time.perf_counter() - started
    till.close()
    return elapsed


def measure_start(folder: Path, records: int = 70_000, runs: int = 21) -> dict[str, Any]:
    """`start_s` (a year's journal with checkpoint and archive) and `start_empty_s`."""
    empty, year = _state(folder / "empty"), _state(folder / "year")
    jr.Journal(empty.journal_path, TERMINAL_ID, empty.load_key()).close()
    built_s = time.perf_counter()
    facts = _fill_year(year, records)
    built_s = time.perf_counter() - built_s
    samples: dict[str, list[float]] = {"empty": [], "year": []}
    for run in range(runs + 1):
        for name, state in (("empty", empty), ("year", year)):
            elapsed = _start_s(state)
            if run:  # the first of each is the warm-up (imports, page cache)
                samples[name].append(elapsed)
    verify_all_s = _verify_all_s(year)
    start_s = statistics.median(samples["year"])
    start_empty_s = statistics.median(samples["empty"])
    with sqlite3.connect(year.journal_path) as db:
        archive_bytes = db.execute("SELECT coalesce(sum(length(data)), 0) FROM archive").fetchone()[
            0
        ]
    db.close()
    journal_bytes = sum(
        path.stat().st_size for path in year.journal_path.parent.glob(year.journal_path.name + "*")
    )
    return {
        "start_s": round(start_s, 4),
        "start_empty_s": round(start_empty_s, 4),
        "ratio": round(start_s / start_empty_s, 2),
        **facts,
        "journal_mb": round(journal_bytes / 2**20, 1),
        "archive_mb": round(archive_bytes / 2**20, 1),
        "verify_all_s": round(verify_all_s, 2),
        "build_s": round(built_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=70_000)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--folder", type=Path, default=None, help="kept; default: a temp dir")
    args = parser.parse_args()
    if args.folder is not None:
        print(json.dumps(measure_start(args.folder, args.records, args.runs)))
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="till-start-") as folder:
        print(json.dumps(measure_start(Path(folder), args.records, args.runs)))


if __name__ == "__main__":
    main()
