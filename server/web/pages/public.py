"""The pages for everyone, no login: the start page, the cardholder's balance page and the
acceptance points.

- `GET /`: check your balance (card number and check code), where to pay, the staff login.
- `GET /c?number=...&k=...`: the start page's form, sent on to the card's own page.
- `GET /c/{card_number}?k=<check code>`: the balance page. The card's chip holds
  `<balance page>/c/<number>` and the printed QR code the same with `?k=<check code>`
  (`hcard.server.check_code`), so a phone opens it straight away. Without the right code the
  page shows no balance and asks for the code; that page is the same, byte for byte, whether
  the card exists or not, so trying numbers tells nothing. Wrong codes are throttled per card
  and per address (429 with `Retry-After` and a page that says so). The code is in the URL,
  so the answer is never cached, never sent on as a referrer and never indexed.
- `GET /k?p=<32 hex>&m=<16 hex>`: the balance page an NTAG 424 DNA card's own link opens
  (SUN, `services/sun.py`): no code to type, the link proves a recent tap. It opens the page
  once: the same link again (a reload, a bookmark, a copy) is 410 and asks for a new tap; a
  link that does not verify, or of no card of this server, is 400 and says nothing more;
  without a SUN secret the server cannot check links (503). Invalid links are throttled per
  address on the check codes' budget (429). `/k` without a link (where the language switch
  leads, as the link is used up) asks for a tap.
- `GET /akzeptanzstellen?category=food`: the listed merchants by category, with address,
  opening hours and a link to the map (the same list as JSON: `api/public.py`).

These pages hand out no cookie (`public_page`): nothing on them changes anything, so they
need no form token, and the town's website can link them without a cookie notice.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hcard import cardnumber
from hcard.errors import Code, HCardError, message
from hcard.i18n import N_, text
from hcard.server.api.deps import AddressDep, ContextDep
from hcard.server.api.errors import retry_headers
from hcard.server.api.public import CACHE_CONTROL
from hcard.server.services import acceptance, cards, sun
from hcard.server.vocabulary import MerchantCategory
from hcard.server.web.templating import environment, language, layout_values

router = APIRouter(include_in_schema=False)

#: a check code is 8 characters; with dash and spaces a typed one stays well below this
MAX_CODE_CHARS = 20
#: a card number typed with spaces or dashes (16 digits) stays well below this
_MAX_NUMBER_CHARS = 40
#: the code travels in the URL: kept out of caches, referrers and search engines
_SECRET_URL_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}


def public_page(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **values: object,
) -> HTMLResponse:
    """A public page in the shared layout, without the CSRF cookie `templating.render` sets:
    no cookie, so the same request always gets the same answer. The language comes from
    the visitor's choice or browser (`Vary`)."""
    lang = language(request)
    layout = layout_values(request, lang, csrf_cookie="")
    html = environment(lang).get_template(template).render({**layout, **values})
    return HTMLResponse(
        html,
        status_code=status_code,
        headers={"Cache-Control": "no-store", "Vary": "Accept-Language, Cookie", **(headers or {})},
    )


def _start_page(
    request: Request, *, status_code: int = 200, number: str = "", error: str = ""
) -> HTMLResponse:
    return public_page(
        request,
        "public/start.html",
        status_code=status_code,
        title=text(N_("Check your balance"), language(request)),
        number=number,
        error=error,
    )


@router.get("/", name="start_page")
def start_page(request: Request) -> Response:
    return _start_page(request)


@router.get("/c", name="balance_form")
def balance_form(
    request: Request,
    number: Annotated[str, Query(max_length=_MAX_NUMBER_CHARS)] = "",
    k: Annotated[str, Query(max_length=MAX_CODE_CHARS)] = "",
) -> Response:
    """The start page's form: on to the card's page (`/c/<number>?k=<code>`), as its QR code
    would; a number that cannot be a card's is shown again with what is wrong."""
    try:
        normalized = cardnumber.normalize(number)
    except ValueError:
        lang = language(request)
        error = text(N_("This is not a card number. Please check the number on the card."), lang)
        return _start_page(request, status_code=400, number=number, error=error)
    target = f"/c/{normalized}" + (f"?k={quote(k.strip(), safe='')}" if k.strip() else "")
    return RedirectResponse(target, status_code=303, headers=_SECRET_URL_HEADERS)


def _balance_page(
    request: Request,
    status_code: int,
    number: str = "",
    *,
    headers: dict[str, str] | None = None,
    code: str = "",
    **values: object,
) -> HTMLResponse:
    """The page of card `number` (normalised; empty: not a card number). `code` only when it
    opened the card: the language switch keeps it, so the balance stays on the screen."""
    lang = language(request)
    path = f"/c/{number}" if number else request.url.path
    if code:
        path += f"?k={quote(code, safe='')}"
    defaults: dict[str, object] = {
        "title": text(N_("Your balance"), lang),
        "number": cardnumber.pretty(number) if number else None,
        "card": None,
        "wrong": False,
        "throttled": "",
        "path": path,
    }
    return public_page(
        request,
        "public/balance.html",
        status_code=status_code,
        headers={**_SECRET_URL_HEADERS, **(headers or {})},
        **{**defaults, **values},
    )


