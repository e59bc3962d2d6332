"""Signed documents and card signatures, with a domain label so no signature
made for one purpose can ever be replayed as another.

- `sign_document` / `verify_document`: a JSON value (the terminal snapshot),
  signed in canonical bytes by the server's issuer key.
- `issuer_message`: what the issuer signs on a card: card number bound to the
  tag's 7-byte UID, so the card's content copied to another tag is refused.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hcard import cardnumber, keys
from hcard.encoding import canonical_bytes

DOMAIN_SNAPSHOT = b"HCARD-SNAPSHOT-1\n"
DOMAIN_ISSUE = b"HCARD-ISSUE-1\n"
UID_LENGTH = 7


def sign_document(key: Ed25519PrivateKey, domain: bytes, value: Any) -> str:
    return keys.sign(key, domain + canonical_bytes(value)).hex()


def verify_document(public: Ed25519PublicKey, domain: bytes, value: Any, sig_hex: object) -> bool:
    """`sig_hex` as received: anything but the hex of a valid signature is refused."""
    if not isinstance(sig_hex, str):
        return False
    try:
        signature = bytes.fromhex(sig_hex)
    except ValueError:
        return False
    return keys.verify(public, domain + canonical_bytes(value), signature)


def issuer_message(card_number: str, uid: bytes) -> bytes:
    if not cardnumber.is_valid(card_number):
        raise ValueError("invalid card number")
    if len(uid) != UID_LENGTH:
        raise ValueError("a tag UID has 7 bytes")
    return DOMAIN_ISSUE + card_number.encode("ascii") + b"\n" + uid


def sign_card(key: Ed25519PrivateKey, card_number: str, uid: bytes) -> bytes:
    """The 64-byte issuer signature that is written onto the card."""
    return keys.sign(key, issuer_message(card_number, uid))


def card_signature_ok(
    public: Ed25519PublicKey, card_number: str, uid: bytes, signature: bytes
) -> bool:
    return keys.verify(public, issuer_message(card_number, uid), signature)
