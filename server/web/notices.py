"""What a page says after a form did its work: Post/Redirect/Get with `?done=<name>`.

A form's handler redirects (303) to the page with `?done=` and the name of what it did; the
page shows that name's text from its own table (`Done` enum → msgid). Only names the page
knows are shown: the page never prints text taken from the URL, so a link cannot make the
office's pages say something the office did not.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from fastapi.responses import RedirectResponse

from hcard.i18n import Text, text

Done = TypeVar("Done", bound=StrEnum)


def done_notices(done: str, known: Mapping[Done, Text], lang: str) -> list[dict[str, str]]:
    """The layout's `notices` for `?done=<done>`: the text of a known name, else none."""
    for name, msgid in known.items():
        if done == name:
            return [{"kind": "ok", "text": text(msgid, lang)}]
    return []


def redirect_done(path: str, done: StrEnum, anchor: str = "") -> RedirectResponse:
    """Back to `path` (a page of ours, never user input), telling it what was done."""
    separator = "&" if "?" in path else "?"
    fragment = f"#{anchor}" if anchor else ""
    return RedirectResponse(f"{path}{separator}done={done}{fragment}", status_code=303)
