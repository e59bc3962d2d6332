"""The server's SQLite database and the settlement's files under a power cut at every write
and every sync (docs/power-cuts.md).

A small town is set up once on a real server (`town`), which is then stopped; its data
folder is the disk before each workload (`server_workload.py`), traced once each. Every
disk a power cut can leave is then opened as the server opens it (`Context.open`, the
migrations included) and checked: the ledger check holds; every answer the server gave is
still true (an approved authorisation is booked once, a declined one not at all, a synced
record is stored); and after the tills send everything again, as they would, nothing is
booked twice. For the settlement: a run shown is there with its bank files, the files on
disk are complete or absent (never half written under their final name), and the
service's own resume (`make_statements`, `settle file` again) completes them.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fixtures.month import Town, at, months_ago
from fixtures.server import ADMIN_USER, start_server
from powercut import harness
from powercut.replay import digest
from powercut.server_workload import (
    BANK_FILE,
    DATABASE,
    STATEMENTS,
    Till,
    commands,
    settings,
    wire,
)

from hcard.records import Record
from hcard.server import cli
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import (
    authorisations,
    journal,
    settlement_files,
    settlement_runs,
    transactions,
)
from hcard.server.services import ledger
from hcard.server.services import sync as sync_service
from hcard.server.vocabulary import RunStatus


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """A server folder with two merchants, a till each, card traffic booked last month
    (for the settlement) and three fresh cards (for the bookings); the server stopped."""
    root = tmp_path_factory.mktemp("town")
    server = start_server(root / "server")
    try:
        town = Town.start(server, {"baecker": {}, "buch": {}}, cards=2)
        first, last = months_ago(1)
        town.fund(first)
        for shop, card in (("baecker", 0), ("buch", 1)):
            town.sync(shop, [town.pay(shop, card, 1_250), town.pay(shop, card, 700, "offline")])
        town.booked_on(at(last, 10))
        cards = [list(server.new_card(10_000)) for _ in range(3)]
        with town.engine.connect() as conn:
            admin_id = conn.execute(
                sa.text("SELECT id FROM users WHERE username = :u"), {"u": ADMIN_USER}
            ).scalar_one()
        town.close()
    finally:
        server.stop()
    info = {
        "tills": [
            {
                "terminal_id": till.terminal_id,
                "merchant_id": till.merchant_id,
                "key": till.key.private_bytes_raw().hex(),
                "seq": till.seq,
                "prev": till.prev,
            }
            for till in town.tills.values()
        ],
        "cards": cards,
        "admin": ADMIN_USER,
        "admin_id": admin_id,
        "month": f"{first:%Y-%m}",
    }
    template = root / "template"
    shutil.copytree(
        root / "server", template, ignore=shutil.ignore_patterns("server.log", "port", "*.hex")
    )
    return template, info


def _traced(shim: Path, town: tuple[Path, dict[str, Any]], root: Path, what: str):
    template, info = town
    folder = root / "data"
    shutil.copytree(template, folder)
    info_path = root / "info.json"
    info_path.write_text(json.dumps(info))
    trace = harness.traced(shim, folder, "powercut.server_workload", str(info_path), what)
    return trace, folder, json.loads(info_path.read_text())


def content_key(folder: Path) -> str:
    """The database's rows, and the settlement's files as bytes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "hcard.db" not in p.name)
    extra = digest({str(p.relative_to(folder)): p.read_bytes() for p in files})
    return harness.sqlite_rows_key(folder / DATABASE) + extra


# ------------------------------------------------------------------ bookings


@dataclass(frozen=True)
class Booked:
    """What the server holds after a cut, and after the tills sent everything again."""

    problems: tuple[str, ...]  # the ledger check, before and after
    bookings: dict[tuple[int, int], int]  # (terminal, seq) -> transactions
    outcomes: dict[tuple[int, int], str]  # authorisations kept
    stored: frozenset[tuple[int, int]]  # journal rows (synced records)


def _ledger_problems(ctx: Context, when: str) -> list[str]:
    report = ledger.check(ctx.engine)
    return [] if report.ok else [f"ledger check {when}: {report.as_json()}"]


def _holdings(ctx: Context) -> tuple[dict, dict, frozenset]:
    with db_engine.read(ctx.engine) as conn:
        booked = Counter(
            (t, s)
            for t, s in conn.execute(
                sa.select(transactions.c.terminal_id, transactions.c.seq).where(
                    transactions.c.terminal_id.is_not(None)
                )
            )
        )
        outcomes = {
            (t, s): o
            for t, s, o in conn.execute(
                sa.select(
                    authorisations.c.terminal_id, authorisations.c.seq, authorisations.c.outcome
                )
            )
        }
        stored = frozenset(
            (t, s) for t, s in conn.execute(sa.select(journal.c.terminal_id, journal.c.seq))
        )
    return dict(booked), outcomes, stored


def inspect_bookings(info: dict[str, Any]):
    def inspect(folder: Path) -> Booked:
        ctx = Context.open(settings(folder))
        try:
            problems = _ledger_problems(ctx, "after the cut")
            booked, outcomes, stored = _holdings(ctx)
            for till_info, chain in zip(info["tills"], info["chains"], strict=True):
                till = Till.from_info(till_info)  # the till sends its whole chain again
                records = [Record.from_wire(r) for r in chain]
                sync_service.sync(
                    ctx, till.request(ctx), wire({"records": [r.to_wire() for r in records]})
                )
            problems += _ledger_problems(ctx, "after the tills sent again")
            again, _outcomes, _stored = _holdings(ctx)
            problems += [
                f"{key} booked {n} times after the resend" for key, n in again.items() if n > 1
            ]
        finally:
            ctx.engine.dispose()
        return Booked(tuple(problems), booked, outcomes, stored)

    return inspect


