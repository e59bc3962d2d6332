"""Terminal request signing: who sent this request, and is it the one they sent?

A terminal signs `method, path (with query), SHA-256 of the body, timestamp,
nonce, terminal id` with its Ed25519 key and sends four headers. The server
recomputes the message, checks the signature against the terminal's key,
refuses a timestamp more than `MAX_CLOCK_SKEW_S` away from its own clock and a
nonce it has seen within that window (a replay).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hcard import keys
from hcard.encoding import MAX_ID

MAX_CLOCK_SKEW_S = 300
HEADER_TERMINAL = "X-HCard-Terminal"
HEADER_TIMESTAMP = "X-HCard-Timestamp"
HEADER_NONCE = "X-HCard-Nonce"
HEADER_SIGNATURE = "X-HCard-Signature"
#: informational, unsigned: what the till says of itself (its software version, and how
#: many journal records it has not uploaded yet); the server stores them for the office
HEADER_SOFTWARE = "Hcard-Software"
HEADER_RECORDS_WAITING = "Hcard-Records-Waiting"
#: the snapshot answer's: the terminal's chain head as the server holds it (seq, hash), as
#: trusted as a sync answer's `last_seq`/`last_hash`; below what the till saw acknowledged,
#: the server was restored from a backup and the till sends again what it lost
HEADER_CHAIN_SEQ = "Hcard-Chain-Seq"
HEADER_CHAIN_HASH = "Hcard-Chain-Hash"
_DOMAIN = b"HCARD-REQUEST-1"


def request_message(
    method: str, path: str, body: bytes, timestamp_s: int, nonce: str, terminal_id: int
) -> bytes:
    return b"\n".join(
        [
            _DOMAIN,
            method.upper().encode("ascii"),
            path.encode("utf-8"),
            hashlib.sha256(body).hexdigest().encode("ascii"),
            str(timestamp_s).encode("ascii"),
            nonce.encode("ascii"),
            str(terminal_id).encode("ascii"),
        ]
    )


def sign_request(
    key: Ed25519PrivateKey,
    terminal_id: int,
    method: str,
    path: str,
    body: bytes,
    timestamp_s: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four headers that authenticate one request."""
    timestamp_s = int(time.time()) if timestamp_s is None else timestamp_s
    nonce = secrets.token_hex(16) if nonce is None else nonce
    message = request_message(method, path, body, timestamp_s, nonce, terminal_id)
    return {
        HEADER_TERMINAL: str(terminal_id),
        HEADER_TIMESTAMP: str(timestamp_s),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: keys.sign(key, message).hex(),
    }


def parse_headers(headers: Mapping[str, str]) -> tuple[int, int, str, bytes]:
    """(terminal_id, timestamp_s, nonce, signature) from the headers; ValueError if bad.

    `headers` must look names up case-insensitively (Starlette's and requests'
    header mappings both do).
    """
    try:
        terminal_id = int(headers[HEADER_TERMINAL])
        timestamp_s = int(headers[HEADER_TIMESTAMP])
        nonce = headers[HEADER_NONCE]
        signature = bytes.fromhex(headers[HEADER_SIGNATURE])
    except (KeyError, ValueError) as exc:
        raise ValueError("missing or malformed signature headers") from exc
    if not (16 <= len(nonce) <= 64 and nonce.isascii() and nonce.isalnum()):
        raise ValueError("malformed nonce")
    if len(signature) != 64:
        raise ValueError("malformed signature")
    # ids are positive 64-bit integers in both databases; a timestamp is seconds since 1970
    if not (1 <= terminal_id <= MAX_ID and 0 <= timestamp_s <= MAX_ID):
        raise ValueError("terminal id or timestamp out of range")
    return terminal_id, timestamp_s, nonce, signature


def signature_ok(
    public: Ed25519PublicKey,
    method: str,
    path: str,
    body: bytes,
    terminal_id: int,
    timestamp_s: int,
    nonce: str,
    signature: bytes,
) -> bool:
    message = request_message(method, path, body, timestamp_s, nonce, terminal_id)
    return keys.verify(public, message, signature)


def skew_ok(timestamp_s: int, now_s: float | None = None) -> bool:
    now_s = time.time() if now_s is None else now_s
    return abs(now_s - timestamp_s) <= MAX_CLOCK_SKEW_S
