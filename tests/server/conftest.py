"""`server`: one fresh server per test module and engine, so each test runs on SQLite and
on the real PostgreSQL (`-m "not postgres"` skips the latter)."""

from __future__ import annotations

import pytest
from fixtures.server import fresh_postgres_database, start_server


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def server(request, tmp_path_factory):
    database_url = None
    if request.param == "postgres":
        database_url = fresh_postgres_database(request.getfixturevalue("postgres_url"))
    started = start_server(tmp_path_factory.mktemp(f"server-{request.param}"), database_url)
    yield started
    started.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    """A fresh, migrated database engine (no server process): for tests of the service
    layer's building blocks, on SQLite and on the real PostgreSQL."""
    import sqlalchemy as sa

    from hcard.server.db import engine as db_engine
    from hcard.server.db import migrate

    url = f"sqlite:///{tmp_path / 'hcard.db'}"
    if request.param == "postgres":
        url = fresh_postgres_database(request.getfixturevalue("postgres_url"))
    engine: sa.Engine = db_engine.make_engine(url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()
