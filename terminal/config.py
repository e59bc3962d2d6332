"""Terminal state on disk, and enrolment that creates it.

One state directory per terminal (default `/var/lib/hcard-terminal`, or
`$HCARD_TERMINAL_STATE`):

| file | what | written |
|---|---|---|
| `terminal.key` | Ed25519 private key, mode 0600 (`hcard.keys`) | once, at enrolment |
| `config.json` | server URL, terminal/merchant id, issuer key, reader | at enrolment |
| `journal.sqlite` | the signed journal (`hcard.terminal.journal`) | every record |
| `snapshot.json` | last verified snapshot from the server | every sync |

The key pair is made here, on the terminal; only the public half is sent to the
server. A failed enrolment keeps the key so that a retry with a new code does
not leave a registered key behind that nobody holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import cardsecret, keys, ntag424
from hcard.encoding import MAX_ID
from hcard.errors import Code, HCardError
from hcard.files import write_atomic as write_atomic  # re-exported: the till, the office
from hcard.i18n import N_
from hcard.terminal import parse
from hcard.terminal.card import originality
from hcard.terminal.client import post_json

STATE_ENV = "HCARD_TERMINAL_STATE"
DEFAULT_STATE_DIR = Path("/var/lib/hcard-terminal")
KEY_FILE = "terminal.key"
CONFIG_FILE = "config.json"
JOURNAL_FILE = "journal.sqlite"
SNAPSHOT_FILE = "snapshot.json"


def default_state_dir() -> Path:
    """`$HCARD_TERMINAL_STATE`, or /var/lib/hcard-terminal when it is unset or empty."""
    return Path(parse.environ(STATE_ENV) or DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class TerminalConfig:
    server_url: str
    terminal_id: int
    merchant_id: int
    merchant_name: str
    issuer_public_key: str
    name: str
    reader: str = "usb"
    # Hex of the trusted originality-signature key (secp128r1); None means NXP's.
    originality_key: str | None = None
    # The same for NTAG 424 DNA cards (secp224r1); None means NXP's.
    originality_424_key: str | None = None
    # Hex of the secret the cards' NTAG write passwords derive from (see
    # `hcard.terminal.card.layout.card_password`); shared with card issuance.
    card_write_secret: str = ""

    @classmethod
    def from_json(cls, data: Any, where: str) -> TerminalConfig:
        """The config from `config.json`'s object; `parse.SettingError` names the field that
        is missing, unknown or of the wrong type (`where` is the file)."""
        if not isinstance(data, dict):
            raise parse.expected(where, type(data).__name__, N_("a JSON object"))
        names = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise parse.SettingError(where, N_("unknown fields {fields}"), fields=unknown)
        for name in ("server_url", "terminal_id", "merchant_id", "merchant_name",
                     "issuer_public_key", "name"):  # fmt: skip
            if name not in data:
                raise parse.SettingError(where, N_("{field} is missing"), field=name)
        field = f"{where}: {{}}".format
        return cls(
            server_url=parse.text(field("server_url"), data["server_url"]),
            terminal_id=_id(field("terminal_id"), data["terminal_id"]),
            merchant_id=_id(field("merchant_id"), data["merchant_id"]),
            merchant_name=parse.text(field("merchant_name"), data["merchant_name"]),
            issuer_public_key=parse.text(field("issuer_public_key"), data["issuer_public_key"]),
            name=parse.text(field("name"), data["name"]),
            reader=parse.text(field("reader"), data.get("reader", "usb")),
            originality_key=_key(
                field("originality_key"),
                parse.optional_text(field("originality_key"), data.get("originality_key")),
                originality.public_key,
            ),
            originality_424_key=_key(
                field("originality_424_key"),
                parse.optional_text(field("originality_424_key"), data.get("originality_424_key")),
                ntag424.originality_public_key,
            ),
            card_write_secret=parse.text(
                field("card_write_secret"), data.get("card_write_secret", "")
            ),
        )


def _key(name: str, value: str | None, load: Callable[[str], object]) -> str | None:
    """A trusted originality key as hex, checked with `load` (a till with a typo in it would
    refuse every card of that type); None means NXP's."""
    if value is None:
        return None
    try:
        load(value)
    except ValueError:
        raise parse.SettingError(name, N_("not a valid public key")) from None
    return value


def _id(name: str, value: object) -> int:
    """A terminal or merchant id: a whole number from 1 to the largest id (`MAX_ID`)."""
    return parse.integer(name, value, minimum=1, maximum=MAX_ID)


class TerminalState:
    """Paths and loaders of one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir

    @property
    def key_path(self) -> Path:
        return self.dir / KEY_FILE

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE

    @property
    def journal_path(self) -> Path:
        return self.dir / JOURNAL_FILE

    @property
    def snapshot_path(self) -> Path:
        return self.dir / SNAPSHOT_FILE

    def enrolled(self) -> bool:
        return self.config_path.exists()

    def load_config(self) -> TerminalConfig:
        """The config; HCardError(UNKNOWN_TERMINAL) when not enrolled, `parse.SettingError`
        naming the file and the field when it is damaged."""
        try:
            raw = self.config_path.read_text("utf-8")
        except FileNotFoundError as exc:
            raise HCardError(Code.UNKNOWN_TERMINAL, state_dir=str(self.dir)) from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise parse.SettingError(
                str(self.config_path), N_("not valid JSON ({error})"), error=exc
            ) from exc
        return TerminalConfig.from_json(data, str(self.config_path))

    def save_config(self, config: TerminalConfig) -> None:
        write_atomic(self.config_path, json.dumps(asdict(config), indent=2).encode())

    def load_key(self) -> Ed25519PrivateKey:
        return keys.load_private(self.key_path)


def enrol(
    state: TerminalState,
    server_url: str,
    code: str,
    name: str = "Kasse",
    reader: str = "usb",
    originality_key: str | None = None,
    card_write_secret: str = "",
    originality_424_key: str | None = None,
) -> TerminalConfig:
    """Make the key pair (kept if it exists), register it with `POST /v1/enrol`, save config."""
    if state.enrolled():
        raise HCardError(
            Code.ENROLMENT_CODE_INVALID, reason="already enrolled", path=str(state.dir)
        )
    key = keys.load_or_create_private(state.key_path)
    answer = post_json(
        server_url.rstrip("/") + "/v1/enrol",
        {"code": code.strip().upper(), "public_key": keys.public_hex(key), "name": name},
    )
    try:
        # The server's copy of the site secret wins (docs/protocol.md POST /v1/enrol).
        secret = str(answer.get("card_write_secret", card_write_secret))
        config = TerminalConfig(
            server_url=server_url.rstrip("/"),
            terminal_id=_id("terminal_id", answer["terminal_id"]),
            merchant_id=_id("merchant_id", answer["merchant_id"]),
            merchant_name=str(answer["merchant_name"]),
            issuer_public_key=keys.public_hex(keys.public_from_hex(answer["issuer_public_key"])),
            name=name,
            reader=reader,
            originality_key=originality_key,
            originality_424_key=originality_424_key,
            card_write_secret=cardsecret.parse(secret).hex() if secret else "",
        )
    except parse.SettingError as exc:  # says which field (never the card secret)
        raise HCardError(
            Code.MALFORMED_REQUEST, reason=f"enrolment answer malformed: {exc}"
        ) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise HCardError(Code.MALFORMED_REQUEST, reason="enrolment answer malformed") from exc
    state.save_config(config)
    return config
