"""The one canonical byte encoding for everything that is signed or hashed.

Canonical JSON: UTF-8, keys sorted, no insignificant white space, and only
str, int, bool, None, list and dict allowed. Floats are refused outright so
that money can never sneak in as one and two implementations can never
disagree about how to print a number. JSON rather than a binary format because
a journal record must stay readable by a person auditing it in ten years.
"""

from __future__ import annotations

import json
from typing import Any

_ALLOWED_SCALARS = (str, int, bool, type(None))
#: the largest id, sequence number or timestamp anywhere: a signed 64-bit integer, what both
#: databases store; checked at every edge before a database sees it
MAX_ID = 2**63 - 1


#: scalars passed without a call (exactly these types; a subclass takes the full check)
_PLAIN = frozenset(_ALLOWED_SCALARS)


def _check(value: Any, path: str = "$") -> None:
    # The path of an item is only formatted for a container (a record's dozen plain values
    # are checked by their type alone): every synced record is encoded on this path.
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: keys must be str")
            if type(item) not in _PLAIN:
                _check(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if type(item) not in _PLAIN:
                _check(item, f"{path}[{index}]")
    elif isinstance(value, float) or not isinstance(value, _ALLOWED_SCALARS):
        raise TypeError(f"{path}: {type(value).__name__} cannot be encoded canonically")


#: one encoder for every call: `json.dumps` with options builds a new one each time, which
#: costs as much as encoding a journal record (every synced record is encoded)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_bytes(value: Any) -> bytes:
    """Encode `value` canonically; raise TypeError for floats and other types."""
    _check(value)
    return _ENCODER.encode(value).encode("utf-8")


def canonical_bytes_checked(value: Any) -> bytes:
    """`canonical_bytes` of a value whose every item the caller has already checked to be
    a str, int (no bool where a number is meant), None, list or dict with str keys: a
    journal record parsed by `Record.from_wire`. Skips the walk over it."""
    return _ENCODER.encode(value).encode("utf-8")


def parse_canonical(data: bytes) -> Any:
    """Decode bytes and refuse them unless they are exactly the canonical form."""
    value = json.loads(data.decode("utf-8"))
    if canonical_bytes(value) != data:
        raise ValueError("not canonical")
    return value
