"""The till's own settings (language, mode, printer, manager PIN), one JSON file.

These are front-end choices only; everything about payments lives in the core.
The file sits in the terminal's data directory, mode 0600 (it holds the PIN
hash), and is replaced atomically so a power cut never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from hcard.i18n import N_
from hcard.i18n import both as _
from hcard.terminal import parse
from hcard.terminal.app.printer import parse_printer_spec

FILE_NAME = "app.json"


class Language(StrEnum):
    """The till's language: the catalogue `locale/<value>` and the money format."""

    DE = "de"
    EN = "en"


class TillMode(StrEnum):
    """Shop: amount, then card. Gastronomy: a tip step between them."""

    SHOP = "shop"
    GASTRONOMY = "gastronomy"


@dataclass(frozen=True)
class AppSettings:
    language: Language = Language.DE
    mode: TillMode = TillMode.SHOP
    printer: str = ""  # "" = none; see hcard.terminal.app.printer for the forms
    manager_pin_hash: str | None = None
    card_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        # the file and the settings screen give plain strings: stored as the enum members
        if self.language not in tuple(Language):
            raise ValueError(_("unknown language {language!r} (de, en)", language=self.language))
        if self.mode not in tuple(TillMode):
            raise ValueError(_("unknown mode {mode!r} (shop, gastronomy)", mode=self.mode))
        object.__setattr__(self, "language", Language(self.language))
        object.__setattr__(self, "mode", TillMode(self.mode))
        parse_printer_spec(parse.text("printer", self.printer))  # raises with a clear message
        parse.optional_text("manager_pin_hash", self.manager_pin_hash)
        timeout_s = self.card_timeout_s
        if (
            not isinstance(timeout_s, int | float)
            or isinstance(timeout_s, bool)
            or not 5 <= timeout_s <= 300
        ):
            raise parse.SettingError(
                "card_timeout_s",
                N_("card timeout must be 5 to 300 s, not {value!r}"),
                value=timeout_s,
            )

    def with_changes(self, **changes: Any) -> AppSettings:
        return replace(self, **changes)


def load(data_dir: Path) -> AppSettings:
    """Read the settings; defaults when the file does not exist yet."""
    path = Path(data_dir) / FILE_NAME
    if not path.exists():
        return AppSettings()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: " + _("unreadable") + f": {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: " + _("not a JSON object"))
    known = {k: v for k, v in raw.items() if k in AppSettings.__dataclass_fields__}
    try:
        return AppSettings(**known)
    except TypeError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def save(data_dir: Path, settings: AppSettings) -> None:
    """Write atomically with mode 0600."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".app-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(asdict(settings), fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, data_dir / FILE_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
