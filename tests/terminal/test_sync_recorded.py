"""The sync request carries, beside the signed records, when the till journalled each one.

`"recorded_s": {"<seq>": <int epoch seconds>}` (docs/protocol.md): unsigned, informational,
the till's clock (which may be wrong), only for the records of that batch, from the journal's
`created_s`. Settlement lists an offline payment that reached the server after the month's
cut-off as late, with this date. Checked three ways: the wire body the signed client sends
(captured by a fake transport), what the sync agent hands the client per batch, and end to
end: what the real server stored.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fixtures.terminal import JOURNAL_CARD, offline_payment_body, server_card

from hcard.errors import Code, HCardError, error_body
from hcard.records import Record
from hcard.terminal import journal as jr
from hcard.terminal import sync
from hcard.terminal.client import Clock, ServerClient
from hcard.terminal.payment import Link
from hcard.terminal.till import Outcome

TERMINAL_ID = 7
CARD = JOURNAL_CARD


@pytest.fixture
def journal(tmp_path):
    journal = jr.Journal(tmp_path / "journal.sqlite", TERMINAL_ID, Ed25519PrivateKey.generate())
    yield journal
    journal.close()


def _fill(journal: jr.Journal, times: list[float]) -> list[Record]:
    """Offline payments shown as approved (the upload stops before one still `approved`)."""
    records = []
    for n, created_s in enumerate(times, start=1):
        record = journal.append(
            "payment",
            offline_payment_body(n),
            state=jr.State.APPROVED,
            day="2026-11-30",
            created_s=created_s,
        )
        journal.finish(record.seq)
        records.append(record)
    return records


class _NoUnshown:
    """The payments' part of an upload: nothing here waits for an answer."""

    def settle_unshown(self, _results: list[dict[str, Any]]) -> int:
        return 0


class _Capture(requests.adapters.BaseAdapter):
    """A transport that keeps each request and answers a sync as applied."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    def send(self, request, **_kwargs):
        body = json.loads(request.body)
        self.bodies.append(body)
        records = [Record.from_wire(item) for item in body["records"]]
        answer = {
            "results": [
                {"seq": r.seq, "status": "applied", "code": None, "outcome": None} for r in records
            ],
            "last_seq": records[-1].seq,
            "last_hash": records[-1].hash,
        }
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(answer).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def _client(capture: _Capture) -> ServerClient:
    client = ServerClient("http://till.invalid", TERMINAL_ID, Ed25519PrivateKey.generate(), Clock())
    session = requests.Session()
    session.mount("http://", capture)
    client._local.session = session  # this thread's session: the fake transport
    return client


def test_the_signed_sync_request_carries_recorded_s_beside_the_records(journal):
    records = _fill(journal, [1_764_500_000.9, 1_764_500_060.2])
    capture = _Capture()
    _client(capture).sync(records, {1: 1_764_500_000, 2: 1_764_500_060})
    (body,) = capture.bodies
    assert set(body) == {"records", "recorded_s"}
    assert body["records"] == [r.to_wire() for r in records]  # the signed records unchanged
    assert body["recorded_s"] == {"1": 1_764_500_000, "2": 1_764_500_060}


def test_without_times_the_request_is_the_records_alone(journal):
    records = _fill(journal, [1_764_500_000.0])
    capture = _Capture()
    _client(capture).sync(records)
    assert list(capture.bodies[0]) == ["records"]


def test_each_batch_names_the_times_of_its_own_records_only(journal, monkeypatch):
    """Whole seconds of the till's clock at journalling, per batch; a time the server could
    not take (negative, past 2**63 - 1) is left out rather than the batch refused."""
    times = [1_764_500_000.0 + 10 * n + 0.75 for n in range(5)]
    times[3] = 1e30
    times[4] = -5.0
    _fill(journal, times)
    monkeypatch.setattr(sync, "BATCH_SIZE", 3)
    capture = _Capture()
    agent = sync.SyncAgent(journal, _NoUnshown(), None, _client(capture), Link())
    agent._upload()
    assert [sorted(b.get("recorded_s", {})) for b in capture.bodies] == [["1", "2", "3"], []]
    assert capture.bodies[0]["recorded_s"] == {
        "1": 1_764_500_000,
        "2": 1_764_500_010,
        "3": 1_764_500_020,
    }
    assert "recorded_s" not in capture.bodies[1]  # nothing to say: the key is left out
    assert journal.acked_seq() == 5


class _OldServer:
    """A server from before `recorded_s` and `shown`: it refuses any other key than `records`."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[int, int] | None, list[int] | None]] = []

    def sync(
        self,
        records: list[Record],
        recorded_s: dict[int, int] | None = None,
        shown: list[int] | None = None,
    ):
        self.calls.append((recorded_s, shown))
        if recorded_s or shown:
            raise HCardError(Code.MALFORMED_REQUEST, reason='body must be {"records": [...]}')
        return _applied(records)


