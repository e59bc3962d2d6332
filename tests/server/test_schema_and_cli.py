"""Migrations build exactly the tables; `init` and `ledger check` work and catch damage."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fixtures.server import fresh_postgres_database

from hcard.server.db import engine as db_engine
from hcard.server.db import migrate
from hcard.server.db.tables import metadata


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    if request.param == "postgres":
        return fresh_postgres_database(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'hcard.db'}"


def test_migrations_build_exactly_the_tables(database_url):
    engine = db_engine.make_engine(database_url)
    migrate.upgrade(engine)
    migrate.upgrade(engine)  # a second run is a no-op
    assert migrate.current(engine) == migrate.head()
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert diff == []


def _cli(*args, check=True):
    return subprocess.run(
        [sys.executable, "-m", "hcard.server.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        env={"HCARD_ADMIN_PASSWORD": "cli-test-password", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_init_makes_key_0600_and_ledger_check_catches_damage(server_factory, database_url):
    server = server_factory(engine="postgres" if database_url.startswith("postgres") else "sqlite")
    key = server.data_dir / "issuer.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    card, _ = server.new_card(1_234)
    common = ["--data-dir", str(server.data_dir), "--database-url", server.database_url]
    report = json.loads(_cli("ledger", "check", *common).stdout)
    assert report["ok"]
    assert report["transactions"] == 1

    engine = sa.create_engine(server.database_url)
    with engine.begin() as connection:  # a balance changed behind the ledger's back
        connection.execute(
            sa.text("UPDATE accounts SET balance_cents = balance_cents + 1 WHERE key = :k"),
            {"k": f"card:{card}"},
        )
    damaged = _cli("ledger", "check", *common, check=False)
    assert damaged.returncode == 1, damaged.stderr
    assert damaged.stdout, damaged.stderr
    report = json.loads(damaged.stdout)
    assert not report["ok"]
    assert len(report["wrong_balances"]) == 1
    with engine.begin() as connection:  # a posting altered: its transaction no longer sums to 0
        connection.execute(
            sa.text("UPDATE accounts SET balance_cents = balance_cents - 1 WHERE key = :k"),
            {"k": f"card:{card}"},
        )
        connection.execute(sa.text("UPDATE postings SET amount_cents = amount_cents + 5"))
    report = json.loads(_cli("ledger", "check", *common, check=False).stdout)
    assert report["unbalanced_transactions"]
    engine.dispose()


def test_serve_without_init_says_what_to_do(tmp_path):
    result = _cli("serve", "--data-dir", str(tmp_path / "empty"), check=False)
    assert result.returncode == 1
    assert "hcard-server init" in result.stderr
    assert not (tmp_path / "empty").exists()  # nothing half-made


def test_the_sqlite_files_are_0600_whatever_the_umask(server_factory):
    """`hcard-server init` runs with root's umask (022) in install-server.sh; only the unit
    has UMask=0077. The database and its -wal/-shm hold every balance: 0600 all the same."""
    previous = os.umask(0o022)
    try:
        server = server_factory()  # init and serve, both under umask 022
    finally:
        os.umask(previous)
    server.new_card(1_000)  # a booking, so the WAL is in use
    database = server.data_dir / "hcard.db"
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
