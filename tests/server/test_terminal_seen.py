"""What a till says of itself with every signed request (when it called, its software, the
records it has not uploaded) is stored by one conditional UPDATE: at most once a minute
unless something it says changed, and without a row lock, so that a request that changes
nothing there never waits behind the till's own sync batch (PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from fixtures.server import fresh_postgres_database

from hcard import keys
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db import locking
from hcard.server.db.tables import terminals as terminal_table
from hcard.server.services import merchants, terminals, users
from hcard.server.settings import Settings
from hcard.server.vocabulary import Role

T0 = 1_800_000_000.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def till(request, tmp_path):
    """(ctx, terminal) on a fresh database with one enrolled terminal; `ctx.now` is set by
    the test."""
    url = f"sqlite:///{tmp_path / 'h.db'}"
    if request.param == "postgres":
        url = fresh_postgres_database(request.getfixturevalue("postgres_url"))
    ctx = Context.open(Settings.build(tmp_path, url), create_key=True)
    admin = users.Staff(user_id=0, username="t", role=Role.ADMIN, merchant_id=None)
    shop = merchants.create_merchant(ctx, admin, name="Laden", iban="DE89370400440532013000")
    code = terminals.create_terminal(ctx, admin, int(str(shop["id"])), "Kasse")["code"]
    key = keys.generate()
    enrolled = terminals.enrol(ctx, str(code), keys.public_hex(key), None, "127.0.0.1")
    terminal = terminals.Terminal(
        id=int(str(enrolled["terminal_id"])),
        merchant_id=int(str(shop["id"])),
        public=key.public_key(),
    )
    yield ctx, terminal
    ctx.engine.dispose()


def _call(ctx: Context, terminal: terminals.Terminal, at_s: float, **said: object) -> None:
    """A signed request at `at_s` that says `said` and does nothing else (a snapshot pull)."""
    ctx.now = lambda: at_s  # type: ignore[method-assign]
    nonce = f"n{at_s}"
    terminals.SignedRequest(ctx, terminal, b"", nonce, said).unit(lambda _conn: None)


def _stored(ctx: Context, terminal_id: int) -> tuple[float | None, str | None, int | None]:
    with db_engine.read(ctx.engine) as conn:
        row = conn.execute(
            sa.select(
                terminal_table.c.last_seen_s,
                terminal_table.c.software_version,
                terminal_table.c.records_waiting,
            ).where(terminal_table.c.id == terminal_id)
        ).one()
    return row.last_seen_s, row.software_version, row.records_waiting


def test_the_row_is_written_once_a_minute_or_when_what_the_till_says_changed(till):
    ctx, terminal = till
    _call(ctx, terminal, T0, software_version="1.0", records_waiting=2)
    assert _stored(ctx, terminal.id) == (T0, "1.0", 2)
    # half a minute later, nothing new: nothing written
    _call(ctx, terminal, T0 + 30, software_version="1.0", records_waiting=2)
    assert _stored(ctx, terminal.id) == (T0, "1.0", 2)
    # records waiting changed: written at once, with the time
    _call(ctx, terminal, T0 + 40, software_version="1.0", records_waiting=0)
    assert _stored(ctx, terminal.id) == (T0 + 40, "1.0", 0)
    # a new software version too
    _call(ctx, terminal, T0 + 45, software_version="1.1", records_waiting=0)
    assert _stored(ctx, terminal.id) == (T0 + 45, "1.1", 0)
    # headers missing: what was said stays, and so does the time within the minute
    _call(ctx, terminal, T0 + 50)
    assert _stored(ctx, terminal.id) == (T0 + 45, "1.1", 0)
    # a minute after the last write: the time again
    _call(ctx, terminal, T0 + 106, software_version="1.1", records_waiting=0)
    assert _stored(ctx, terminal.id) == (T0 + 106, "1.1", 0)


@pytest.mark.parametrize(
    "till", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_request_that_changes_nothing_does_not_wait_for_the_tills_sync(till):
    """The till's sync batch holds its terminal's row (`locking.terminal`) while it books; a
    snapshot pull of the same till meanwhile must not queue behind it. (PostgreSQL only:
    SQLite runs one writer at a time anyway.)"""
    ctx, terminal = till
    _call(ctx, terminal, T0, software_version="1.0", records_waiting=0)
    done = threading.Event()
    with db_engine.write(ctx.engine) as conn:
        locking.terminal(conn, terminal.id)  # the sync batch, still booking
        pull = threading.Thread(
            target=lambda: (
                _call(ctx, terminal, T0 + 5, software_version="1.0", records_waiting=0),
                done.set(),
            )
        )
        pull.start()
        finished = done.wait(timeout=10)
    pull.join(timeout=30)
    assert finished, "the snapshot pull waited for the sync batch's row lock"
