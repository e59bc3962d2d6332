"""The site's card write secret, kept by the server so that enrolment hands it to each till.

Every card's NTAG write password derives from one site secret and the card's UID
(docs/card-format.md). The office makes it once (`hcard-provision cards new-secret`) and
protects new cards with it; every till needs the same one to write the purse. Typing it on
each till (`hcard-terminal enrol --card-secret`) is error-prone, so the server can keep a
copy (`hcard-server init --card-secret-file F`) and put it in the enrolment answer, which
only the holder of a one-time enrolment code gets.

The server never makes one itself: a second, different secret would let tills enrol fine
and then fail to write every card the office issued. For the same reason an installed
secret is never replaced. The file is `<data dir>/card-write-secret.hex`, mode 0600 like the
issuer key, and its content never appears in a log or an error message.
"""

from __future__ import annotations

import hmac
import os
import sys
from pathlib import Path

from hcard import cardsecret
from hcard.i18n import both as _
from hcard.server.settings import Settings

FILE_NAME = "card-write-secret.hex"


class CardSecretError(Exception):
    """A secret file that cannot be used; the message says why (German first), never what."""


def path(settings: Settings) -> Path:
    return settings.data_dir / FILE_NAME


def parse(text: str) -> str:
    """The secret as lower-case hex (`hcard.cardsecret.parse`, shared with office and till);
    CardSecretError when it is not a valid one."""
    try:
        return cardsecret.parse(text).hex()
    except ValueError as exc:
        raise CardSecretError(str(exc)) from None


#: `--card-secret-file -`: read standard input. An installer pipes in a file only root may
#: read; the server's own user cannot open that file, nor re-open root's pipe as /dev/stdin.
STDIN = Path("-")


def install(settings: Settings, source: Path) -> Path:
    """Copy the office's secret file (or STDIN) into the data dir (0600); the same one again
    is a no-op, a different one is refused (cards already issued depend on the installed one)."""
    try:
        raw = sys.stdin.buffer.read() if source == STDIN else source.read_bytes()
        secret = parse(raw.decode("ascii", "replace"))
    except OSError as exc:
        raise CardSecretError(
            _("card write secret not readable") + f": {source} ({type(exc).__name__})"
        ) from None
    target = path(settings)
    installed = load(settings)
    if installed is not None:
        if hmac.compare_digest(installed, secret):
            return target
        raise CardSecretError(
            _("{file} holds a different card write secret, it is never replaced", file=target)
        )
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secret + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return target


def load(settings: Settings) -> str | None:
    """The installed secret (hex), or None when the server has none."""
    target = path(settings)
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise CardSecretError(
            _("{file} has mode {mode}; a secret must be 0600", file=target, mode=f"{mode:o}")
        )
    return parse(target.read_bytes().decode("ascii", "replace"))
