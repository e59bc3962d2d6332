"""One set of catalogues for both languages: every text in the code is in hcard/locale/, with
its German and its English, and the helpers of `hcard.i18n` give what the server, the command
lines and the till show.

The texts are extracted here as `make i18n` does (Babel, babel.cfg, the repository's top) and
compared with the template and both catalogues: a text added in the code but not yet extracted,
an entry without its German or English (or fuzzy, or missing a plural form), a translation that
drops or invents a `{field}`, and an entry whose text is gone from the code all fail, naming
the text.
"""

from __future__ import annotations

import ast
import io
from pathlib import Path
from string import Formatter

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po
from babel.util import pathmatch

from hcard import i18n
from hcard.errors import MESSAGES, Code, both, error_body, message, messages

ROOT = Path(__file__).resolve().parents[1]
Msgid = str | tuple[str, ...]


def _mapping() -> tuple[list[tuple[str, str]], dict[str, dict[str, str]]]:
    with (ROOT / "babel.cfg").open(encoding="utf-8") as handle:
        return parse_mapping_cfg(handle)


def _extracted() -> dict[Msgid, str]:
    """Every msgid in the code, with the first file it was found in."""
    method_map, options_map = _mapping()
    found: dict[Msgid, str] = {}
    for filename, _line, msgid, _comments, _context in extract_from_dir(
        ROOT, method_map, options_map
    ):
        found.setdefault(msgid, filename)
    return found


def _catalogue(path: Path, language: str | None = None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=language, domain=i18n.DOMAIN)


def _po(language: str) -> Path:
    return i18n.LOCALE_DIR / language / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"


def _forms(text: Msgid) -> tuple[str, ...]:
    return text if isinstance(text, tuple) else (text,)


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name is not None}


def problems(in_code: dict[Msgid, str], catalogue: Catalog) -> list[str]:
    """What is wrong with one language's catalogue, one line per text."""
    found: list[str] = []
    entries = {m.id: m for m in catalogue if m.id}
    for msgid, filename in in_code.items():
        entry = entries.get(msgid)
        forms = _forms(entry.string) if entry is not None and entry.string else ()
        if entry is None:
            found.append(f"not in the catalogue ({filename}): {msgid!r}")
        elif entry.fuzzy or not forms or not all(forms):
            found.append(f"not translated ({filename}): {msgid!r}")
        elif isinstance(msgid, tuple) and len(forms) != catalogue.num_plurals:
            found.append(f"{catalogue.num_plurals} plural forms wanted: {msgid!r}")
        elif isinstance(msgid, tuple):
            # a singular may leave out the count ("the last movement"), the plural keeps it:
            # every form uses only fields of the msgid's forms, the last one all the plural's
            allowed = _fields(msgid[0]) | _fields(msgid[1])
            found.extend(
                f"fields {sorted(_fields(form))} beyond {sorted(allowed)}: {msgid!r}"
                for form in forms
                if not _fields(form) <= allowed
            )
            if _fields(forms[-1]) != _fields(msgid[1]):
                found.append(f"the last plural form lacks {sorted(_fields(msgid[1]))}: {msgid!r}")
        else:
            wanted = _fields(msgid)
            found.extend(
                f"fields {sorted(_fields(form))} instead of {sorted(wanted)}: {msgid!r}"
                for form in forms
                if _fields(form) != wanted
            )
    found.extend(f"no longer in the code: {msgid!r}" for msgid in entries if msgid not in in_code)
    return found


IN_CODE = _extracted()
#: the default keywords the code uses, with the number of texts each takes
KEYWORDS = {"_": 1, "N_": 1, "gettext": 1, "ngettext": 2}


def _python_sources() -> list[Path]:
    """The .py files babel.cfg has extracted (the first pattern that matches decides)."""
    method_map, _options = _mapping()
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if any(part.startswith((".", "_")) for part in relative.split("/")[:-1]):
            continue
        method = next((m for pattern, m in method_map if pathmatch(pattern, relative)), None)
        if method == "python":
            found.append(path)
    return found


def _hidden_lookup(func: ast.expr) -> int:
    """1 for `both("…")`, `pair("…")`, `i18n.text("…", …)`: a literal there is no keyword
    Babel knows (it must be `_("…")`, or marked `N_("…")`)."""
    if isinstance(func, ast.Name) and func.id in {"both", "pair"}:
        return 1
    looked_up = isinstance(func, ast.Attribute) and func.attr in {"both", "pair", "text"}
    return 1 if looked_up and getattr(func.value, "id", None) == "i18n" else 0