def check_bookings(held: Booked, shown: list[str]) -> list[str]:
    problems = list(held.problems)
    for line in shown:
        word, *rest = line.split()
        if word == "authorised":
            key = (int(rest[0]), int(rest[1]))
            if held.outcomes.get(key) != rest[2]:
                problems.append(f"{line!r} answered, the server has {held.outcomes.get(key)}")
            booked = held.bookings.get(key, 0)
            if booked != (1 if rest[2] == "approved" else 0):
                problems.append(f"{line!r} answered, booked {booked} times")
        elif word == "synced":
            key = (int(rest[0]), int(rest[1]))
            if key not in held.stored:
                problems.append(f"{line!r} answered, the record is not stored")
    return problems


@pytest.fixture(scope="module")
def bookings(powercut_shim, town, tmp_path_factory):
    return _traced(powercut_shim, town, tmp_path_factory.mktemp("book"), "book")


def test_the_bookings_trace_hits_the_group_commit(bookings):
    trace, _folder, _info = bookings
    ops = Counter((e.op.name, e.path) for e in trace.entries)
    assert ops["SYNC", "hcard.db-wal"] >= 4
    shown = trace.shown(len(trace.entries))
    assert sum(line.startswith("authorised") for line in shown) == 6
    assert sum(line.startswith("synced") for line in shown) == 12


@pytest.mark.parametrize("seed", [0])
def test_a_power_cut_anywhere_keeps_what_the_server_answered(bookings, tmp_path, seed):
    trace, _folder, info = bookings
    report = harness.sweep(
        trace, content_key, inspect_bookings(info), check_bookings, tmp_path, seed=seed
    )
    print(report.summary())
    assert not report.failures, report.summary()


# ---------------------------------------------------------------- settlement


@dataclass(frozen=True)
class Settled:
    """The runs after a cut, the settlement's files on disk, the problems found on the way."""

    problems: tuple[str, ...]
    runs: frozenset[int]
    on_disk: frozenset[str]  # the settlement's files present after the cut


def _settlement_files(folder: Path) -> dict[str, bytes]:
    found = {BANK_FILE: folder / BANK_FILE} if (folder / BANK_FILE).exists() else {}
    if (folder / STATEMENTS).is_dir():
        found |= {f"{STATEMENTS}/{p.name}": p for p in (folder / STATEMENTS).iterdir()}
    # a temporary file left by a cut is no settlement file: nobody takes `x.tmp` for `x`
    found = {name: path for name, path in found.items() if not name.endswith(".tmp")}
    return {name: path.read_bytes() for name, path in found.items()}


def inspect_settlement(info: dict[str, Any], final: dict[str, bytes]):
    def inspect(folder: Path) -> Settled:
        on_disk = _settlement_files(folder)
        problems = [
            f"{name} on disk is not the file written ({len(data)} of {len(final.get(name, b''))}"
            " bytes): a half-written file under its final name"
            for name, data in on_disk.items()
            if data != final.get(name)
        ]
        ctx = Context.open(settings(folder))
        try:
            problems += _ledger_problems(ctx, "after the cut")
            with db_engine.read(ctx.engine) as conn:
                runs = conn.execute(sa.select(settlement_runs.c.id, settlement_runs.c.status)).all()
                stored = set(conn.execute(sa.select(settlement_files.c.run_id)).scalars())
            live = [run_id for run_id, status in runs if status != RunStatus.CANCELLED]
            if len(live) > 1:
                problems.append(f"the month settled {len(live)} times: runs {live}")
            problems += [f"run {r} without its bank file" for r in live if r not in stored]
            for run_id in live:  # the resume: the operator runs the commands again
                for argv in commands(folder, run_id, info["admin"]):
                    with contextlib.redirect_stdout(io.StringIO()):
                        failed = cli.main(argv) != 0
                    if failed:
                        problems.append(f"{argv[:2]} failed after the cut")
            if live and _settlement_files(folder) != final:
                problems.append("the resumed run's files differ from the ones first written")
            problems += _ledger_problems(ctx, "after the resume")
        finally:
            ctx.engine.dispose()
        return Settled(tuple(problems), frozenset(live), frozenset(on_disk))

    return inspect


def check_settlement(final: dict[str, bytes]):
    written = {
        "file": {BANK_FILE},
        "statements": {name for name in final if name.startswith(f"{STATEMENTS}/")},
    }

    def check(held: Settled, shown: list[str]) -> list[str]:
        problems = list(held.problems)
        for line in shown:
            word, *rest = line.split()
            if word == "run" and int(rest[0]) not in held.runs:
                problems.append(f"{line!r} shown, the run is gone")
            elif word == "written" and not written[rest[0]] <= held.on_disk:
                missing = sorted(written[rest[0]] - held.on_disk)
                problems.append(f"{line!r} shown, not on disk: {missing}")
        return problems

    return check


@pytest.fixture(scope="module")
def settled(powercut_shim, town, tmp_path_factory):
    return _traced(powercut_shim, town, tmp_path_factory.mktemp("settle"), "settle")


def test_a_power_cut_anywhere_keeps_the_settlement_whole(settled, tmp_path):
    trace, folder, info = settled
    final = _settlement_files(folder)
    assert sorted(final)[0] == BANK_FILE
    assert len(final) == 3  # the bank file, two statements
    report = harness.sweep(
        trace, content_key, inspect_settlement(info, final), check_settlement(final), tmp_path
    )
    print(report.summary())
    assert not report.failures, report.summary()
