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
    DATABASE,
    Till,
    settings,
    wire,
)

from hcard.records import Record
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import (
    authorisations,
    journal,
    transactions,
)
from hcard.server.services import ledger
from hcard.server.services import sync as sync_service


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
