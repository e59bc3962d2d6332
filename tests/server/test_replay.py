"""Replay protection lives in the signed request's unit of work, not in each service.

Over HTTP on both engines: replaying an authorise or a sync request (the same bytes, the
same nonce) is refused `nonce_reused` and books nothing. In process: a `SignedRequest`
records its nonce before its unit's work, in the same transaction; an endpoint that takes a
booking request and forgets to run its unit gets a 500 and the nonce is recorded anyway; and
no function that receives a `SignedRequest` opens a write transaction any other way.
"""

from __future__ import annotations

import ast
import secrets
import time
import warnings
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from fixtures.server import start_server

from hcard import keys, reqsign
from hcard.encoding import canonical_bytes
from hcard.errors import Code, HCardError
from hcard.server.api.deps import NonceNotRecordedError, SignedCallDep
from hcard.server.app import create_app
from hcard.server.context import Context
from hcard.server.db.tables import nonces
from hcard.server.services import merchants, terminals, users
from hcard.server.services.terminals import SignedRequest
from hcard.server.settings import Settings
from hcard.server.vocabulary import Role

SERVER = Path(__file__).resolve().parents[2] / "server"


def _send_twice(till, path: str, body: bytes) -> tuple:
    nonce, now = secrets.token_hex(16), int(time.time())
    first = till.signed("POST", path, body, nonce=nonce, timestamp_s=now)
    again = till.signed("POST", path, body, nonce=nonce, timestamp_s=now)
    return first, again


def test_replayed_authorise_is_refused_and_books_nothing(server):
    number, uid = server.new_card(1_000)
    till = server.terminal()
    record = till.payment(number, uid, 300, counter=1)
    first, again = _send_twice(
        till, "/v1/terminal/authorise", canonical_bytes({"record": record.to_wire()})
    )
    assert first.status_code == 200
    assert first.json()["outcome"] == "approved"
    assert (again.status_code, again.json()["code"]) == (401, "nonce_reused")
    assert server.staff.card(number)["balance_cents"] == 700


def test_replayed_sync_is_refused(server):
    number, uid = server.new_card(1_000)
    till = server.terminal()
    record = till.payment(number, uid, 200, mode="offline", counter=1)
    body = canonical_bytes({"records": [record.to_wire()]})
    first, again = _send_twice(till, "/v1/terminal/sync", body)
    assert first.json()["results"][0]["status"] == "applied"
    assert (again.status_code, again.json()["code"]) == (401, "nonce_reused")
    assert server.staff.card(number)["balance_cents"] == 800
    assert server.staff.ledger_check()["ok"]


# --- in process ------------------------------------------------------------------------


@pytest.fixture
def enrolled(tmp_path):
    """A Context on a fresh SQLite database with one enrolled terminal: (ctx, id, key)."""
    ctx = Context.open(Settings.build(tmp_path, f"sqlite:///{tmp_path / 'h.db'}"), create_key=True)
    admin = users.Staff(user_id=0, username="t", role=Role.ADMIN, merchant_id=None)
    shop = merchants.create_merchant(ctx, admin, name="Laden", iban="DE89370400440532013000")
    code = terminals.create_terminal(ctx, admin, int(str(shop["id"])), "Kasse")["code"]
    key = keys.generate()
    enrolled = terminals.enrol(ctx, str(code), keys.public_hex(key), None, "127.0.0.1")
    yield ctx, int(str(enrolled["terminal_id"])), key
    ctx.engine.dispose()


def _nonces(ctx: Context) -> set[str]:
    with ctx.engine.connect() as conn:
        return set(conn.execute(sa.select(nonces.c.nonce)).scalars())


def test_the_unit_records_the_nonce_before_the_work_in_the_same_transaction(enrolled):
    ctx, terminal_id, key = enrolled
    headers = reqsign.sign_request(key, terminal_id, "POST", "/x", b"{}")
    signed = terminals.authenticate(ctx, "POST", "/x", b"{}", headers)
    nonce = headers[reqsign.HEADER_NONCE]
    seen_inside: list[set[str]] = []

    def work(conn: sa.Connection) -> str:
        seen_inside.append(set(conn.execute(sa.select(nonces.c.nonce)).scalars()))
        return "booked"

    assert signed.unit(work) == "booked"
    assert len(seen_inside[0]) == 1  # already recorded when the work ran
    assert _nonces(ctx) == seen_inside[0] == {nonce}
    with pytest.raises(RuntimeError, match="one unit"):
        signed.unit(work)  # one unit (one commit) per request

    replay = terminals.authenticate(ctx, "POST", "/x", b"{}", headers)
    calls: list[int] = []
    with pytest.raises(HCardError) as refused:
        replay.unit(lambda conn: calls.append(1))
    assert refused.value.code is Code.NONCE_REUSED
    assert calls == []  # the replay's work never ran


def test_a_failed_unit_leaves_the_nonce_unrecorded(enrolled):
    """A refusal inside the unit rolls its nonce back with it (as before: nothing booked)."""
    ctx, terminal_id, key = enrolled
    headers = reqsign.sign_request(key, terminal_id, "POST", "/x", b"{}")
    signed = terminals.authenticate(ctx, "POST", "/x", b"{}", headers)

    def refuse(conn: sa.Connection) -> None:
        raise HCardError(Code.SEQUENCE_CONFLICT)

    with pytest.raises(HCardError):
        signed.unit(refuse)
    assert _nonces(ctx) == set()


