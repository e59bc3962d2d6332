"""German and English from one set of gettext catalogues, for every part of the project.

Server messages (`hcard.errors`), the command lines, the till app and the office pages all
take their texts from `hcard/locale/<language>/LC_MESSAGES/hcard.po` (one domain, `hcard`).
msgids are English and live in the code: `_("card number")`, or `N_("Card blocked.")` where a
text is named now and translated later (a table). German comes first wherever both are shown:
the users are in Hattingen.

- `text(msgid, language, **fields)`: one language (the till's screen, `errors.message`);
- `pair(msgid, **fields)`: `(German, English)` (an error body's `message_de`/`message_en`);
- `both(msgid, **fields)`: `"German / English"`, the form of every command-line text; the
  command lines import it as `_`, so Babel's extractor finds their texts without options.

Fields are filled in with `str.format` after the lookup, in each language: the msgid keeps
its `{placeholders}` (`_("logged in as {user}", user=name)`), and a field that is itself a
marked text (`N_`) is translated into the same language.

Babel's extractor finds a text only as the literal argument of `_`, `N_` or `ngettext`, not
inside an f-string (Python 3.11) nor nested in another such call, and not as an argument of
`text`, `pair` or `both` called by those names: hand those a marked text or a variable.
tests/test_core_i18n.py reads the sources with Python's own parser and names any it misses.

Only the `.po` files are in git (`*.mo` is ignored). A catalogue is compiled once per process,
at its first use, with Babel's `read_po`/`write_mo` in memory (a few milliseconds): a git
checkout, a wheel and the Pi run from the same source and there is no build step to forget.
Babel is imported only then, so importing `hcard` stays as light as before.
Maintaining the catalogues: `make i18n` (extract + update, README "Texts in two languages");
tests/test_core_i18n.py fails while a text lacks its German or English.
"""

from __future__ import annotations

import functools
import gettext
import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argparse import ArgumentParser

DOMAIN = "hcard"
#: German first: the order of `pair` and `both`
LANGUAGES = ("de", "en")
LOCALE_DIR = Path(__file__).parent / "locale"


class Text(str):
    """A msgid marked for translation (`N_`): as a field of another text it is translated
    into that text's language."""

    __slots__ = ()


def N_(msgid: str) -> Text:  # noqa: N802 - the name gettext's tools look for
    """Mark `msgid` for extraction without translating it now."""
    return Text(msgid)


def language_of(locale: str) -> str:
    """`de`, `en` from a locale name such as `en_GB` or `de-DE`; German when unknown."""
    return "en" if locale.lower().startswith("en") else "de"


@functools.cache
def translations(language: str) -> gettext.GNUTranslations:
    """The compiled catalogue of `language` (`de` or `en`), compiled at its first use."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    if language not in LANGUAGES:
        raise ValueError(f"no catalogue for {language!r}: {LANGUAGES}")
    po_path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po_path.open("rb") as handle:
        catalogue = read_po(handle, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue)  # fuzzy entries are left out, as msgfmt does
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def text(msgid: str, language: str, /, **fields: object) -> str:
    """`msgid` in `language`, its `{fields}` filled in."""
    language = language_of(language)
    translated = translations(language).gettext(msgid)
    if not fields:
        return translated
    return translated.format(**{name: _in(value, language) for name, value in fields.items()})


def ntext(singular: str, plural: str, count: int, language: str, /, **fields: object) -> str:
    """The form of `singular`/`plural` for `count` in `language` (`{count}` is filled in)."""
    language = language_of(language)
    translated = translations(language).ngettext(singular, plural, count)
    values = {name: _in(value, language) for name, value in fields.items()}
    return translated.format(count=count, **values)


def pair(msgid: str, /, **fields: object) -> tuple[str, str]:
    """`(German, English)`."""
    german, english = (text(msgid, language, **fields) for language in LANGUAGES)
    return german, english


def both(msgid: str, /, **fields: object) -> str:
    """`German / English`: how every command line speaks."""
    return " / ".join(pair(msgid, **fields))


def _in(value: object, language: str) -> object:
    return text(value, language) if isinstance(value, Text) else value


#: the help of `-h`, which argparse says in English only ("show this help message and exit")
HELP = N_("show this help")


def bilingual_help(parser: ArgumentParser) -> ArgumentParser:
    """`-h` of `parser` and of every subcommand below it in German / English."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            action.help = both(HELP)
        elif isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                bilingual_help(sub)
    return parser
