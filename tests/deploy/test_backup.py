"""The database backup behind hcard-server-backup.timer (`hcard-server backup`), on real SQLite
and PostgreSQL."""

from __future__ import annotations

import glob
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hcard.server import backup


def _wal_database(path: Path, rows: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE postings (id INTEGER PRIMARY KEY, amount_cents INTEGER NOT NULL)")
    db.executemany("INSERT INTO postings (amount_cents) VALUES (?)", [(i,) for i in range(rows)])
    db.commit()
    db.close()


def test_sqlite_backup_is_consistent_while_a_writer_keeps_writing(tmp_path: Path):
    """Every pair of rows is written in one transaction with amounts summing to zero; the
    backup taken in the middle of that must hold whole pairs only, and open on its own."""
    live = tmp_path / "hcard.db"
    _wal_database(live, 0)
    stop = threading.Event()
    written = threading.Event()

    def writer() -> None:
        db = sqlite3.connect(live, timeout=30)
        n = 0
        while not stop.is_set():
            with db:
                db.execute("INSERT INTO postings (amount_cents) VALUES (?)", (n + 1,))
                db.execute("INSERT INTO postings (amount_cents) VALUES (?)", (-(n + 1),))
            n += 1
            if n == 200:
                written.set()
        db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert written.wait(60)
        made = backup.backup(f"sqlite:///{live}", tmp_path / "backups", keep=3)
    finally:
        stop.set()
        thread.join()
    assert made.suffix == ".sqlite3"
    assert made.stat().st_mode & 0o777 == 0o600
    assert not Path(str(made) + "-wal").exists()
    copy = sqlite3.connect(made)
    count, total = copy.execute("SELECT count(*), sum(amount_cents) FROM postings").fetchone()
    assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    copy.close()
    assert count >= 400
    assert count % 2 == 0
    assert total == 0


def test_keeps_only_the_newest_generations(tmp_path: Path):
    live = tmp_path / "hcard.db"
    _wal_database(live, 10)
    dest = tmp_path / "backups"
    made = [backup.backup(str(live), dest, keep=3) for _ in range(5)]
    # A copy killed mid-run leaves a .part file; the next run clears it.
    (dest / "hcard-20000101T000000000000Z.sqlite3.part").write_bytes(b"half")
    made.append(backup.backup(str(live), dest, keep=3))
    assert sorted(dest.iterdir()) == made[-3:]
    assert len(set(made)) == 6


def _server_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hcard.server.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_hcard_server_backup_copies_the_servers_own_database(tmp_path: Path):
    """What the unit runs: `hcard-server backup` finds the database from the server's own
    settings (here `--data-dir`), the default folder is `<data dir>/backups`, and
    `HCARD_BACKUP_KEEP` is obeyed."""
    data_dir = tmp_path / "data"
    env = {"HCARD_ADMIN_PASSWORD": "backup-test-pw", "HCARD_DATABASE_URL": ""}
    assert _server_cli("init", "--data-dir", str(data_dir), env=env).returncode == 0
    made = []
    for _ in range(3):
        done = _server_cli(
            "backup", "--data-dir", str(data_dir), env={**env, "HCARD_BACKUP_KEEP": "2"}
        )
        assert done.returncode == 0, done.stderr
        made.append(Path(done.stdout.strip()))
    assert sorted((data_dir / "backups").iterdir()) == made[-2:]
    copy = sqlite3.connect(made[-1])
    assert copy.execute("SELECT username, role FROM users").fetchall() == [("admin", "admin")]
    copy.close()


def test_cli_reports_a_missing_database_in_german_and_english(tmp_path: Path):
    done = _server_cli(
        "backup",
        "--database-url",
        f"sqlite:///{tmp_path}/nope.db",
        "--dest",
        str(tmp_path / "b"),
    )
    assert done.returncode == 1
    assert "Datenbank nicht gefunden / database not found" in done.stderr
    assert not (tmp_path / "nope.db").exists()


def test_cli_refuses_keep_zero(tmp_path: Path):
    live = tmp_path / "hcard.db"
    _wal_database(live, 1)
    done = _server_cli(
        "backup", "--database-url", str(live), "--dest", str(tmp_path / "b"), "--keep", "0"
    )
    assert done.returncode == 2
    assert "mindestens 1 Generation / at least 1 generation" in done.stderr
    assert not (tmp_path / "b").exists()


@pytest.mark.postgres
def test_postgres_backup_with_pg_dump(postgres_url: str, tmp_path: Path):
    pg_bin = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))[-1]
    psycopg = pytest.importorskip("psycopg")
    libpq, _ = backup._libpq_url(postgres_url)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS deploy_backup_probe")
        conn.execute("CREATE TABLE deploy_backup_probe (n integer)")
        conn.execute("INSERT INTO deploy_backup_probe VALUES (42)")
    try:
        made = backup.backup(postgres_url, tmp_path / "pg", keep=2, pg_dump=pg_bin)
        listing = subprocess.run(
            [str(Path(pg_bin).with_name("pg_restore")), "--list", str(made)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "TABLE public deploy_backup_probe" in listing
        assert made.suffix == ".pgdump"
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute("DROP TABLE deploy_backup_probe")


def test_postgres_password_never_reaches_the_command_line():
    uri, env = backup._libpq_url("postgresql+psycopg://hcard:s%40cret@db.example.org:5433/hcard")
    assert uri == "postgresql://hcard@db.example.org:5433/hcard"
    assert env == {"PGPASSWORD": "s@cret"}