def _calls_with_literal_texts() -> dict[Msgid, str]:
    """Every `_("…")`, `N_("…")`, `ngettext("…", "…", n)` as Python's own parser sees them,
    f-strings included (Babel's extractor reads inside them only on Python 3.12+), and every
    literal handed to `both`/`pair`/`i18n.text` directly."""
    found: dict[Msgid, str] = {}
    for path in _python_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            count = KEYWORDS.get(name or "") or _hidden_lookup(node.func)
            texts = [a.value for a in node.args[: count or 0] if isinstance(a, ast.Constant)]
            if count and len(texts) == count and all(isinstance(t, str) for t in texts):
                msgid = texts[0] if count == 1 else tuple(texts)
                found.setdefault(msgid, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_the_extraction_finds_the_texts_of_every_part():
    """A tripwire for babel.cfg: errors, each command line, the server's settings."""
    assert MESSAGES[Code.CARD_BLOCKED] in IN_CODE  # hcard/errors.py, marked with N_
    assert IN_CODE["card number"].startswith("provisioning/")  # hcard-provision's help
    assert IN_CODE["APPROVED"] == "terminal/cli.py"  # hcard-terminal's result line
    assert IN_CODE["a valid IBAN"] == "server/settings.py"
    assert IN_CODE["Pay"] == "terminal/app/layout.kv"  # the till's kv rules
    assert IN_CODE["Please tap the card"] == "terminal/app/app.py"
    assert any(isinstance(msgid, tuple) for msgid in IN_CODE)  # ngettext: (singular, plural)


def test_babel_sees_every_text_the_code_looks_up():
    """A text Babel cannot see (a `_()` inside an f-string) would never be translated."""
    unseen = {
        msgid: where for msgid, where in _calls_with_literal_texts().items() if msgid not in IN_CODE
    }
    assert not unseen, f"not extracted (inside an f-string? not `_`/`N_`?): {unseen}"


def test_the_template_holds_exactly_the_texts_in_the_code():
    template = _catalogue(i18n.LOCALE_DIR / f"{i18n.DOMAIN}.pot")
    in_template = {m.id for m in template if m.id}
    assert not set(IN_CODE) - in_template, "run `make i18n`: texts missing from hcard.pot"
    assert not in_template - set(IN_CODE), "run `make i18n`: hcard.pot names texts that are gone"


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_every_text_has_its_german_and_its_english(language: str):
    catalogue = _catalogue(_po(language), language)
    assert catalogue.num_plurals == 2, f"{language}: Plural-Forms header missing"
    found = problems(IN_CODE, catalogue)
    assert not found, f"{language} ({_po(language).relative_to(ROOT)}):\n" + "\n".join(found)


def test_a_missing_translation_fails_the_check():
    """The check itself: an entry emptied, a fuzzy one, a lost field, one gone, a stale one."""
    catalogue = _catalogue(_po("de"), "de")
    blocked, amount, gone = (
        MESSAGES[c] for c in (Code.CARD_BLOCKED, Code.INVALID_AMOUNT, Code.NOT_FOUND)
    )
    in_code = {**IN_CODE, "Paid {amount}": "terminal/x.py", ("{count} card", "{count} cards"): "x"}
    catalogue[blocked].string = ""
    catalogue[amount].flags.add("fuzzy")
    catalogue.add("Paid {amount}", "Bezahlt")
    catalogue.add(("{count} card", "{count} cards"), ("{count} Karte", ""))
    del catalogue[gone]
    catalogue.add("a text nobody uses", "ein Text, den keiner braucht")
    # written and read back as a file would be: the same check fails
    written = io.BytesIO()
    write_po(written, catalogue)
    written.seek(0)
    found = "\n".join(problems(in_code, read_po(written, locale="de", domain=i18n.DOMAIN)))
    assert f"not translated (hcard/errors.py): {blocked!r}" in found
    assert f"not translated (hcard/errors.py): {amount!r}" in found
    assert "fields [] instead of ['amount']: 'Paid {amount}'" in found
    assert "not translated (x): ('{count} card', '{count} cards')" in found
    assert f"not in the catalogue (hcard/errors.py): {gone!r}" in found
    assert "no longer in the code: 'a text nobody uses'" in found
    assert len(found.splitlines()) == 6, found


def test_one_language_both_and_the_pair():
    assert i18n.text("Card blocked.", "de") == "Karte gesperrt."
    assert i18n.text("Card blocked.", "en_GB") == "Card blocked."
    assert i18n.text("Card blocked.", "fr") == "Karte gesperrt."  # German when unknown
    assert i18n.pair("Card blocked.") == ("Karte gesperrt.", "Card blocked.")
    assert i18n.both("Card blocked.") == "Karte gesperrt. / Card blocked."
    assert i18n.text("a text in no catalogue", "de") == "a text in no catalogue"
    assert i18n.text("Please tap the card", "de") == "Karte auflegen"  # the till's too


def test_an_error_body_keeps_its_wire_form():
    assert messages(Code.CARD_BLOCKED) == ("Karte gesperrt.", "Card blocked.")
    assert message(Code.CARD_BLOCKED, "en") == "Card blocked."
    assert message(Code.CARD_BLOCKED) == "Karte gesperrt."
    assert (
        both(Code.SAME_CARD) == "Alte und neue Karte sind gleich. / Old and new card are the same."
    )
    assert error_body(Code.INVALID_AMOUNT) == {
        "code": "invalid_amount",
        "message_de": "Ungültiger Betrag (1 Cent bis 10.000 €).",
        "message_en": "Invalid amount (1 cent to €10,000).",
    }
