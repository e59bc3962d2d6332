"""Names people type (users, merchants, tills, addresses): printable text of sensible length.

A name ends up on statements, in the bank file, on the till's screen and in logs. A NUL
or another control character there breaks a PDF, a terminal or a log line; a name of a
megabyte is an attack, not a shop. So every such name goes through `printable`, which
refuses them with the named code `invalid_name` before anything is stored.
"""

from __future__ import annotations

import unicodedata

from hcard.errors import Code, HCardError

#: Unicode categories refused anywhere in a name: control, format, surrogate, private use,
#: unassigned, and the line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


#: characters that are letters or symbols to Unicode but print as nothing at all
_BLANK = frozenset("\u115f\u1160\u2800\u3164\uffa0")


def is_printable(text: str) -> bool:
    return all(unicodedata.category(ch) not in _REFUSED_CATEGORIES for ch in text)


def _shows_something(text: str) -> bool:
    """At least one letter, digit, punctuation mark or symbol that is not blank."""
    return any(unicodedata.category(ch)[0] in "LNPS" and ch not in _BLANK for ch in text)


def printable(text: str, *, field: str, max_chars: int, required: bool = True) -> str:
    """`text` trimmed and in NFC; INVALID_NAME when empty (if `required`), longer than
    `max_chars` or holding a control character."""
    clean = unicodedata.normalize("NFC", text).strip()
    blank = not _shows_something(clean)  # empty, or only spaces and invisible characters
    if (blank and (required or clean)) or len(clean) > max_chars or not is_printable(clean):
        raise HCardError(Code.INVALID_NAME, field=field, max_chars=max_chars)
    return clean
