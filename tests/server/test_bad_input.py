"""Bad input over real HTTP: each gets a clear 4xx with its code, and changes nothing."""

from __future__ import annotations

import json
import select
import socket
import time
from contextlib import contextmanager
from urllib.parse import urlparse

import pytest
import requests
from fixtures.server import DEMO_IBAN, ApiError, StaffClient, TerminalClient, enrol

from hcard import cardnumber, keys, reqsign
from hcard.encoding import canonical_bytes
from hcard.errors import Code, messages
from hcard.records import Record


def assert_refused(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert (body["message_de"], body["message_en"]) == messages(Code(code))
    return body


@contextmanager
def unchanged(server):
    """The ledger (transactions, postings, every balance) is the same after the block."""
    before = server.staff.ledger_check()
    yield
    after = server.staff.ledger_check()
    assert after["ok"]
    assert (after["transactions"], after["postings"]) == (
        before["transactions"],
        before["postings"],
    )


@pytest.fixture(scope="module")
def till(server):
    return server.terminal()


@pytest.fixture(scope="module")
def card(server):
    return server.new_card(1_000)


# --- request shape ---------------------------------------------------------------


def test_malformed_json_is_refused(server, till):
    with unchanged(server):
        assert_refused(
            till.signed("POST", "/v1/terminal/sync", b"{not json"), 400, "malformed_request"
        )
        assert_refused(
            till.signed("POST", "/v1/terminal/authorise", b"\xff\xfe"), 400, "malformed_request"
        )
        response = server.staff.request(
            "POST",
            "/v1/merchants",
            data=b"{",
            headers={"Content-Type": "application/json"},
        )
        assert_refused(response, 400, "malformed_request")
        assert_refused(
            requests.post(f"{server.url}/v1/enrol", data=b"[", timeout=30), 400, "malformed_request"
        )


def test_wrong_types_are_refused(server, till, card):
    number, uid = card
    with unchanged(server):
        for amount in ("100", 1.5, True, None):
            response = server.staff.request(
                "POST", f"/v1/cards/{number}/topup", json={"amount_cents": amount}
            )
            assert_refused(response, 400, "invalid_amount")
        response = till.signed("POST", "/v1/terminal/sync", canonical_bytes({"records": "x"}))
        assert_refused(response, 400, "malformed_request")
        response = till.signed("POST", "/v1/terminal/sync", canonical_bytes([1, 2]))
        assert_refused(response, 400, "malformed_request")
        record = till.payment(number, uid, 100).to_wire()
        till.seq -= 1  # not part of the chain
        record["body"]["amount_cents"] = "100"
        response = till.signed(
            "POST", "/v1/terminal/authorise", canonical_bytes({"record": record})
        )
        assert_refused(response, 400, "bad_record")
        response = server.staff.request("POST", "/v1/merchants", json={"name": 5, "iban": "x"})
        assert_refused(response, 400, "malformed_request")


@pytest.mark.parametrize("amount", [-100, 0, 1_000_001, 10**15])
def test_negative_zero_and_absurd_amounts_are_refused(server, till, card, amount):
    number, uid = card
    with unchanged(server):
        response = server.staff.request(
            "POST", f"/v1/cards/{number}/topup", json={"amount_cents": amount}
        )
        assert_refused(response, 400, "invalid_amount")
        record = till.payment(number, uid, 100).to_wire()
        till.seq -= 1
        record["body"]["amount_cents"] = amount
        response = till.signed(
            "POST", "/v1/terminal/authorise", canonical_bytes({"record": record})
        )
        assert_refused(response, 400, "bad_record")


def test_unknown_route_and_method(server):
    assert_refused(requests.get(f"{server.url}/v1/nothing", timeout=30), 404, "not_found")
    assert_refused(requests.delete(f"{server.url}/v1/enrol", timeout=30), 405, "malformed_request")


def test_openapi_is_served(server):
    spec = requests.get(f"{server.url}/openapi.json", timeout=30).json()
    assert "/v1/terminal/sync" in spec["paths"]
    assert "/v1/cards/{card_number}/transfer" in spec["paths"]


# --- cards -----------------------------------------------------------------------


def test_unknown_card(server, till):
    unknown = cardnumber.from_serial(99_999_999_999)
    with unchanged(server):
        assert_refused(
            server.staff.request("POST", f"/v1/cards/{unknown}/topup", json={"amount_cents": 100}),
            404,
            "unknown_card",
        )
        assert_refused(server.staff.request("GET", "/v1/cards/1234"), 404, "unknown_card")
        answer = till.authorise(till.payment(unknown, "04" + "00" * 6, 100)).json()
        assert (answer["outcome"], answer["code"]) == ("declined", "unknown_card")
        assert_refused(till.card(unknown), 404, "unknown_card")


def test_blocked_card(server, till):
    number, uid = server.new_card(500)
    server.staff.block(number)
    with unchanged(server):
        assert_refused(
            server.staff.request("POST", f"/v1/cards/{number}/topup", json={"amount_cents": 100}),
            409,
            "card_blocked",
        )
        answer = till.authorise(till.payment(number, uid, 100)).json()
        assert (answer["outcome"], answer["code"]) == ("declined", "card_blocked")
    snapshot = till.snapshot(0).json()["snapshot"]
    assert number in snapshot["deny_add"]
    version = snapshot["version"]
    server.staff.unblock(number)
    later = till.snapshot(version).json()["snapshot"]
    assert not later["full"]
    assert number in later["deny_remove"]


def test_copied_card_uid_is_declined(server, till):
    number, _uid = server.new_card(500)
    with unchanged(server):
        answer = till.authorise(till.payment(number, "04ffffffffffff", 100)).json()
        assert (answer["outcome"], answer["code"]) == ("declined", "card_copied")


# --- terminal authentication -----------------------------------------------------


def test_unknown_terminal(server, till):
    with unchanged(server):
        headers = reqsign.sign_request(
            till.key, 987654, "GET", "/v1/terminal/snapshot?since=0", b""
        )
        response = requests.get(
            f"{server.url}/v1/terminal/snapshot?since=0", headers=headers, timeout=30
        )
        assert_refused(response, 401, "unknown_terminal")
        response = requests.get(f"{server.url}/v1/terminal/snapshot", timeout=30)
        assert_refused(response, 401, "bad_signature")


def test_revoked_terminal(server, card):
    number, uid = card
    merchant_id = server.staff.create_merchant("Widerruf KG")
    enrolment = server.staff.create_terminal_full(merchant_id, "Alt")
    old = enrol(server.url, enrolment["code"])
    assert old.snapshot(0).status_code == 200
    server.staff.revoke_terminal(old.terminal_id)

    def revoked_alerts() -> list[dict]:
        return [
            a
            for a in server.staff.alerts()
            if a["kind"] == "revoked_terminal" and a["terminal_id"] == old.terminal_id
        ]

    with unchanged(server):
        # Someone else's key (or garbage) under its id: refused, and no alert to fill up.
        forged = old.signed("GET", "/v1/terminal/snapshot?since=0", key=keys.generate())
        assert_refused(forged, 403, "terminal_revoked")
        assert revoked_alerts() == []
        # The device itself: refused and alerted, once per terminal, repeats counted.
        assert_refused(old.snapshot(0), 403, "terminal_revoked")
        (alert,) = revoked_alerts()
        assert alert["count"] == 1
        assert alert["last_s"] is None
        assert alert["detail"] == (
            f"revoked terminal {old.terminal_id} called GET /v1/terminal/snapshot?since=0"
        )
        # Another alert after it (a chain gap of another till) ...
        other = server.terminal(merchant_id)
        other.payment(number, uid, 100, mode="offline", counter=201)
        gap = other.payment(number, uid, 100, mode="offline", counter=202)
        assert other.sync([gap]).json()["results"][0]["code"] == "chain_gap"
        assert server.staff.alerts()[0]["kind"] == "chain_gap"
        # ... and the stolen till calls again: the same alert, counted, back on top.
        assert_refused(old.sync([]), 403, "terminal_revoked")
        assert_refused(
            old.signed("GET", "/v1/terminal/snapshot?since=0", key=keys.generate()),
            403,
            "terminal_revoked",
        )
        (alert,) = revoked_alerts()
        assert alert["count"] == 2
        assert alert["last_s"] >= alert["created_s"]
        assert "/v1/terminal/sync" in alert["detail"]
        assert server.staff.alerts()[0]["id"] == alert["id"]
    keys_now = server.terminal(merchant_id).snapshot(0).json()["snapshot"]["terminal_keys"]
    assert str(old.terminal_id) not in keys_now


def test_bad_signature(server, till, card):
    number, uid = card
    with unchanged(server):
        record = till.payment(number, uid, 100)
        till.seq, till.prev = till.seq - 1, record.prev
        body = canonical_bytes({"record": record.to_wire()})
        response = till.signed("POST", "/v1/terminal/authorise", body, key=keys.generate())
        assert_refused(response, 401, "bad_signature")


def test_tampered_body(server, till, card):
    number, uid = card
    with unchanged(server):
        record = till.payment(number, uid, 100)
        till.seq, till.prev = till.seq - 1, record.prev
        body = canonical_bytes({"record": record.to_wire()})
        headers = reqsign.sign_request(
            till.key, till.terminal_id, "POST", "/v1/terminal/authorise", body
        )
        tampered = body.replace(b'"amount_cents":100', b'"amount_cents":1')
        assert tampered != body
        response = requests.post(
            f"{server.url}/v1/terminal/authorise", data=tampered, headers=headers, timeout=30
        )
        assert_refused(response, 401, "bad_signature")
        # a record whose own signature no longer matches (re-signed request, altered record)
        wire = record.to_wire()
        wire["body"]["amount_cents"] = 1
        response = till.signed("POST", "/v1/terminal/authorise", canonical_bytes({"record": wire}))
        assert_refused(response, 401, "bad_signature")


def test_reused_nonce(server, till):
    nonce = "n" * 32
    first = till.signed("GET", "/v1/terminal/snapshot?since=0", nonce=nonce)
    assert first.status_code == 200
    assert_refused(
        till.signed("GET", "/v1/terminal/snapshot?since=0", nonce=nonce), 401, "nonce_reused"
    )


def test_clock_skew(server, till):
    response = till.signed(
        "GET", "/v1/terminal/snapshot?since=0", timestamp_s=int(time.time()) - 1_000
    )
    body = assert_refused(response, 401, "clock_skew")
    assert abs(body["details"]["server_time_s"] - time.time()) < 60


# --- sync ------------------------------------------------------------------------


def test_record_out_of_order_is_refused_and_alerted(server, card):
    number, uid = card
    till = server.terminal()
    first = till.payment(number, uid, 100, mode="offline", counter=101)
    second = till.payment(number, uid, 100, mode="offline", counter=102)
    with unchanged(server):
        results = till.sync([second]).json()["results"]
        assert results == [{"seq": 2, "status": "refused", "code": "chain_gap", "outcome": None}]
        results = till.sync([second, first]).json()["results"]
        assert [r["status"] for r in results] == ["refused", "refused"]
    alerts = [a for a in server.staff.alerts() if a["terminal_id"] == till.terminal_id]
    assert {a["kind"] for a in alerts} == {"chain_gap"}
    assert [r["status"] for r in till.sync([first, second]).json()["results"]] == [
        "applied",
        "applied",
    ]


def test_record_after_the_problem_is_never_booked_even_with_a_lower_seq(server):
    """[2, 1'] after 1: the chain check stops at 1' (a gap); 1' was never checked (its
    signature is garbage) and must not reach booking by its seq being below the problem's."""
    number, uid = server.new_card(5_000)
    till = server.terminal()
    first = till.payment(number, uid, 100, mode="offline", counter=1)
    second = till.payment(number, uid, 100, mode="offline", counter=2)
    assert till.sync([first]).json()["results"][0]["status"] == "applied"
    forged = Record(
        till.terminal_id,
        1,
        first.prev,
        "void",
        {"card": number, "voids_seq": 1, "amount_cents": 100},
        sig="0" * 128,
    )
    answer = till.sync([second, forged])
    assert answer.status_code == 200, answer.text
    assert [(r["seq"], r["status"], r["code"]) for r in answer.json()["results"]] == [
        (2, "applied", None),
        (1, "refused", "chain_gap"),
    ]
    assert server.staff.card(number)["balance_cents"] == 4_800
    assert any(
        a["kind"] == "chain_gap" and a["terminal_id"] == till.terminal_id
        for a in server.staff.alerts()
    )
    assert server.staff.ledger_check()["ok"]


def test_fork_is_refused_and_alerted(server, card):
    number, uid = card
    till = server.terminal()
    first = till.payment(number, uid, 100, mode="offline", counter=201)
    assert till.sync([first]).json()["results"][0]["status"] == "applied"
    till.seq, till.prev = 0, first.prev
    other = till.payment(number, uid, 999, mode="offline", counter=202)
    with unchanged(server):
        results = till.sync([other]).json()["results"]
        assert (results[0]["status"], results[0]["code"]) == ("refused", "chain_fork")
    assert any(
        a["kind"] == "chain_fork" and a["terminal_id"] == till.terminal_id
        for a in server.staff.alerts()
    )


def test_sequence_conflict_on_authorise(server, card):
    number, uid = card
    till = server.terminal()
    record = till.payment(number, uid, 100)
    assert till.authorise(record).status_code == 200
    till.seq, till.prev = 0, record.prev
    other = till.payment(number, uid, 200)
    with unchanged(server):
        assert_refused(till.authorise(other), 409, "sequence_conflict")


def test_authorise_of_an_already_synced_seq_is_a_sequence_conflict(server, card):
    number, uid = card
    till = server.terminal()
    offline = till.payment(number, uid, 100, mode="offline", counter=250)
    assert till.sync([offline]).json()["results"][0]["status"] == "applied"
    till.seq, till.prev = 0, offline.prev
    again = till.payment(number, uid, 700, counter=251)  # the same seq, now online
    with unchanged(server):
        assert_refused(till.authorise(again), 409, "sequence_conflict")


def test_batch_over_limit_is_refused(server, till, card):
    number, uid = card
    record = till.payment(number, uid, 100, mode="offline", counter=301).to_wire()
    till.seq, till.prev = till.seq - 1, record["prev"]
    body = canonical_bytes({"records": [record] * 1_001})
    assert len(body) < 2 * 1024 * 1024
    with unchanged(server):
        assert_refused(till.signed("POST", "/v1/terminal/sync", body), 413, "batch_too_large")


def test_batch_of_100000_records_is_refused(server, till, card):
    number, uid = card
    record = json.dumps(till.payment(number, uid, 100, mode="offline", counter=302).to_wire())
    till.seq -= 1
    body = ('{"records":[' + ",".join([record] * 100_000) + "]}").encode()
    with unchanged(server):
        status, answer = _raw_post(server.url, "/v1/terminal/sync", body, chunked=False)
        assert status == 413
        assert answer["code"] == "body_too_large"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_50_mb_body_is_refused_before_parsing(server, chunked):
    body = b"{" + b" " * (50 * 1024 * 1024) + b"}"
    with unchanged(server):
        status, answer = _raw_post(server.url, "/v1/terminal/sync", body, chunked=chunked)
        assert status == 413
        assert answer["code"] == "body_too_large"
        status, answer = _raw_post(server.url, "/v1/merchants", body, chunked=chunked)
        assert status == 413


def _raw_post(url: str, path: str, body: bytes, *, chunked: bool) -> tuple[int, dict]:
    """POST over a plain socket, reading the answer even if the server stops reading early."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=60) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Type: application/json\r\n"
        )
        head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {len(body)}\r\n"
        sock.sendall((head + "\r\n").encode())
        # Refused by Content-Length: the answer comes before a byte of the body is sent.
        early = not chunked and bool(select.select([sock], [], [], 10)[0])
        assert early or chunked, "no early answer to an oversized Content-Length"
        try:
            step = 1024 * 1024
            for start in range(0, len(body), step):
                piece = body[start : start + step]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early: the answer is already waiting
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 1 << 30


# --- enrolment and staff ---------------------------------------------------------


def test_enrolment_code_works_once(server):
    merchant_id = server.staff.create_merchant("Einmal OHG")
    code = server.staff.create_terminal(merchant_id)
    first = requests.post(
        f"{server.url}/v1/enrol",
        json={
            "code": code.lower().replace("-", " "),
            "public_key": keys.public_hex(keys.generate()),
        },
        timeout=30,
    )
    assert first.status_code == 200, first.text
    again = requests.post(
        f"{server.url}/v1/enrol",
        json={"code": code, "public_key": keys.public_hex(keys.generate())},
        timeout=30,
    )
    assert_refused(again, 400, "enrolment_code_invalid")
    for bad in ("AAAA-AAAA", "0000-0000", ""):
        response = requests.post(
            f"{server.url}/v1/enrol",
            json={"code": bad, "public_key": keys.public_hex(keys.generate())},
            timeout=30,
        )
        assert_refused(response, 400, "enrolment_code_invalid")


def test_expired_enrolment_code(server_factory):
    short = server_factory(env={"HCARD_ENROLMENT_TTL_S": "0"})
    code = short.staff.create_terminal(short.staff.create_merchant())
    response = requests.post(
        f"{short.url}/v1/enrol",
        json={"code": code, "public_key": keys.public_hex(keys.generate())},
        timeout=30,
    )
    assert_refused(response, 400, "enrolment_code_invalid")


def test_staff_authentication_and_roles(server):
    assert_refused(requests.get(f"{server.url}/v1/merchants", timeout=30), 401, "not_authenticated")
    assert_refused(
        requests.get(
            f"{server.url}/v1/merchants", headers={"Authorization": "Bearer nope"}, timeout=30
        ),
        401,
        "not_authenticated",
    )
    for user, password in (("admin", "wrong-password"), ("nobody", "admin-test-password")):
        with pytest.raises(ApiError) as refused:
            StaffClient(server.url, user, password)
        assert (refused.value.status, refused.value.code) == (401, "bad_credentials")

    mine = server.staff.create_merchant("Meins")
    other = server.staff.create_merchant("Fremd")
    server.staff.call(
        "POST",
        "/v1/users",
        json={
            "username": "shop1",
            "password": "Rathausplatz-7-Kasse",
            "role": "merchant",
            "merchant_id": mine,
        },
    )
    shop = StaffClient(server.url, "shop1", "Rathausplatz-7-Kasse")
    assert [m["id"] for m in shop.call("GET", "/v1/merchants")] == [mine]
    assert shop.call("GET", f"/v1/merchants/{mine}")["name"] == "Meins"
    assert_refused(shop.request("GET", f"/v1/merchants/{other}"), 403, "forbidden")
    assert_refused(shop.request("GET", f"/v1/merchants/{other}/terminals"), 403, "forbidden")
    assert_refused(shop.request("GET", f"/v1/merchants/{other}/payments"), 403, "forbidden")
    assert shop.call("GET", f"/v1/merchants/{mine}/payments") == []
    assert_refused(
        shop.request("POST", "/v1/cards", json={"uid": "04" + "11" * 6}), 403, "forbidden"
    )
    assert_refused(
        shop.request("POST", "/v1/merchants", json={"name": "x", "iban": "DE89370400440532013000"}),
        403,
        "forbidden",
    )
    assert_refused(shop.request("GET", "/v1/users"), 403, "forbidden")


def test_invalid_iban_is_refused(server):
    response = server.staff.request(
        "POST", "/v1/merchants", json={"name": "Tippfehler", "iban": "DE89370400440532013001"}
    )
    assert_refused(response, 400, "invalid_iban")


# --- found by trying the API as an attacker would (issue 8) ------------------------

MAX_ID = 2**63 - 1


def test_a_pending_terminal_can_be_revoked_and_its_code_dies(server):
    merchant_id = server.staff.create_merchant("Noch nicht eingerichtet")
    pending = server.staff.create_terminal_full(merchant_id, "Kasse 2")
    revoked = server.staff.revoke_terminal(pending["terminal_id"])
    assert revoked == {"terminal_id": pending["terminal_id"], "status": "revoked"}
    response = requests.post(
        f"{server.url}/v1/enrol",
        json={"code": pending["code"], "public_key": keys.public_hex(keys.generate())},
        timeout=30,
    )
    assert_refused(response, 400, "enrolment_code_invalid")
    (listed,) = server.staff.terminals(merchant_id)
    assert (listed["status"], listed["public_key"]) == ("revoked", None)
    # requests under its id are refused as revoked, not a server error
    forged = TerminalClient(
        url=server.url,
        terminal_id=pending["terminal_id"],
        merchant_id=merchant_id,
        key=keys.generate(),
        issuer_public_key=server.issuer_public_key,
    )
    assert_refused(forged.snapshot(0), 403, "terminal_revoked")
    # revoking twice is harmless
    assert server.staff.revoke_terminal(pending["terminal_id"])["status"] == "revoked"


def test_deeply_nested_json_is_refused_everywhere(server, till):
    nested = b"[" * 100_000 + b"]" * 100_000
    with unchanged(server):
        for response in (
            requests.post(f"{server.url}/v1/enrol", data=nested, timeout=30),
            requests.post(f"{server.url}/v1/auth/login", data=nested, timeout=30),
            till.signed("POST", "/v1/terminal/sync", nested),
            till.signed("POST", "/v1/terminal/authorise", nested),
        ):
            assert_refused(response, 400, "malformed_request")
    assert "Traceback" not in server.log()


def test_ids_beyond_64_bits_are_refused_before_the_database(server):
    staff = server.staff
    for too_big in (MAX_ID + 1, 2**64, 10**30):
        for method, path in (
            ("GET", f"/v1/merchants/{too_big}"),
            ("GET", f"/v1/merchants/{too_big}/payments"),
            ("GET", f"/v1/merchants/{too_big}/terminals"),
            ("POST", f"/v1/terminals/{too_big}/revoke"),
        ):
            assert_refused(staff.request(method, path), 400, "malformed_request")
        user = {"username": "x-big", "password": "long-enough-1", "role": "merchant"}
        response = staff.request("POST", "/v1/users", json={**user, "merchant_id": too_big})
        assert_refused(response, 400, "malformed_request")
    for bad_limit in (0, -1, 10**6, MAX_ID + 1):
        response = staff.request("GET", "/v1/alerts", params={"limit": bad_limit})
        assert_refused(response, 400, "malformed_request")
    # a terminal id beyond 64 bits in the signature header
    till = server.terminal()
    for header_id in (MAX_ID + 1, 2**64, 0, -1):
        headers = reqsign.sign_request(
            till.key, till.terminal_id, "GET", "/v1/terminal/snapshot", b""
        )
        headers[reqsign.HEADER_TERMINAL] = str(header_id)
        response = requests.get(f"{server.url}/v1/terminal/snapshot", headers=headers, timeout=30)
        assert_refused(response, 401, "bad_signature")
    # at the edge: a well-formed id that does not exist
    assert_refused(staff.request("GET", f"/v1/merchants/{MAX_ID}"), 404, "not_found")
    spec = requests.get(f"{server.url}/openapi.json", timeout=30).json()
    (param,) = spec["paths"]["/v1/merchants/{merchant_id}"]["get"]["parameters"]
    assert (param["schema"]["minimum"], param["schema"]["maximum"]) == (1, MAX_ID)
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("name", ["Kasse\x00", "Bäcker\nei", "a\x1b[31m", "\u202eevil", " ", ""])
def test_names_must_be_printable(server, name):
    staff = server.staff
    merchant = staff.request("POST", "/v1/merchants", json={"name": name, "iban": DEMO_IBAN})
    assert_refused(merchant, 400, "invalid_name")
    merchant_id = staff.create_merchant("Druckbar & Co")
    till = staff.request("POST", f"/v1/merchants/{merchant_id}/terminals", json={"name": name})
    assert_refused(till, 400, "invalid_name")
    user = staff.request(
        "POST",
        "/v1/users",
        json={"username": name, "password": "long-enough-1", "role": "marketing"},
    )
    assert_refused(user, 400, "invalid_name")
    if name.strip():  # an empty name at enrolment means "keep the one staff gave"
        code = staff.create_terminal(merchant_id)
        enrolled = requests.post(
            f"{server.url}/v1/enrol",
            json={"code": code, "public_key": keys.public_hex(keys.generate()), "name": name},
            timeout=30,
        )
        assert_refused(enrolled, 400, "invalid_name")


def test_nul_and_control_characters_never_reach_the_database(server):
    """PostgreSQL refuses NUL in text with an error: each is refused before, never a 500."""
    login = requests.post(
        f"{server.url}/v1/auth/login",
        json={"username": "adm\x00in", "password": "whatever-it-is"},
        timeout=30,
    )
    assert_refused(login, 401, "bad_credentials")
    too_long = requests.post(
        f"{server.url}/v1/auth/login", json={"username": "u" * 81, "password": "x"}, timeout=30
    )
    assert_refused(too_long, 400, "invalid_name")
    card, _ = server.new_card(100)
    for reason in ("Fehl\x00buchung", "\x1b[2J", "\u3164\u3164\u3164"):
        correction = {"card_number": card, "amount_cents": 5, "reason": reason}
        response = server.staff.request("POST", "/v1/ledger/corrections", json=correction)
        assert_refused(response, 400, "invalid_name")
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("name", ["\u3164", "\u2800\u2800", "\u0301", "\u200b"])
def test_names_that_show_nothing_are_refused(server, name):
    response = server.staff.request("POST", "/v1/merchants", json={"name": name, "iban": DEMO_IBAN})
    assert_refused(response, 400, "invalid_name")


def test_names_of_sensible_length_only(server):
    long_name = "Ä" * 201
    response = server.staff.request(
        "POST", "/v1/merchants", json={"name": long_name, "iban": DEMO_IBAN}
    )
    assert_refused(response, 400, "invalid_name")
    ok = server.staff.call(
        "POST", "/v1/merchants", json={"name": "  Café Ünal  ", "iban": DEMO_IBAN}
    )
    assert ok["name"] == "Café Ünal"


def test_api_docs_load_nothing_from_a_cdn(server):
    for path in ("/docs", "/redoc"):
        assert requests.get(f"{server.url}{path}", timeout=30).status_code == 404
    assert requests.get(f"{server.url}/openapi.json", timeout=30).status_code == 200


def test_session_cookie_is_secure_behind_tls(server):
    login = {"username": "admin", "password": "admin-test-password"}
    plain = requests.post(f"{server.url}/v1/auth/login", json=login, timeout=30)
    tls = requests.post(
        f"{server.url}/v1/auth/login",
        json=login,
        headers={"X-Forwarded-Proto": "https"},  # what the reverse proxy on 127.0.0.1 sends
        timeout=30,
    )
    for response in (plain, tls):
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
    assert "Secure" not in plain.headers["set-cookie"]
    assert "Secure" in tls.headers["set-cookie"]
