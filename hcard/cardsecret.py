"""The site's card write secret as text: one parser for every place that reads it.

Every card's NTAG write password derives from one site secret and the card's UID
(docs/card-format.md). The office makes it (`hcard-provision cards new-secret`), the server
may keep it and hand it out at enrolment (`hcard-server init --card-secret-file`), and a till
may be given it (`hcard-terminal enrol --card-secret`). All three read the same hex file or
string; one parser here means they all accept and refuse exactly the same text, so a secret
the office accepts is never one a till or the server refuses.

The error message never contains the text itself: it is a secret, and messages end up in
logs and on screens.
"""

from __future__ import annotations

from hcard.i18n import both as _

#: the shortest secret accepted; the card layer refuses shorter ones too
#: (`hcard.terminal.card.layout.card_password`)
MIN_BYTES = 16


def invalid_message() -> str:
    """German / English: what a refused secret is told (never the text itself)."""
    return _("card write secret invalid (hex, at least {count} bytes)", count=MIN_BYTES)


def __getattr__(name: str) -> str:
    """`INVALID`, the message as a constant, looked up in the catalogues only when read."""
    if name == "INVALID":
        return invalid_message()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse(text: str) -> bytes:
    """The secret's bytes from hex text (surrounding white space and blanks between bytes
    allowed, either case); ValueError with a German/English message unless it is hex of at
    least MIN_BYTES bytes."""
    try:
        secret = bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError(invalid_message()) from None
    if len(secret) < MIN_BYTES:
        raise ValueError(invalid_message())
    return secret