def test_an_endpoint_that_forgets_its_unit_cannot_be_replayed(enrolled):
    ctx, terminal_id, key = enrolled
    app = create_app(ctx)

    @app.post("/v1/terminal/forgetful")
    async def forgetful(booking: SignedCallDep) -> dict[str, int]:
        return {"terminal": await booking.run(lambda signed: signed.terminal.id)}  # no unit

    @app.post("/v1/terminal/unchecked")
    async def unchecked(booking: SignedCallDep) -> dict[str, str]:
        return {"done": "without authentication"}  # never runs booking.run

    @app.get("/v1/terminal/swallowing")
    async def swallowing(booking: SignedCallDep) -> dict[str, str]:
        try:
            return {"read": await booking.read(lambda terminal: "yes")}
        except HCardError:  # a refused signature caught: its answer must not go out
            return {"read": "without authentication"}

    @app.get("/v1/terminal/reading")
    async def reading(booking: SignedCallDep) -> dict[str, int]:
        return {"terminal": await booking.read(lambda terminal: terminal.id)}

    @app.post("/v1/terminal/careful")
    async def careful(booking: SignedCallDep) -> dict[str, str]:
        return {"done": await booking.run(lambda signed: signed.unit(lambda conn: "yes"))}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette deprecates its client on httpx: not ours
        from fastapi.testclient import TestClient

    with TestClient(app) as client:
        headers = reqsign.sign_request(key, terminal_id, "POST", "/v1/terminal/forgetful", b"{}")
        with pytest.raises(NonceNotRecordedError):
            client.post("/v1/terminal/forgetful", content=b"{}", headers=headers)
        again = client.post("/v1/terminal/forgetful", content=b"{}", headers=headers)
        assert (again.status_code, again.json()["code"]) == (401, "nonce_reused")

        with pytest.raises(NonceNotRecordedError):  # not authenticated: never its answer
            client.post("/v1/terminal/unchecked", content=b"{}")

        with pytest.raises(NonceNotRecordedError):
            client.get("/v1/terminal/swallowing")

        headers = reqsign.sign_request(key, terminal_id, "GET", "/v1/terminal/reading", b"")
        first = client.get("/v1/terminal/reading", headers=headers)
        assert (first.status_code, first.json()) == (200, {"terminal": terminal_id})
        again = client.get("/v1/terminal/reading", headers=headers)
        assert (again.status_code, again.json()["code"]) == (401, "nonce_reused")

        headers = reqsign.sign_request(key, terminal_id, "POST", "/v1/terminal/careful", b"{}")
        first = client.post("/v1/terminal/careful", content=b"{}", headers=headers)
        assert (first.status_code, first.json()) == (200, {"done": "yes"})
        again = client.post("/v1/terminal/careful", content=b"{}", headers=headers)
        assert (again.status_code, again.json()["code"]) == (401, "nonce_reused")
    assert len(_nonces(ctx)) == 3


def test_no_function_given_a_signed_request_writes_around_its_unit():
    """A function that receives a `SignedRequest` writes only through `<it>.unit`."""
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef):
                continue
            given = {
                arg.arg
                for arg in func.args.args + func.args.kwonlyargs
                if arg.annotation is not None
                and SignedRequest.__name__ in ast.unparse(arg.annotation)
            }
            if not given:
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    owner = ast.unparse(node.func.value)
                    if node.func.attr in ("unit", "write") and owner not in given:
                        found.append(f"{path.relative_to(SERVER)}:{node.lineno} {owner}")
    assert not found, found


def test_a_request_signed_before_the_server_started_is_refused(tmp_path):
    """A database restored from a backup has lost the nonces since the backup: a late
    duplicate (or a replay) of an authorisation signed before the server started would be
    decided again, and one the till was told was declined could be approved and booked
    (found by the simulation, seed 857). Refused as `clock_skew`; the till signs anew."""
    data_dir = tmp_path / "server"
    server = start_server(data_dir)
    try:
        number, uid = server.new_card(1_000)
        till = server.terminal()
        record = till.payment(number, uid, 300, counter=1)
        body = canonical_bytes({"record": record.to_wire()})
        path = "/v1/terminal/authorise"
        headers = reqsign.sign_request(till.key, till.terminal_id, "POST", path, body)
        headers["Content-Type"] = "application/json"
    finally:
        server.stop()
    server = start_server(data_dir)  # starts in a later second than the signature's
    try:
        late = requests.post(server.url + path, data=body, headers=headers, timeout=60)
        assert (late.status_code, late.json()["code"]) == (401, "clock_skew")
        assert late.json()["details"]["server_time_s"] >= int(headers[reqsign.HEADER_TIMESTAMP])
        assert server.staff.card(number)["balance_cents"] == 1_000
        fresh = reqsign.sign_request(till.key, till.terminal_id, "POST", path, body)
        fresh["Content-Type"] = "application/json"
        again = requests.post(server.url + path, data=body, headers=fresh, timeout=60)
        assert again.json()["outcome"] == "approved"
    finally:
        server.stop()
