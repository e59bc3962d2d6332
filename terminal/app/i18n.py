"""German and English texts from the gettext catalogues in `locale/`.

msgids are English; `locale/de` and `locale/en` hold the texts shown.
Catalogues are kept as `.po` only (`.mo` files are gitignored): at start-up
Babel compiles the chosen `.po` in memory, which costs a few milliseconds and
means a wheel, a git checkout and the Pi all run from the same source with no
build step to forget. Maintaining them (docs/app.md):
`pybabel extract -F terminal/app/babel.cfg -o terminal/app/locale/messages.pot terminal/app`,
then `pybabel update -i … -d terminal/app/locale`.

`tr._("Pay")` works in Python and in kv rules; in kv the text is re-evaluated
when the language is switched (the observable pattern from the Kivy wiki), so
the whole screen changes language without a restart. `tr.ngettext(singular,
plural, n)` is for a count ("1 Buchung wartet", "3 Buchungen warten"), with the
catalogue's plural rule (Babel's extractor knows the name); it is called from
Python, which renders such texts again on a switch.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from kivy.event import Observable

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"


def load_catalogue(language: str) -> gettext.GNUTranslations:
    """Compile `locale/<language>/LC_MESSAGES/messages.po` in memory."""
    po_path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


class Translator(Observable):
    """The current language; `_` looks a text up and kv rules re-run on `switch`."""

    def __init__(self, language: str) -> None:
        super().__init__()
        self._observers: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._next_uid = 0
        self.language = language
        self._catalogue = load_catalogue(language)

    def _(self, text: str) -> str:
        return self._catalogue.gettext(text)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self._catalogue.ngettext(singular, plural, n)

    def switch(self, language: str) -> None:
        if language == self.language:
            return
        self._catalogue = load_catalogue(language)
        self.language = language
        for func, args in list(self._observers.values()):
            func(*args, self, None)

    # Kivy's kv compiler binds to `tr._` through these three.
    def fbind(self, name: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        if name != "_":
            return super().fbind(name, func, *args, **kwargs)
        self._next_uid += 1
        self._observers[self._next_uid] = (func, args)
        return self._next_uid

    def funbind(self, name: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if name != "_":
            super().funbind(name, func, *args, **kwargs)
            return
        for uid, (known, known_args) in list(self._observers.items()):
            if known == func and known_args == args:
                del self._observers[uid]

    def unbind_uid(self, name: str, uid: int) -> None:
        if name != "_":
            super().unbind_uid(name, uid)
            return
        self._observers.pop(uid, None)
