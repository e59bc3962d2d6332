"""A town's year on the server: does its cost stay flat when the database holds a whole year?

    python bench/town_year.py [--scale 1.0] [--records 100000] [--tills 8]
                              [--database-url postgresql://...] [--towns 1]

Per town: a fresh server database with a year of traffic written in bulk (`bench/year.py`:
20,000 cards, 300 merchants, 400 tills, 3.6 million payments, and the tills' records of
the year in the journal; `--scale 0.02` for a quick run), then the real server (uvicorn
subprocess, `tests/fixtures/server.py`) on it, and:

- `ingest_per_s`: signed offline payments (made and signed before the clock starts) uploaded
  through `POST /v1/terminal/sync` in batches of 1,000 by `--tills` new tills at once, each
  waiting for its answer before the next batch (as a till does): every record's signature
  and chain checked, then booked; over all towns together;
- `verify_all_cores_per_s`: cryptography's `Ed25519PublicKey.verify` on those records'
  bytes, one process per core of this machine, all at once (`bench/verify_floor.py`; the
  mean of a run before and one after the ingest: the machine's speed drifts); `ratio` =
  ingest / verify (target 0.7); `server_cpu_us_per_record`: the servers' CPU time (user +
  system, `bench/proc_cpu.py`) during the ingest per record, which holds on a busy machine
  where the rates follow the other load (one core's verify is some 85 µs of it);
- `ledger_check_s`: the real ledger check (`services.ledger.check`) over the whole year and
  the ingest (target under 60 s); its verdict must be ok;
- `snapshot_full_kb` / `snapshot_delta_kb`: the snapshot a till pulls, compressed as it
  travels (`bench/snapshot_size.py`'s `measure`): everything, and the delta since the
  version before the ingest (a till that was off meanwhile; answered in full when the
  ingest changed most cards, `snapshot_delta_full`);
- `backup_s`: `hcard-server backup`'s function (`server/backup.py`) while the server runs;
  `restore_s`: the documented restore (SQLite: the server stopped, the backup copied over
  the database, its WAL removed, the server started and answering; PostgreSQL:
  `pg_restore` into an empty database);
- `db_mb`: the database's size after the ingest;
- `start_s` / `start_empty_s`: the till's start with a year's journal (70,000 records) and
  with an empty one (`bench/till_start.py`'s `measure_start`; building that journal takes
  minutes, `--no-till-start` leaves it out of a quick run).

Several towns (`--towns N`, issue 13's operator of several towns) are N databases, each with
its own server, as the server is built: one town per database (its accounts, card serials,
issuer key and settings are the town's own; no table has a town column), so a town's
backup, restore and ledger check are its own and one town's load never locks another's
rows. On PostgreSQL the N databases share one cluster (`--database-url` names it; each
town's database is created beside it and dropped at the end): the operator's shared cost
is that cluster's CPU, WAL and fsyncs, which this bench loads from all towns at once.

The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import snapshot_size
import till_start as till_start_bench
from fixtures.server import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    ServerInfo,
    TerminalClient,
    fresh_postgres_database,
    start_server,
)
from proc_cpu import cpu_s
from verify_floor import verify_all_cores
from year import TownSize, populate

from hcard import cardnumber
from hcard.encoding import canonical_bytes
from hcard.records import Record
from hcard.server import backup
from hcard.server.context import Context
from hcard.server.services import ledger
from hcard.server.settings import Settings

BATCH = 1_000
#: a year's journal on a busy till (issue 13)
JOURNAL_RECORDS = 70_000


@dataclass
class TownRun:
    """One town: its folder, database and running server, and the tills that upload."""

    data: Path
    database_url: str
    server: ServerInfo
    rows: dict[str, int]
    fill_s: float
    tills: list[TerminalClient]
    bodies: list[list[bytes]]  # per till, its batches in order
    messages: list[tuple[bytes, bytes, bytes]]  # (public key, signed bytes, signature)
    records: int


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hcard.server.cli", *args]


def _init(data: Path, database_url: str) -> None:
    subprocess.run(
        _cli("init", "--data-dir", str(data), "--database-url", database_url,
             "--admin-user", ADMIN_USER),
        check=True,
        capture_output=True,
        env={**os.environ, "HCARD_ADMIN_PASSWORD": ADMIN_PASSWORD},
        timeout=300,
    )  # fmt: skip


def make_town(data: Path, database_url: str, size: TownSize, args: argparse.Namespace) -> TownRun:
    """The year written, the server started on it, the tills enrolled, their records signed."""
    data.mkdir(parents=True)
    _init(data, database_url)
    started = time.perf_counter()
    rows = populate(
        database_url, Settings.build(data, database_url).issuer_key_path, size, journal=True
    )
    fill_s = time.perf_counter() - started
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:  # the purse counters the year left on the cards
        rows_seen = conn.exec_driver_sql("SELECT serial, counter FROM cards").all()
        counters: dict[int, int] = dict(rows_seen)
    engine.dispose()
    server = start_server(data, database_url)
    tills = [
        server.terminal(merchant_id=1 + n % size.merchants, name=f"Neue Kasse {n + 1}")
        for n in range(args.tills)
    ]
    bodies, messages = [], []
    per_till = args.records // args.tills
    town_records = per_till * args.tills
    serial = 0
    for till in tills:
        records: list[Record] = []
        for i in range(per_till):
            serial = serial % size.cards + 1
            counters[serial] = counter = counters[serial] + 1
            records.append(
                till.payment(
                    cardnumber.from_serial(serial),
                    f"04{serial:012x}",
                    50 + (i * 37) % 450,
                    mode="offline",
                    counter=counter,
                )
            )
        bodies.append(
            [
                canonical_bytes({"records": [r.to_wire() for r in records[at : at + BATCH]]})
                for at in range(0, len(records), BATCH)
            ]
        )
        public = till.key.public_key().public_bytes_raw()
        messages += [(public, r.signed_bytes(), bytes.fromhex(r.sig)) for r in records[:500]]
        till.snapshot(0)  # the connection open, as a till's is
    return TownRun(data, database_url, server, rows, fill_s, tills, bodies, messages, town_records)


# --- the measurements ------------------------------------------------------------------------


def ingest(towns: list[TownRun]) -> tuple[float, float | None]:
    """Every till of every town uploads its batches at once; records per second overall, and
    the servers' CPU per record in µs (None without /proc)."""
    failures: list[str] = []

    def upload(till: TerminalClient, bodies: list[bytes]) -> None:
        for body in bodies:
            answer = till.signed("POST", "/v1/terminal/sync", body)
            if answer.status_code != 200 or answer.json()["results"][-1]["status"] != "applied":
                failures.append(f"{answer.status_code} {answer.text[:300]}")
                return

    threads = [
        threading.Thread(target=upload, args=(till, bodies))
        for town in towns
        for till, bodies in zip(town.tills, town.bodies, strict=True)
    ]
    cpu_before = [cpu_s(town.server.process.pid) for town in towns]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu_after = [cpu_s(town.server.process.pid) for town in towns]
    if failures:
        raise RuntimeError(f"ingest failed: {failures[0]}")
    records = sum(town.records for town in towns)
    cpu_used = [
        after - before
        for before, after in zip(cpu_before, cpu_after, strict=True)
        if before is not None and after is not None
    ]
    cpu_us = sum(cpu_used) / records * 1e6 if len(cpu_used) == len(towns) else None
    return records / elapsed, cpu_us


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def ledger_check(town: TownRun) -> float:
    ctx = Context.open(Settings.build(town.data, town.database_url))
    try:
        seconds, report = _timed(lambda: ledger.check(ctx.engine))
    finally:
        ctx.engine.dispose()
    if not report.ok:
        raise RuntimeError(f"ledger check failed: {report}")
    return seconds


