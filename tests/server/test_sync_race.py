"""Two tills syncing the same card at the same moment, on PostgreSQL (SQLite has one writer).

The batches are run in-process so the test can hold both between loading their
state and booking it: without the account locks in `_Batch._load` each batch
decides against the balance and counters from before the other one, and the
copied card (same counter from two tills) and its overdraw both go unnoticed.
"""

from __future__ import annotations

import json
import secrets
import threading
import time

import pytest
import sqlalchemy as sa
from fixtures.server import fresh_postgres_database, start_server

from hcard.encoding import canonical_bytes
from hcard.server.context import Context
from hcard.server.services import sync as sync_service
from hcard.server.services.terminals import SignedRequest, Terminal
from hcard.server.settings import Settings

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server(tmp_path_factory, postgres_url):
    started = start_server(
        tmp_path_factory.mktemp("server-race"), fresh_postgres_database(postgres_url)
    )
    yield started
    started.stop()


def _waiting_on_a_lock(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def test_same_card_and_counter_from_two_tills_at_once_is_caught(server, monkeypatch):
    card, uid = server.new_card(1_000)
    first, second = server.terminal(), server.terminal()
    batches = [
        (first, first.payment(card, uid, 800, mode="offline", counter=7)),
        (second, second.payment(card, uid, 800, mode="offline", counter=7)),  # restored memory
    ]
    ctx = Context.open(Settings.build(server.data_dir, server.database_url))
    loaded = []
    changed = threading.Condition()
    load = sync_service._Batch._load

    def load_then_wait(batch):
        load(batch)
        with changed:
            loaded.append(batch)
            changed.notify_all()
            # hold the transaction until the other batch has loaded too (the race)
            # or waits for our row locks (the fix)
            deadline = time.monotonic() + 60
            while len(loaded) < 2 and time.monotonic() < deadline:
                if _waiting_on_a_lock(ctx.engine):
                    return
                changed.wait(0.05)

    monkeypatch.setattr(sync_service._Batch, "_load", load_then_wait)
    answers = {}

    def run(till, record):
        terminal = Terminal(till.terminal_id, till.merchant_id, till.key.public_key())
        payload = json.loads(canonical_bytes({"records": [record.to_wire()]}))
        signed = SignedRequest(ctx, terminal, b"", secrets.token_hex(16))
        answers[till.terminal_id] = sync_service.sync(ctx, signed, payload)

    threads = [threading.Thread(target=run, args=batch) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    ctx.engine.dispose()

    assert [a["results"][0]["status"] for a in answers.values()] == ["applied", "applied"]
    state = server.staff.card(card)
    assert (state["balance_cents"], state["flagged"]) == (-600, True)
    kinds = {a["kind"] for a in server.staff.alerts() if a["card"] == card}
    assert kinds == {"card_rollback", "overdraw"}
    assert server.staff.ledger_check()["ok"]
