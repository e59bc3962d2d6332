"""The check code printed on a card, which unlocks the card's public balance page.

It must come from a secret only the server holds: whoever can compute it can read the
card's balance and where it was spent. So it is an HMAC-SHA256 of the card number under a
key derived from the issuer's private key (already secret, 0600, in every backup: no new
file to lose), cut to 40 bits and written as 8 base32 characters, `ABCD-EFGH`. It is
printed on the card and its letter, and never written to the chip.

Cards issued before this scheme were printed with a code derived from the issuer
*signature*, which the chip's open NDEF record carries, so anyone who read the card once
could derive it. Those cards (`cards.legacy_check_code`) still accept that old code until
staff print them a new one (`services.cards.renew_check_code`); every card accepts its new
code at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_KEY_DOMAIN = b"HCARD-CHECK-CODE-KEY-1\n"
_CODE_DOMAIN = b"HCARD-CHECK-CODE-1\n"
CODE_BYTES = 5  # 40 bits: 8 base32 characters; guessing is throttled per card and address


def key_from_issuer(issuer_key: Ed25519PrivateKey) -> bytes:
    """The HMAC key: derived from the issuer private key, never stored on its own."""
    seed = issuer_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return hmac.new(seed, _KEY_DOMAIN, hashlib.sha256).digest()


def _format(raw: bytes) -> str:
    code = base64.b32encode(raw[:CODE_BYTES]).decode("ascii")
    return f"{code[:4]}-{code[4:]}"


def check_code(key: bytes, card_number: str) -> str:
    """The code printed on the card `card_number`, as `ABCD-EFGH`."""
    mac = hmac.new(key, _CODE_DOMAIN + card_number.encode("ascii"), hashlib.sha256).digest()
    return _format(mac)


def legacy_check_code(issuer_signature: bytes) -> str:
    """The old code of cards issued before the server's secret: from the signature's bytes."""
    return _format(issuer_signature)


def _compact(typed: str) -> bytes:
    return "".join(ch for ch in typed if ch not in " -").upper().encode("utf-8")


def matches(expected: str, typed: str) -> bool:
    """Does `typed` (any case, with or without dash and spaces) equal `expected`?

    Compared in constant time, so the answer's timing tells nothing about how much matched.
    """
    return hmac.compare_digest(_compact(typed), _compact(expected))
