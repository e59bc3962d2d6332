"""The manager PIN: stored only as a salted scrypt hash, compared in constant time.

A PIN has few digits, so the hash only slows down someone who copied the
settings file; what really protects it is that the file is mode 0600 and the
till is in the shop. Four to eight digits.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PIN_MIN_DIGITS = 4
PIN_MAX_DIGITS = 8
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def is_valid_pin(pin: str) -> bool:
    return pin.isascii() and pin.isdigit() and PIN_MIN_DIGITS <= len(pin) <= PIN_MAX_DIGITS


def hash_pin(pin: str) -> str:
    """Return `salt$hash` (hex) for a valid PIN; ValueError otherwise."""
    if not is_valid_pin(pin):
        raise ValueError(
            f"PIN muss {PIN_MIN_DIGITS} bis {PIN_MAX_DIGITS} Ziffern haben / "
            f"PIN must have {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits"
        )
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, **_SCRYPT)
    return f"{salt.hex()}${digest.hex()}"


def check_pin(pin: str, stored: str | None) -> bool:
    """True when `pin` matches the stored hash; False for no hash or a malformed one."""
    if not stored or not is_valid_pin(pin):
        return False
    salt_hex, _, digest_hex = stored.partition("$")
    try:
        salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except ValueError:
        return False
    digest = hashlib.scrypt(pin.encode(), salt=salt, **_SCRYPT)
    return hmac.compare_digest(digest, expected)
