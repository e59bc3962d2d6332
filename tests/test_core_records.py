"""Records, the hash chain and request signing: what must be refused is refused."""

import copy
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import chain, keys, records, reqsign, signed
from hcard.errors import Code, error_body, messages

KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
PUBLIC = KEY.public_key()


def _chain(length: int, terminal_id: int = 3) -> list[records.Record]:
    out, prev = [], records.GENESIS_HASH
    for seq in range(1, length + 1):
        body = {"card": "9276000000000123", "amount_cents": 100 + seq}
        record = records.make_record(KEY, terminal_id, seq, prev, "topup_request", body)
        out.append(record)
        prev = record.hash
    return out


def test_good_chain_has_no_problem():
    assert chain.first_problem(_chain(5), PUBLIC, 3) is None


def test_gap_fork_foreign_and_bad_signature_are_named():
    good = _chain(5)
    gap = good[:2] + good[3:]
    assert chain.first_problem(gap, PUBLIC, 3) == chain.ChainProblem(
        3, Code.CHAIN_GAP, "expected seq 3, got 4"
    )
    reordered = [good[0], good[2], good[1]]
    assert chain.first_problem(reordered, PUBLIC, 3).code is Code.CHAIN_GAP
    assert chain.first_problem(_chain(2, terminal_id=4), PUBLIC, 3).code is Code.JOURNAL_FOREIGN
    forged = records.make_record(
        KEY,
        3,
        2,
        "ab" * 32,
        "day_close",
        {"count": 0, "sum_cents": 0, "void_count": 0, "void_sum_cents": 0, "offline_count": 0},
    )
    assert chain.first_problem([good[0], forged], PUBLIC, 3).code is Code.CHAIN_FORK
    tampered = copy.deepcopy(good)
    body = dict(tampered[1].body, amount_cents=999)
    tampered[1] = records.Record(3, 2, tampered[1].prev, "topup_request", body, tampered[1].sig)
    problem = chain.first_problem(tampered, PUBLIC, 3)
    assert (problem.seq, problem.code) == (2, Code.BAD_SIGNATURE)


def test_chain_continues_from_a_known_point():
    good = _chain(4)
    assert chain.first_problem(good[2:], PUBLIC, 3, after_seq=2, after_hash=good[1].hash) is None


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("payment", {"card": "9276000000000123"}),
        (
            "payment",
            {
                "card": "9276000000000124",
                "uid": "04a1b2c3d4e5f6",
                "amount_cents": 1,
                "tip_cents": 0,
                "mode": "online",
                "counter": 1,
                "purse_cents": 0,
            },
        ),
        (
            "payment",
            {
                "card": "9276000000000123",
                "uid": "04A1B2C3D4E5F6",
                "amount_cents": 1,
                "tip_cents": 0,
                "mode": "online",
                "counter": 1,
                "purse_cents": 0,
            },
        ),
        (
            "payment",
            {
                "card": "9276000000000123",
                "uid": "04a1b2c3d4e5f6",
                "amount_cents": 0,
                "tip_cents": 0,
                "mode": "online",
                "counter": 1,
                "purse_cents": 0,
            },
        ),
        (
            "payment",
            {
                "card": "9276000000000123",
                "uid": "04a1b2c3d4e5f6",
                "amount_cents": 5,
                "tip_cents": 5,
                "mode": "online",
                "counter": 1,
                "purse_cents": 0,
            },
        ),
        (
            "payment",
            {
                "card": "9276000000000123",
                "uid": "04a1b2c3d4e5f6",
                "amount_cents": 5,
                "tip_cents": 0,
                "mode": "maybe",
                "counter": 1,
                "purse_cents": 0,
            },
        ),
        ("void", {"card": "9276000000000123", "voids_seq": 0, "amount_cents": 5}),
        ("topup_request", {"card": "9276000000000123", "amount_cents": True}),
        ("refund", {}),
    ],
)
def test_bad_bodies_are_refused(kind, body):
    with pytest.raises(records.RecordError):
        records.make_record(KEY, 1, 1, records.GENESIS_HASH, kind, body)


