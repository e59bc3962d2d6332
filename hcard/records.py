"""Journal records: the signed, hash-chained unit a terminal writes and the server books.

A record is `{"v", "terminal_id", "seq", "prev", "kind", "body"}` in canonical
bytes (see `hcard.encoding`), signed with the terminal's Ed25519 key. Its hash
is SHA-256 over those same bytes; `prev` is the hash of the terminal's record
before it (`GENESIS_HASH` for seq 1). Identity is `(terminal_id, seq)`, never a
clock: the Pi has no real-time clock.

Body fields per kind are checked by `validate_body`, so a record that the
server would refuse is refused on the terminal first, with the same code.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hcard import cardnumber, keys
from hcard.encoding import MAX_ID, canonical_bytes
from hcard.money import MAX_AMOUNT_CENTS, is_valid_amount

VERSION = 1
GENESIS_HASH = "0" * 64


class RecordKind(StrEnum):
    """What a journal record is; the value is the `kind` on the wire and in both databases."""

    PAYMENT = "payment"
    VOID = "void"
    TOPUP_REQUEST = "topup_request"
    DAY_CLOSE = "day_close"


class PaymentMode(StrEnum):
    """How a payment was decided: by the server before the card showed it, or by the till."""

    ONLINE = "online"
    OFFLINE = "offline"


class Outcome(StrEnum):
    """The server's decision on an online record (`outcome` in the answers of authorise and
    sync, `authorisations.outcome` in the server's database)."""

    APPROVED = "approved"
    DECLINED = "declined"


class SyncStatus(StrEnum):
    """What the server did with one uploaded record (`results[].status` of a sync); the
    server's journal stores `applied` or `refused`, `already_applied` is only an answer."""

    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"  # sent before: answered as the first time
    REFUSED = "refused"  # booked as refused (`code` says why), or the chain stops there


KINDS = tuple(kind.value for kind in RecordKind)
MODES = tuple(mode.value for mode in PaymentMode)

# used with fullmatch: `$` would also match before a trailing newline ("<64 hex>\n")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_UID = re.compile(r"[0-9a-f]{14}")


class RecordError(ValueError):
    """A record that is not well-formed; the message says which field."""


def _int(body: dict[str, Any], name: str, minimum: int, maximum: int) -> None:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise RecordError(f"body.{name} must be an int in [{minimum}, {maximum}]")


@functools.lru_cache(maxsize=1 << 16)
def _valid_card(number: str) -> bool:
    """`cardnumber.is_valid`, remembered: a town's few thousand cards recur in every sync
    batch, and the check digit is the dearest part of parsing a record."""
    return cardnumber.is_valid(number)


def _card(body: dict[str, Any]) -> None:
    number = body.get("card")
    if not (isinstance(number, str) and _valid_card(number)):
        raise RecordError("body.card must be a valid card number")


def _amount(body: dict[str, Any]) -> None:
    if not is_valid_amount(body.get("amount_cents")):
        raise RecordError("body.amount_cents must be 1..MAX_AMOUNT_CENTS")


#: the highest purse counter a record may name (the card's purse allows the same)
MAX_COUNTER = 2**31 - 1

_FIELDS: dict[str, set[str]] = {
    RecordKind.PAYMENT: {
        "card",
        "uid",
        "amount_cents",
        "tip_cents",
        "mode",
        "counter",
        "purse_cents",
    },
    RecordKind.VOID: {"card", "voids_seq", "amount_cents"},
    RecordKind.TOPUP_REQUEST: {"card", "amount_cents"},
    RecordKind.DAY_CLOSE: {"count", "sum_cents", "void_count", "void_sum_cents", "offline_count"},
}