def _throttled_text(
    details: dict[str, object], lang: str, what: str = N_("Too many wrong check codes.")
) -> str:
    retry_after_s = details.get("retry_after_s")
    minutes = max(1, -(-retry_after_s // 60)) if isinstance(retry_after_s, int) else 1
    return " ".join(
        (text(what, lang), text(N_("Try again in {minutes} min."), lang, minutes=minutes))
    )


@router.get("/c/{card_number}", name="balance_page")
def balance_page(
    request: Request,
    ctx: ContextDep,
    address: AddressDep,
    card_number: str,
    k: Annotated[str | None, Query(description="check code printed on the card")] = None,
) -> Response:
    """Balance and last movements when `k` is the card's check code; else ask for it."""
    try:
        number = cardnumber.normalize(card_number)
    except ValueError:
        return _balance_page(request, 404)
    code = (k or "").strip()[:MAX_CODE_CHARS]
    card = None
    if code:
        try:
            card = cards.for_cardholder(ctx, number, code, address)
        except HCardError as error:
            if error.code is not Code.TOO_MANY_ATTEMPTS:
                raise
            return _balance_page(
                request,
                429,
                number,
                headers=retry_headers(error.details),
                throttled=_throttled_text(error.details, language(request)),
            )
    if card is None:
        # 403 for a missing and a wrong code alike, and for a card that does not exist
        return _balance_page(request, 403, number, wrong=bool(code))
    return _balance_page(request, 200, number, code=code, card=card)


class LinkState(StrEnum):
    """Why the page of a card's link (`/k`) shows no balance."""

    TAP = "tap"  # no link in the URL
    INVALID = "invalid"
    STALE = "stale"
    THROTTLED = "throttled"
    NOT_CONFIGURED = "not_configured"


#: a state's status and notice kind; its text is `_LINK_TEXTS` or the refusal's own
_LINK_STATUS = {
    LinkState.TAP: (200, ""),
    LinkState.INVALID: (400, "error"),
    LinkState.STALE: (410, "warn"),
    LinkState.THROTTLED: (429, "error"),
    LinkState.NOT_CONFIGURED: (503, "error"),
}
_LINK_TEXTS = {
    LinkState.TAP: N_("Hold the card to your phone to see its balance."),
    LinkState.NOT_CONFIGURED: N_(
        "This server cannot check card links yet. Please enter the card number and check code"
        " instead."
    ),
}


def _link_page(
    request: Request,
    state: LinkState,
    notice: str = "",
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The page of a link that shows no balance: what happened, and the way by card number."""
    lang = language(request)
    status_code, kind = _LINK_STATUS[state]
    return public_page(
        request,
        "public/link.html",
        status_code=status_code,
        headers={**_SECRET_URL_HEADERS, **(headers or {})},
        title=text(N_("Your balance"), lang),
        path=sun.PATH,
        kind=kind,
        notice=notice or text(_LINK_TEXTS[state], lang),
    )


@router.get(sun.PATH, name="sun_balance_page")
def sun_balance_page(
    request: Request,
    ctx: ContextDep,
    address: AddressDep,
    p: Annotated[
        str, Query(description="the card's PICCData: UID and tap counter, encrypted")
    ] = "",
    m: Annotated[str, Query(description="the card's SDMMAC over this tap")] = "",
) -> Response:
    """Balance and last movements of the card whose fresh link this is; else why not."""
    lang = language(request)
    if not sun.configured(ctx):
        return _link_page(request, LinkState.NOT_CONFIGURED)
    if not p and not m:
        return _link_page(request, LinkState.TAP)
    try:
        card = sun.open_link(ctx, p, m, address)
    except HCardError as error:
        if error.code is Code.TOO_MANY_ATTEMPTS:
            throttled = _throttled_text(error.details, lang, N_("Too many invalid card links."))
            return _link_page(
                request, LinkState.THROTTLED, throttled, headers=retry_headers(error.details)
            )
        if error.code is Code.SUN_STALE:
            return _link_page(request, LinkState.STALE, message(error.code, lang))
        if error.code is Code.SUN_INVALID:
            return _link_page(request, LinkState.INVALID, message(error.code, lang))
        raise
    # the check code's page with the balance, except that the language switch leads to `/k`
    # alone (this link is used up): asking for a new tap
    return _balance_page(request, 200, str(card["card_number"]), card=card, path=sun.PATH)


def _category(value: str) -> MerchantCategory | None:
    """The `?category=` of the acceptance page: empty is all of them."""
    if not value:
        return None
    try:
        return MerchantCategory(value)
    except ValueError:
        raise HCardError(Code.MALFORMED_REQUEST, field="category") from None


@router.get("/akzeptanzstellen", name="acceptance_page")
def acceptance_page(
    request: Request,
    ctx: ContextDep,
    category: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    """The listed merchants, by category; one category with `?category=`."""
    chosen = _category(category)
    lang = language(request)
    points = acceptance.acceptance_points(ctx, chosen)
    path = request.url.path + (f"?category={chosen}" if chosen else "")
    return public_page(
        request,
        "public/acceptance.html",
        headers={"Cache-Control": CACHE_CONTROL},
        title=text(N_("Where to pay with the card"), lang),
        path=path,
        chosen=chosen,
        count=len(points),
        groups=acceptance.by_category(points),
        categories=[
            (category, text(label, lang)) for category, label in acceptance.CATEGORY_LABELS.items()
        ],
    )
