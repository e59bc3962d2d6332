"""The site secrets the server keeps: the card write secret (handed to tills at enrolment) and
the SUN secret (checks the links NTAG 424 DNA cards make).

Every card's NTAG write password, and an NTAG 424 DNA's purse key, derives from one site
secret and the card's UID (docs/card-format.md). The office makes it once (`hcard-provision
cards new-secret`) and protects new cards with it; every till needs the same one to write
the purse. Typing it on each till (`hcard-terminal enrol --card-secret`) is error-prone, so
the server can keep a copy (`hcard-server init --card-secret-file F`) and put it in the
enrolment answer, which only the holder of a one-time enrolment code gets.

An NTAG 424 DNA writes a fresh link on every tap (SUN), encrypted and MAC'd with keys 2 and 3,
which derive from a second site secret, the SUN secret (`ntag424.MasterKind.SUN`). The
office issues cards with it, and the balance page needs it to check their links
(`hcard-server init --sun-secret-file F`; `services/sun.py`). The tills never get it.

Both follow the same rules, in the one copy of the code below: the server never makes one
itself (a second, different secret would let everything start fine and then fail every card
the office issued), an installed secret is never replaced, the file is
`<data dir>/<kind's file>`, mode 0600 like the issuer key, and its content never appears in
a log or an error message.
"""

from __future__ import annotations

import hmac
import os
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from hcard import cardsecret
from hcard.i18n import N_, Text
from hcard.i18n import both as _
from hcard.server.settings import Settings


@dataclass(frozen=True)
class _Words:
    """What a refusal calls the secret (German / English from the catalogues)."""

    invalid: Text  # with {count}
    unreadable: Text
    different: Text  # with {file}


class Secret(Enum):
    """A site secret the server may keep; its value is the file's name in the data dir."""

    CARD_WRITE = "card-write-secret.hex"
    SUN = "card-sun-secret.hex"

    @property
    def file_name(self) -> str:
        return str(self.value)

    @property
    def words(self) -> _Words:
        return _WORDS[self]


_WORDS = {
    Secret.CARD_WRITE: _Words(
        N_("card write secret invalid (hex, at least {count} bytes)"),
        N_("card write secret not readable"),
        N_("{file} holds a different card write secret, it is never replaced"),
    ),
    Secret.SUN: _Words(
        N_("SUN secret invalid (hex, at least {count} bytes)"),
        N_("SUN secret not readable"),
        N_("{file} holds a different SUN secret, it is never replaced"),
    ),
}

#: the card write secret's file name (the default kind of every function here)
FILE_NAME = Secret.CARD_WRITE.file_name


class CardSecretError(Exception):
    """A secret file that cannot be used; the message says why (German first), never what."""


def path(settings: Settings, kind: Secret = Secret.CARD_WRITE) -> Path:
    return settings.data_dir / kind.file_name


def parse(text: str, kind: Secret = Secret.CARD_WRITE) -> str:
    """The secret as lower-case hex (`hcard.cardsecret.parse`, shared with office and till);
    CardSecretError when it is not a valid one."""
    try:
        return cardsecret.parse(text).hex()
    except ValueError:
        raise CardSecretError(_(kind.words.invalid, count=cardsecret.MIN_BYTES)) from None


#: `--card-secret-file -`: read standard input. An installer pipes in a file only root may
#: read; the server's own user cannot open that file, nor re-open root's pipe as /dev/stdin.
STDIN = Path("-")


def install(settings: Settings, source: Path, kind: Secret = Secret.CARD_WRITE) -> Path:
    """Copy the office's secret file (or STDIN) into the data dir (0600); the same one again
    is a no-op, a different one is refused (cards already issued depend on the installed one)."""
    try:
        raw = sys.stdin.buffer.read() if source == STDIN else source.read_bytes()
    except OSError as exc:
        raise CardSecretError(
            _(kind.words.unreadable) + f": {source} ({type(exc).__name__})"
        ) from None
    secret = parse(raw.decode("ascii", "replace"), kind)
    for other in Secret:
        held = load(settings, other) if other is not kind else None
        if held is not None and hmac.compare_digest(held, secret):
            # a SUN secret the tills hold as their card write secret would let any till
            # make card links that verify
            raise CardSecretError(
                _(
                    "{file} holds the same secret; each site secret must be its own",
                    file=path(settings, other),
                )
            )
    target = path(settings, kind)
    installed = load(settings, kind)
    if installed is not None:
        if hmac.compare_digest(installed, secret):
            return target
        raise CardSecretError(_(kind.words.different, file=target))
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secret + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return target


def load(settings: Settings, kind: Secret = Secret.CARD_WRITE) -> str | None:
    """The installed secret (hex), or None when the server has none."""
    target = path(settings, kind)
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise CardSecretError(
            _("{file} has mode {mode}; a secret must be 0600", file=target, mode=f"{mode:o}")
        )
    return parse(target.read_bytes().decode("ascii", "replace"), kind)
