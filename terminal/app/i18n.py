"""The till's current language over the project's one set of catalogues (`hcard.i18n`).

msgids are English; `hcard/locale/de` and `hcard/locale/en` hold the texts shown, the same
catalogues the server, the command lines and the office use (compiled at first use, in memory;
README "Texts in German and English", `make i18n` after changing a text).

`tr._("Pay")` works in Python and in kv rules; in kv the text is re-evaluated
when the language is switched (the observable pattern from the Kivy wiki), so
the whole screen changes language without a restart. `tr.ngettext(singular,
plural, n)` is for a count ("1 Buchung wartet", "3 Buchungen warten"), with the
catalogue's plural rule (Babel's extractor knows the name); it is called from
Python, which renders such texts again on a switch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kivy.event import Observable

from hcard import i18n


class Translator(Observable):
    """The current language; `_` looks a text up and kv rules re-run on `switch`."""

    def __init__(self, language: str) -> None:
        super().__init__()
        self._observers: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._next_uid = 0
        self.language = language
        self._catalogue = i18n.translations(language)

    def _(self, text: str) -> str:
        return self._catalogue.gettext(text)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self._catalogue.ngettext(singular, plural, n)

    def switch(self, language: str) -> None:
        if language == self.language:
            return
        self._catalogue = i18n.translations(language)
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
