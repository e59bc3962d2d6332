"""The cardholder's balance page: `GET /c/{card_number}?k=<check code>`, HTML, no login.

The card's chip holds `<balance page>/c/<number>` and the printed QR code the same with
`?k=<check code>` (`hcard.server.check_code`), so a phone opens it straight away. Without
the right code the page shows no balance and asks for the code; that page is the same,
byte for byte, whether the card exists or not, so trying numbers tells nothing. Wrong codes
are throttled per card and per address (429 with `Retry-After` and a page that says so). The code
is in the URL, so the answer is never cached and never sent on as a referrer.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from hcard import cardnumber
from hcard.errors import Code, HCardError
from hcard.money import format_cents
from hcard.server.api.deps import AddressDep, ContextDep
from hcard.server.api.errors import retry_headers
from hcard.server.services import cards

router = APIRouter(tags=["public"])

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_LOCAL_TIME = ZoneInfo("Europe/Berlin")
#: a check code is 8 characters; with dash and spaces a typed one stays well below this
_MAX_CODE_CHARS = 20
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def _page(status: int, headers: dict[str, str] | None = None, **values: object) -> HTMLResponse:
    defaults: dict[str, object] = {
        "number": None,
        "card": None,
        "balance": None,
        "recent": [],
        "wrong": False,
        "throttled": False,
    }
    html = _TEMPLATES.get_template("balance_page.html").render(**{**defaults, **values})
    return HTMLResponse(html, status_code=status, headers={**_HEADERS, **(headers or {})})


def _when(created_s: float) -> str:
    return datetime.fromtimestamp(created_s, _LOCAL_TIME).strftime("%d.%m.%Y %H:%M")


@router.get("/c/{card_number}", response_class=HTMLResponse)
def balance_page(
    ctx: ContextDep,
    address: AddressDep,
    card_number: str,
    k: Annotated[str | None, Query(description="check code printed on the card")] = None,
) -> HTMLResponse:
    """Balance and last movements when `k` is the card's check code; else ask for it."""
    try:
        number = cardnumber.normalize(card_number)
    except ValueError:
        return _page(404)
    code = (k or "").strip()
    card: dict[str, Any] | None = None
    if code:
        try:
            card = cards.for_cardholder(ctx, number, code[:_MAX_CODE_CHARS], address)
        except HCardError as error:
            if error.code is not Code.TOO_MANY_ATTEMPTS:
                raise
            return _page(
                429,
                number=cardnumber.pretty(number),
                throttled=True,
                headers=retry_headers(error.details),
            )
    if card is None:
        # 403 for a missing and a wrong code alike, and for a card that does not exist
        return _page(403, number=cardnumber.pretty(number), wrong=bool(code))
    return _page(
        200,
        number=cardnumber.pretty(number),
        card=card,
        balance=format_cents(int(card["balance_cents"])),
        recent=[
            {
                "when": _when(float(row["created_s"])),
                "label": row["label"],
                "amount": format_cents(int(row["amount_cents"])),
            }
            for row in card["recent"]
        ],
    )
