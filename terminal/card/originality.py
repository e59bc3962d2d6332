"""NXP's originality signature (READ_SIG): ECDSA on secp128r1 over the 7-byte UID.

NXP signs each chip's UID at production; the chip answers READ_SIG with the
32 bytes r‖s. The UID itself is the signed "digest" (no hash: it is shorter
than the curve order). nfcpy reads the signature but does not check it.

A valid signature says the chip was made by NXP with this UID. It does not stop
an emulator that replays a real chip's UID and signature (the signature is
static); that is why the issuer signature and the offline limits exist too.

The emulated cards of the tests and the demo are signed with `TEST_KEY`, a
deliberately public test key; a terminal trusts it only when configured to.
"""

from __future__ import annotations

from functools import lru_cache

from ecdsa import BadSignatureError, SECP128r1, SigningKey, VerifyingKey
from ecdsa.util import sigdecode_string, sigencode_string

NXP_PUBLIC_KEY_HEX = "04494E1A386D3D3CFE3DC10E5DE68A499B1C202DB5B132393E89ED19FE5BE8BC61"
SIGNATURE_LENGTH = 32

# Public on purpose: it only ever signs emulated test cards. "HCARD_TEST_KEY_1" in ASCII.
TEST_KEY = SigningKey.from_secret_exponent(
    int.from_bytes(b"HCARD_TEST_KEY_1", "big") % SECP128r1.order, curve=SECP128r1
)
TEST_PUBLIC_KEY_HEX = TEST_KEY.get_verifying_key().to_string("uncompressed").hex().upper()


@lru_cache(maxsize=8)
def public_key(key_hex: str) -> VerifyingKey:
    """The originality key from its hex (a secp128r1 point); ValueError when it is not one."""
    try:
        return VerifyingKey.from_string(bytes.fromhex(key_hex), curve=SECP128r1)
    except Exception:  # ecdsa raises MalformedPointError, an AssertionError, among others
        raise ValueError("not a secp128r1 public key (hex)") from None


@lru_cache(maxsize=1024)
def signature_ok(uid: bytes, signature: bytes, public_key_hex: str = NXP_PUBLIC_KEY_HEX) -> bool:
    """True when `signature` is the originality signature of `uid` under the key.

    Cached: the same card is tapped many times a day and the check is pure.
    """
    if len(signature) != SIGNATURE_LENGTH or not any(signature):
        return False
    try:
        return public_key(public_key_hex).verify_digest(signature, uid, sigdecode=sigdecode_string)
    except BadSignatureError:
        return False


def sign_with_test_key(uid: bytes, key: SigningKey = TEST_KEY) -> bytes:
    """The 32-byte signature an emulated chip with this UID answers to READ_SIG."""
    return key.sign_digest_deterministic(uid, sigencode=sigencode_string)
