"""Test vectors that pin the bytes terminal and server must agree on.

If one of these fails, a change altered the wire format: every terminal in
the field would stop being able to sync. Change a vector only together with a
new format version.
"""

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import keys, records, reqsign, signed
from hcard.encoding import canonical_bytes, parse_canonical

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC_HEX = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
PAYMENT_BODY = {
    "card": "9276000000000123",
    "uid": "04a1b2c3d4e5f6",
    "amount_cents": 1250,
    "tip_cents": 0,
    "mode": "offline",
    "counter": 3,
    "purse_cents": 3750,
}
PAYMENT_BYTES = (
    b'{"body":{"amount_cents":1250,"card":"9276000000000123","counter":3,"mode":"offline",'
    b'"purse_cents":3750,"tip_cents":0,"uid":"04a1b2c3d4e5f6"},"kind":"payment",'
    b'"prev":"0000000000000000000000000000000000000000000000000000000000000000",'
    b'"seq":1,"terminal_id":7,"v":1}'
)
PAYMENT_HASH = "482ef89f21a6de068f7a8474575ed6bf94117d982a7f12d48ad87ac6008e6505"
PAYMENT_SIG = (
    "4edf2951a8afd50fe4f82a772333f059fd616ad9453d3edeaf10fead102d2515"
    "f204eab4c6f84c566a167f555606ed4e6e1b7f64af82231699cb83beeb2b4e03"
)


def test_public_key_hex():
    assert keys.public_hex(KEY) == PUBLIC_HEX


def test_canonical_bytes():
    assert canonical_bytes({"b": [1, True, None], "a": "Grüße"}) == (
        b'{"a":"Gr\xc3\xbc\xc3\x9fe","b":[1,true,null]}'
    )


@pytest.mark.parametrize("value", [1.5, {"a": 0.1}, [b"x"], {1: "a"}])
def test_canonical_refuses_what_it_cannot_pin(value):
    with pytest.raises(TypeError):
        canonical_bytes(value)


def test_parse_canonical_refuses_other_spellings():
    assert parse_canonical(b'{"a":1}') == {"a": 1}
    with pytest.raises(ValueError, match="not canonical"):
        parse_canonical(b'{"a": 1}')


def test_payment_record_vector():
    record = records.make_record(KEY, 7, 1, records.GENESIS_HASH, "payment", PAYMENT_BODY)
    assert record.signed_bytes() == PAYMENT_BYTES
    assert record.hash == PAYMENT_HASH == hashlib.sha256(PAYMENT_BYTES).hexdigest()
    assert record.sig == PAYMENT_SIG
    assert record.signature_ok(keys.public_from_hex(PUBLIC_HEX))
    assert records.Record.from_wire(record.to_wire()) == record


def test_request_signature_vector():
    headers = reqsign.sign_request(
        KEY,
        7,
        "POST",
        "/v1/terminal/sync",
        b'{"records":[]}',
        timestamp_s=1764000000,
        nonce="00112233445566778899aabbccddeeff",
    )
    assert headers[reqsign.HEADER_SIGNATURE] == (
        "46afc2ac4885593389736556e49585f92e431fad6071aedaaa0d50f7b3155"
        "47ba50c9e27514e1fb2a9c3f86bb5177db6abfe6af95bd333975bf9174b00bdd50e"
    )
    assert reqsign.parse_headers(headers) == (
        7,
        1764000000,
        "00112233445566778899aabbccddeeff",
        bytes.fromhex(headers[reqsign.HEADER_SIGNATURE]),
    )


def test_issuer_card_signature_vector():
    uid = bytes.fromhex("04a1b2c3d4e5f6")
    signature = signed.sign_card(KEY, "9276000000000123", uid)
    assert signature.hex() == (
        "58e073661aec32a1a8df9d9f813141369d40ea398ede6c4c3c4b7e71d79ee673"
        "e4fdd3283e6dba6742850f3a8a29401fff7668c1dde1ecbba2caf770eb926608"
    )
    public = KEY.public_key()
    assert signed.card_signature_ok(public, "9276000000000123", uid, signature)
    other_uid = bytes.fromhex("04a1b2c3d4e5f7")
    assert not signed.card_signature_ok(public, "9276000000000123", other_uid, signature)