def validate_body(kind: str, body: Any) -> None:
    """Raise RecordError unless `body` has exactly the fields `kind` needs, well typed.

    payment: card, uid (14 hex), amount_cents (charged, tip included), tip_cents,
      mode (online/offline), counter (the purse counter this payment writes),
      purse_cents (balance written to the card's purse; may be negative only
      if an offline payment overdrew what the terminal knew).
    void: card, voids_seq (this terminal's seq of the payment), amount_cents.
    topup_request: card, amount_cents (cash taken at the till).
    day_close: count, sum_cents, void_count, void_sum_cents, offline_count.
    """
    if not isinstance(kind, str) or kind not in _FIELDS:  # a dict is no key: TypeError
        raise RecordError(f"kind must be one of {KINDS}")
    if not isinstance(body, dict) or body.keys() != _FIELDS[kind]:
        raise RecordError(f"body of {kind} needs exactly {sorted(_FIELDS[kind])}")
    if kind == RecordKind.PAYMENT:
        _card(body)
        _amount(body)
        if not isinstance(body["uid"], str) or not _UID.fullmatch(body["uid"]):
            raise RecordError("body.uid must be 14 lower-case hex characters")
        _int(body, "tip_cents", 0, MAX_AMOUNT_CENTS)
        if body["tip_cents"] >= body["amount_cents"]:
            raise RecordError("body.tip_cents must be less than amount_cents")
        if body["mode"] not in MODES:
            raise RecordError(f"body.mode must be one of {MODES}")
        _int(body, "counter", 1, MAX_COUNTER)
        _int(body, "purse_cents", -MAX_AMOUNT_CENTS * 100, MAX_AMOUNT_CENTS * 100)
    elif kind == RecordKind.VOID:
        _card(body)
        _amount(body)
        _int(body, "voids_seq", 1, MAX_ID)
    elif kind == RecordKind.TOPUP_REQUEST:
        _card(body)
        _amount(body)
    else:
        for name in _FIELDS[RecordKind.DAY_CLOSE]:
            _int(body, name, 0, MAX_ID)


#: the fields of a record on the wire
_WIRE_FIELDS = frozenset({"v", "terminal_id", "seq", "prev", "kind", "body", "sig"})


@dataclass(frozen=True)
class Record:
    terminal_id: int
    seq: int
    prev: str
    kind: str
    body: dict[str, Any]
    sig: str

    def unsigned(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "terminal_id": self.terminal_id,
            "seq": self.seq,
            "prev": self.prev,
            "kind": self.kind,
            "body": self.body,
        }

    def signed_bytes(self) -> bytes:
        return canonical_bytes(self.unsigned())

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.signed_bytes()).hexdigest()

    def to_wire(self) -> dict[str, Any]:
        return {**self.unsigned(), "sig": self.sig}

    def signature_ok(self, public: Ed25519PublicKey) -> bool:
        return keys.verify(public, self.signed_bytes(), bytes.fromhex(self.sig))

    @classmethod
    def from_wire(cls, data: Any) -> Record:
        """Parse a record as it travels in JSON; raise RecordError if malformed."""
        if not isinstance(data, dict) or data.keys() != _WIRE_FIELDS:
            raise RecordError(f"a record has exactly the fields {sorted(_WIRE_FIELDS)}")
        if data["v"] != VERSION:
            raise RecordError(f"unsupported record version {data['v']!r}")
        _int(data, "terminal_id", 1, MAX_ID)
        _int(data, "seq", 1, MAX_ID)
        for name, pattern in (("prev", _HEX64), ("sig", _HEX128)):
            if not isinstance(data[name], str) or not pattern.fullmatch(data[name]):
                raise RecordError(f"{name} has the wrong form")
        validate_body(data["kind"], data["body"])
        return cls(
            terminal_id=data["terminal_id"],
            seq=data["seq"],
            prev=data["prev"],
            kind=data["kind"],
            body=data["body"],
            sig=data["sig"],
        )


def make_record(
    key: Ed25519PrivateKey,
    terminal_id: int,
    seq: int,
    prev: str,
    kind: str,
    body: dict[str, Any],
) -> Record:
    """Validate and sign a new record."""
    validate_body(kind, body)
    draft = Record(terminal_id, seq, prev, kind, body, sig="")
    signature = keys.sign(key, draft.signed_bytes()).hex()
    return Record(terminal_id, seq, prev, kind, body, sig=signature)