_PAYMENT_BODY = {
    "card": "9276000000000123",
    "uid": "04a1b2c3d4e5f6",
    "amount_cents": 5,
    "tip_cents": 0,
    "mode": "online",
    "counter": 1,
    "purse_cents": 0,
}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda w: w.pop("sig"),
        lambda w: w.update(v=2),
        lambda w: w.update(seq=0),
        lambda w: w.update(prev="xyz"),
        lambda w: w.update(sig="00"),
        lambda w: w.update(sig=w["sig"] + "\n"),  # `$` alone matches before a newline
        lambda w: w.update(prev=w["prev"] + "\n"),
        lambda w: w.update(kind="payment", body={**_PAYMENT_BODY, "uid": "04a1b2c3d4e5f6\n"}),
        lambda w: w.update(extra=1),
    ],
)
def test_from_wire_refuses_malformed(mutate):
    # the unmutated wire and a payment with this body are well-formed
    assert records.Record.from_wire(
        {**_chain(1)[0].to_wire(), "kind": "payment", "body": _PAYMENT_BODY}
    )
    wire = _chain(1)[0].to_wire()
    mutate(wire)
    with pytest.raises(records.RecordError):
        records.Record.from_wire(wire)


def test_request_signature_binds_every_part():
    body = b'{"x":1}'
    headers = reqsign.sign_request(KEY, 9, "POST", "/v1/terminal/sync", body)
    terminal_id, timestamp_s, nonce, signature = reqsign.parse_headers(headers)
    args = ("POST", "/v1/terminal/sync", body, terminal_id, timestamp_s, nonce, signature)
    assert reqsign.signature_ok(PUBLIC, *args)
    assert not reqsign.signature_ok(PUBLIC, "PUT", *args[1:])
    assert not reqsign.signature_ok(PUBLIC, "POST", "/v1/other", *args[2:])
    assert not reqsign.signature_ok(PUBLIC, "POST", "/v1/terminal/sync", b'{"x":2}', *args[3:])
    assert not reqsign.signature_ok(PUBLIC, *args[:3], 10, *args[4:])
    assert reqsign.skew_ok(timestamp_s)
    assert not reqsign.skew_ok(timestamp_s - reqsign.MAX_CLOCK_SKEW_S - 1)


def test_parse_headers_refuses_garbage():
    with pytest.raises(ValueError, match="signature headers"):
        reqsign.parse_headers({})
    headers = reqsign.sign_request(KEY, 9, "GET", "/", b"")
    with pytest.raises(ValueError, match="nonce"):
        reqsign.parse_headers({**headers, reqsign.HEADER_NONCE: "short"})


def test_snapshot_signature_and_domain_separation():
    doc = {"version": 3, "deny": ["9276000000000123"]}
    sig = signed.sign_document(KEY, signed.DOMAIN_SNAPSHOT, doc)
    assert signed.verify_document(PUBLIC, signed.DOMAIN_SNAPSHOT, doc, sig)
    assert not signed.verify_document(PUBLIC, signed.DOMAIN_ISSUE, doc, sig)
    assert not signed.verify_document(PUBLIC, signed.DOMAIN_SNAPSHOT, {**doc, "version": 4}, sig)
    assert not signed.verify_document(PUBLIC, signed.DOMAIN_SNAPSHOT, doc, "zz")


def test_private_key_file_is_0600_and_never_overwritten(tmp_path):
    path = tmp_path / "keys" / "terminal.pem"
    key = keys.load_or_create_private(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.public_hex(keys.load_or_create_private(path)) == keys.public_hex(key)
    with pytest.raises(FileExistsError):
        keys.save_private(keys.generate(), path)
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="0600"):
        keys.load_private(path)


def test_public_key_hex_refuses_wrong_length():
    with pytest.raises(ValueError, match="32 bytes"):
        keys.public_from_hex("00" * 31)


def test_every_code_has_both_messages():
    for code in Code:
        german, english = messages(code)
        assert (german and english and german != english) or code is Code.NOT_FOUND
    body = error_body(Code.CARD_BLOCKED, card="x")
    assert body == {
        "code": "card_blocked",
        "message_de": "Karte gesperrt.",
        "message_en": "Card blocked.",
        "details": {"card": "x"},
    }


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_parallel_signature_checks_give_the_same_first_problem(workers):
    good = _chain(chain.PARALLEL_MIN_RECORDS * 3)
    assert chain.first_problem(good, PUBLIC, 3, workers=workers) is None
    tampered = list(good)
    bad = tampered[150]
    tampered[150] = records.Record(3, bad.seq, bad.prev, bad.kind, bad.body, "00" * 64)
    problem = chain.first_problem(tampered, PUBLIC, 3, workers=workers)
    assert (problem.seq, problem.code) == (151, Code.BAD_SIGNATURE)
    # an earlier gap is still the first problem, whatever the later signatures say
    gapped = tampered[:100] + tampered[101:]
    problem = chain.first_problem(gapped, PUBLIC, 3, workers=workers)
    assert (problem.seq, problem.code) == (101, Code.CHAIN_GAP)