def _applied(records: list[Record]) -> dict[str, Any]:
    """A sync answer that applies every record."""
    return {
        "results": [
            {"seq": r.seq, "status": "applied", "code": None, "outcome": None} for r in records
        ],
        "last_seq": records[-1].seq,
        "last_hash": records[-1].hash,
    }


def test_a_server_that_refuses_the_field_gets_the_records_alone(journal):
    """A till updated before its server must not stop syncing: the request is sent again
    without `shown`, then without the times, and the agent sends no times after that
    (`shown` is tried again with each batch)."""
    _fill(journal, [1_764_500_000.0, 1_764_500_001.0])
    old = _OldServer()
    agent = sync.SyncAgent(journal, _NoUnshown(), None, old, Link())
    agent._upload()
    assert journal.acked_seq() == 2
    _fill(journal, [1_764_500_002.0])
    agent._upload()
    times = {1: 1_764_500_000, 2: 1_764_500_001}
    assert old.calls == [
        (times, [1, 2]),
        (times, None),
        (None, None),
        ({}, [3]),  # no times (refused before), with `shown`
        (None, None),
    ]
    assert journal.acked_seq() == 3
    assert error_body(Code.MALFORMED_REQUEST)["code"] == "malformed_request"


def test_the_server_stores_when_the_till_recorded_each_record(
    live_server, card_emulator, enrolled_terminal
):
    if not live_server.database_url.startswith("sqlite"):
        pytest.skip("reads the server's SQLite file")
    _number, image = server_card(live_server, 5_000)
    card_emulator.present(image)
    till = enrolled_terminal.till()
    till.sync_now()
    till.link.down()  # an offline payment: the kind settlement may list as late
    paid = till.pay(700, card_timeout_s=10)
    assert (paid.outcome, paid.offline) == (Outcome.APPROVED, True)
    created_s = till.journal.entry(paid.seq).created_s
    till.sync_now()
    assert till.journal.unsent_count() == 0
    database = live_server.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        (stored,) = db.execute(
            "SELECT recorded_s FROM journal WHERE terminal_id = ? AND seq = ?",
            [enrolled_terminal.terminal_id, paid.seq],
        ).fetchone()
    assert stored == int(created_s)


class _ServerBeforeShown:
    """A server that knows `recorded_s` but not `shown` (refuses only that key)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[int, int] | None, list[int] | None]] = []

    def sync(
        self,
        records: list[Record],
        recorded_s: dict[int, int] | None = None,
        shown: list[int] | None = None,
    ):
        self.calls.append((recorded_s, shown))
        if shown:
            raise HCardError(Code.MALFORMED_REQUEST, reason="shown")
        return _applied(records)


def test_a_server_that_refuses_shown_keeps_the_times_and_is_asked_again(journal):
    """`shown` is dropped for the refused batch only (a server updated later must get it,
    or a restore would decline what the till showed), and `recorded_s` stays."""
    online = {**offline_payment_body(1), "mode": "online"}
    first = journal.append(
        "payment", online, state=jr.State.INTENT, day="2026-11-30", created_s=1_764_500_000.0
    )
    journal.set_state(first.seq, jr.State.APPROVED)
    journal.set_state(first.seq, jr.State.FINAL)
    server = _ServerBeforeShown()
    agent = sync.SyncAgent(journal, _NoUnshown(), None, server, Link())
    agent._upload()
    second = journal.append(
        "payment",
        {**online, "counter": 2},
        state=jr.State.INTENT,
        day="2026-11-30",
        created_s=1_764_500_001.0,
    )
    journal.set_state(second.seq, jr.State.APPROVED)
    journal.set_state(second.seq, jr.State.FINAL)
    agent._upload()
    assert journal.acked_seq() == 2
    sent = [(bool(recorded), shown) for recorded, shown in server.calls]
    assert sent == [(True, [1]), (True, None), (True, [2]), (True, None)]


def test_a_server_from_before_both_fields_gets_shown_records_alone_too(journal):
    """After the server refused `recorded_s`, a batch with a shown online record still
    tries `shown` (a server updated later must get it) and, refused, goes alone: the till
    never stops syncing because of a field the server does not know."""
    online = {**offline_payment_body(1), "mode": "online"}
    server = _OldServer()
    agent = sync.SyncAgent(journal, _NoUnshown(), None, server, Link())
    for n in (1, 2):
        record = journal.append(
            "payment",
            {**online, "counter": n},
            state=jr.State.INTENT,
            day="2026-11-30",
            created_s=1_764_500_000.0 + n,
        )
        journal.set_state(record.seq, jr.State.APPROVED)
        journal.set_state(record.seq, jr.State.FINAL)
        agent._upload()
        assert journal.acked_seq() == n
    assert agent._send_recorded is False
