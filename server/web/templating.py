"""Rendering a page: one Jinja2 environment per language, the layout's values, formatting.

Texts in templates are English msgids looked up in the project's one catalogue:
`{{ _("Merchants") }}`, with fields as everywhere else (`_("{n} cards", n=count)`) and
`ngettext(singular, plural, count)`. Babel extracts them with babel.cfg's `jinja2` section.
Autoescaping is on for every template; `StrictUndefined` makes a missing value an error in
the tests instead of an empty spot on a page.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal
from fastapi import Request
from fastapi.responses import HTMLResponse

from hcard import i18n
from hcard.money import format_cents
from hcard.server.api.deps import SESSION_COOKIE
from hcard.server.web import auth, security
from hcard.server.web.navigation import nav_for

TEMPLATES_DIR = Path(__file__).parent / "templates"
LOCAL_TIME = ZoneInfo("Europe/Berlin")
LANGUAGE_COOKIE = "hcard_lang"
#: the Babel locale of each page language (dates, numbers, money)
LOCALES = {"de": "de_DE", "en": "en_GB"}


def language(request: Request) -> str:
    """The page language: the visitor's choice (cookie), else the browser's first of ours,
    else German."""
    chosen = request.cookies.get(LANGUAGE_COOKIE, "")
    if chosen in i18n.LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag[:2] in i18n.LANGUAGES:
            return tag[:2]
    return "de"


def _money(amount_cents: int, lang: str) -> str:
    return format_cents(int(amount_cents), lang)


def _when(epoch_s: float | None, lang: str) -> str:
    if epoch_s is None:
        return "–"
    moment = datetime.fromtimestamp(float(epoch_s), LOCAL_TIME)
    return format_datetime(moment, "short", tzinfo=LOCAL_TIME, locale=LOCALES[lang])


def _day(value: Any, lang: str) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value).date()
    elif isinstance(value, (int, float)):
        value = datetime.fromtimestamp(float(value), LOCAL_TIME).date()
    return format_date(value, "medium", locale=LOCALES[lang])


def _number(value: int | float, lang: str) -> str:
    return format_decimal(value, locale=LOCALES[lang])


@functools.cache
def environment(lang: str) -> jinja2.Environment:
    """The environment of one language: `_`, `ngettext` and the formatting filters bound to it."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["_"] = functools.partial(_translate, lang)
    env.globals["ngettext"] = functools.partial(_ntranslate, lang)
    env.globals["lang"] = lang
    env.filters["money"] = functools.partial(_money_filter, lang)
    env.filters["when"] = functools.partial(_when_filter, lang)
    env.filters["day"] = functools.partial(_day_filter, lang)
    env.filters["number"] = functools.partial(_number_filter, lang)
    return env


def _translate(lang: str, msgid: str, **fields: object) -> str:
    return i18n.text(msgid, lang, **fields)


def _ntranslate(lang: str, singular: str, plural: str, count: int, **fields: object) -> str:
    return i18n.ntext(singular, plural, count, lang, **fields)


def _money_filter(lang: str, amount_cents: int) -> str:
    return _money(amount_cents, lang)


def _when_filter(lang: str, epoch_s: float | None) -> str:
    return _when(epoch_s, lang)


def _day_filter(lang: str, value: Any) -> str:
    return _day(value, lang)


def _number_filter(lang: str, value: int | float) -> str:
    return _number(value, lang)


def layout_values(request: Request, lang: str, csrf_cookie: str) -> dict[str, Any]:
    """What base.html needs on every page: who is logged in, the menu, the form token."""
    staff = getattr(request.state, "staff", None)
    ctx = request.app.state.context
    session = request.cookies.get(SESSION_COOKIE, "")
    return {
        "staff": staff,
        "path": request.url.path,
        "nav": nav_for(staff, request.url.path, lang),
        "home": "/" if staff is None else auth.home_of(staff),
        "area": "",
        "notices": [],
        "csrf_token": security.csrf_token(ctx.csrf_key, csrf_cookie, session),
    }


def _csrf_cookie(request: Request) -> tuple[str, bool]:
    """This browser's CSRF cookie, or a new one (True: set it on the answer)."""
    existing = request.cookies.get(security.CSRF_COOKIE)
    if existing:
        return existing, False
    made = getattr(request.state, "new_csrf_cookie", None)
    if made is None:
        made = request.state.new_csrf_cookie = security.new_csrf_cookie()
    return made, True


def render(
    request: Request,
    template: str,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    **values: Any,
) -> HTMLResponse:
    """A page. Pages are never cached (they show money and names, and carry a form token)."""
    lang = language(request)
    csrf_cookie, new_cookie = _csrf_cookie(request)
    page = environment(lang).get_template(template)
    html = page.render({**layout_values(request, lang, csrf_cookie), **values})
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    if new_cookie:
        response.set_cookie(
            security.CSRF_COOKIE,
            csrf_cookie,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