def snapshot_version(town: TownRun) -> int:
    ctx = Context.open(Settings.build(town.data, town.database_url))
    try:
        return snapshot_size.version(ctx)
    finally:
        ctx.engine.dispose()


def snapshot_sizes(town: TownRun, since: int) -> dict[str, Any]:
    """Full snapshot and the delta since `since`, compressed as the till receives them
    (`bench/snapshot_size.py`: the server's own answer and encoding)."""
    ctx = Context.open(Settings.build(town.data, town.database_url))
    try:
        return snapshot_size.measure(ctx, since)
    finally:
        ctx.engine.dispose()


def backup_restore(town: TownRun, folder: Path) -> tuple[float, float]:
    """(backup_s, restore_s) with the real commands; the server runs again afterwards."""
    backup_s, made = _timed(lambda: backup.backup(town.database_url, folder, keep=1))
    if town.database_url.startswith("postgresql"):
        target = fresh_postgres_database(town.database_url)
        url, env = backup._libpq_url(target)
        restore_s, _done = _timed(
            lambda: subprocess.run(
                ["pg_restore", "--no-owner", "--jobs", str(os.cpu_count() or 1), "--dbname", url,
                 str(made)],
                check=True, env={**os.environ, **env}, capture_output=True,
            )
        )  # fmt: skip
        _drop_database(target)
        return backup_s, restore_s
    database = backup.sqlite_path(town.database_url)
    town.server.stop()
    started = time.perf_counter()
    shutil.copyfile(made, database)
    with database.open("rb") as handle:
        os.fsync(handle.fileno())
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    town.server = start_server(town.data, town.database_url)
    return backup_s, time.perf_counter() - started


def db_mb(town: TownRun) -> float:
    if town.database_url.startswith("postgresql"):
        engine = sa.create_engine(town.database_url)
        with engine.connect() as conn:
            size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
        engine.dispose()
        return round(int(size or 0) / 2**20, 1)
    database = backup.sqlite_path(town.database_url)
    files = [database, Path(f"{database}-wal")]
    return round(sum(f.stat().st_size for f in files if f.exists()) / 2**20, 1)


def till_start(folder: Path) -> dict[str, Any]:
    """The till's start with a year's journal and with an empty one (`bench/till_start.py`)."""
    figures = till_start_bench.measure_start(folder, JOURNAL_RECORDS)
    return {
        "start_s": figures["start_s"],
        "start_empty_s": figures["start_empty_s"],
        "start_ratio": figures["ratio"],
    }


def _drop_database(url: str) -> None:
    parsed = sa.make_url(url)
    admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    admin.dispose()


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="the town's size (1: a year)")
    parser.add_argument(
        "--records", type=int, help="records ingested per town (default: 100,000 x scale)"
    )
    parser.add_argument("--tills", type=int, default=8, help="tills uploading at once per town")
    parser.add_argument("--database-url", help="a PostgreSQL cluster (default: SQLite files)")
    parser.add_argument("--towns", type=int, default=1, help="towns, one database each")
    parser.add_argument(
        "--no-till-start", action="store_true", help="leave out the till's start (minutes)"
    )
    args = parser.parse_args()
    size = TownSize().scaled(args.scale)
    if args.records is None:
        args.records = max(round(100_000 * args.scale), args.tills * BATCH)
    made_databases: list[str] = []
    towns: list[TownRun] = []
    with tempfile.TemporaryDirectory(prefix="hcard-town-year-") as tmp:
        root = Path(tmp)
        try:
            for n in range(args.towns):
                if args.database_url:
                    url = fresh_postgres_database(args.database_url)
                    made_databases.append(url)
                else:
                    url = f"sqlite:///{root / f'town{n}' / 'hcard.db'}"
                towns.append(make_town(root / f"town{n}", url, size, args))
            messages = [m for town in towns for m in town.messages]
            load_before = _load()
            verify_before = verify_all_cores(messages)
            since = [snapshot_version(town) for town in towns]
            ingest_per_s, server_cpu_us = ingest(towns)
            verify_per_s = (verify_before + verify_all_cores(messages)) / 2
            per_town = []
            for n, town in enumerate(towns):
                figures: dict[str, Any] = {"rows": town.rows, "fill_s": round(town.fill_s, 1)}
                figures.update(snapshot_sizes(town, since[n]))
                figures["ledger_check_s"] = round(ledger_check(town), 2)
                backup_s, restore_s = backup_restore(town, root / f"backups{n}")
                figures["backup_s"], figures["restore_s"] = round(backup_s, 2), round(restore_s, 2)
                figures["db_mb"] = db_mb(town)
                per_town.append(figures)
            start = {} if args.no_till_start else till_start(root / "till")
        finally:
            for town in towns:
                town.server.stop()
            for url in made_databases:
                _drop_database(url)
    first = per_town[0]
    result: dict[str, Any] = {
        "ingest_per_s": round(ingest_per_s, 1),
        "verify_all_cores_per_s": round(verify_per_s, 1),
        "ratio": round(ingest_per_s / verify_per_s, 3),
        "server_cpu_us_per_record": None if server_cpu_us is None else round(server_cpu_us, 1),
        # each town's own figure; with several towns the slowest (sizes: the first town's)
        "ledger_check_s": max(t["ledger_check_s"] for t in per_town),
        "snapshot_full_kb": first["snapshot_full_kb"],
        "snapshot_delta_kb": first["snapshot_delta_kb"],
        "snapshot_delta_full": first["snapshot_delta_full"],
        "backup_s": max(t["backup_s"] for t in per_town),
        "restore_s": max(t["restore_s"] for t in per_town),
        "db_mb": first["db_mb"],
        **start,
        "engine": "postgresql" if args.database_url else "sqlite",
        "towns": args.towns,
        "scale": args.scale,
        "size": size.__dict__,
        "records_per_town": towns[0].records,
        "tills_per_town": args.tills,
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": _load(),
        "per_town": per_town,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
