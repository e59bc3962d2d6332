"""Cards (`/office/cards`): find a card, see its balance and history, act on it.

Find by number (with or without spaces and dashes) or by pasting the card's URL from its QR
code (`https://…/c/<number>?k=…`, the check code is ignored). The card's page shows balance,
status and history, and the office's actions: top-up (cash; a bank transfer is booked from
the bank statement, never by hand), block and unblock, replace with the balance moved to
the new card, a correction with a reason (admin only), a new printed check code.

Every action is a form that answers with a redirect back to the card's page and a notice
named in `Done` (`?done=<name>`, `web/notices.py`: the page never shows text taken from the
URL). A refusal shows the form again with the message next to its field. Printing a new
check code answers with the page itself, the code on it: a code does not belong in a URL or
the history.

The money forms (top-up, correction) carry a form id the server made for this showing of
the page (`cards.new_form_id`); the booking records it, so the same form sent twice (a
double click, a reload of the answer) books once and answers with the same redirect.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from hcard import cardnumber
from hcard.errors import Code, HCardError, message
from hcard.i18n import N_, Text, text
from hcard.money import parse_amount
from hcard.server.api.deps import ContextDep
from hcard.server.api.errors import status_of
from hcard.server.services import cards
from hcard.server.services.users import Staff
from hcard.server.vocabulary import FlagReason, Role, TopupSource
from hcard.server.web.auth import AdminUser, OfficeUser
from hcard.server.web.notices import done_notices, redirect_done
from hcard.server.web.templating import language, render

router = APIRouter(include_in_schema=False)

HOME = "/office/cards"
#: movements on the card's page, and with "show all"
HISTORY_SHOWN = 100
HISTORY_ALL = 1000
#: a pasted URL with its check code is well below this
_MAX_TYPED = 300
#: the card number in a pasted card URL: `…/c/<number>` (then `?k=…`)
_URL_NUMBER = re.compile(r"/c/([^/?#]+)")

#: a form id as `cards.new_form_id` makes it, with room to spare
_MAX_FORM_ID = 64


class Done(StrEnum):
    """What a redirect after a form tells the card's page (`?done=`)."""

    TOPPED_UP = "topped_up"
    BLOCKED = "blocked"
    UNBLOCKED = "unblocked"
    REPLACED = "replaced"
    CORRECTED = "corrected"


#: the notices a redirect back to the card's page may show, never text from the URL
_DONE: dict[StrEnum, Text] = {
    Done.TOPPED_UP: N_("The top-up is booked."),
    Done.BLOCKED: N_("The card is blocked. The tills refuse it from their next update."),
    Done.UNBLOCKED: N_("The card is unblocked and can pay again."),
    Done.REPLACED: N_("The balance is moved to the new card. This card is blocked."),
    Done.CORRECTED: N_("The correction is booked."),
}

#: why the server blocked a card by itself, in plain words
FLAG_REASONS: dict[str, Text] = {
    FlagReason.OVERDRAW: N_("it went below zero"),
    FlagReason.CARD_ROLLBACK: N_("it showed an old state of its memory"),
    FlagReason.CARD_COPIED: N_("a copy of it was used"),
}


def number_in(typed: str) -> str:
    """The card number in what was typed or pasted: a number with spaces or dashes, or the
    card's URL (`…/c/9276…?k=…`); ValueError if there is none."""
    found = _URL_NUMBER.search(typed)
    return cardnumber.normalize(unquote(found.group(1)) if found else typed.strip())


def _find_page(
    request: Request, *, typed: str = "", error: str = "", status_code: int = 200
) -> Response:
    lang = language(request)
    return render(
        request,
        "cards/find.html",
        status_code=status_code,
        title=text(N_("Cards"), lang),
        typed=typed,
        error=error,
    )


@router.get(HOME, name="office_cards")
def find(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    q: Annotated[str, Query(max_length=_MAX_TYPED)] = "",
) -> Response:
    """The find form; with `q`, straight to the card's page when there is such a card."""
    if not q.strip():
        return _find_page(request)
    lang = language(request)
    try:
        number = number_in(q)
        cards.get(ctx, staff, number)
    except (ValueError, HCardError):
        shown = text(
            N_(
                "No card with this number. Check the 16 digits on the back of the card, or"
                " paste the address from its QR code."
            ),
            lang,
        )
        return _find_page(request, typed=q, error=shown, status_code=404)
    return RedirectResponse(f"{HOME}/{number}", status_code=303)


def _card_page(
    request: Request,
    ctx: ContextDep,
    staff: Staff,
    number: str,
    *,
    status_code: int = 200,
    notices: list[dict[str, str]] | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    check_code: dict[str, object] | None = None,
    everything: bool = False,
) -> Response:
    """The card's page (a refused form shown again with `errors` by field and the typed
    `values`); the find page when there is no such card."""
    lang = language(request)
    try:
        card = cards.office_view(ctx, staff, number, HISTORY_ALL if everything else HISTORY_SHOWN)
    except HCardError as error:
        if error.code is not Code.UNKNOWN_CARD:
            raise
        return _find_page(request, typed=number, error=message(error.code, lang), status_code=404)
    reason = card["flag_reason"]
    return render(
        request,
        "cards/card.html",
        status_code=status_code,
        title=text(N_("Card {number}"), lang, number=cardnumber.pretty(str(card["card_number"]))),
        card=card,
        pretty=cardnumber.pretty,
        flag_reason=text(FLAG_REASONS[str(reason)], lang) if reason in FLAG_REASONS else "",
        notices=notices or [],
        errors=errors or {},
        values=values or {},
        check_code=check_code,
        is_admin=staff.role == Role.ADMIN,
        everything=everything,
        more=not everything and len(card["history"]) >= HISTORY_SHOWN,  # type: ignore[arg-type]
        history_all=HISTORY_ALL,
        # made for this showing of the page: each money form is booked once
        form_ids={"topup": cards.new_form_id(), "correction": cards.new_form_id()},
    )


def _done(card: dict[str, object], done: Done) -> RedirectResponse:
    """Back to the card's page (its number as the service read it) with the notice."""
    return redirect_done(f"{HOME}/{card['card_number']}", done)


def _refused(
    request: Request,
    ctx: ContextDep,
    staff: Staff,
    number: str,
    error: HCardError,
    field: str,
    values: dict[str, str],
    extra: Text | None = None,
) -> Response:
    """The card's page again with the refusal next to `field` (and a hint after it)."""
    lang = language(request)
    shown = message(error.code, lang)
    if extra is not None:
        shown = f"{shown} {text(extra, lang)}"
    return _card_page(
        request,
        ctx,
        staff,
        number,
        status_code=status_of(error.code),
        errors={field: shown},
        values=values,
    )


def _amount(typed: str) -> int:
    """A typed amount (`12,50`, `12.50 €`, `-3`) in cents; INVALID_AMOUNT if it is none."""
    try:
        return parse_amount(typed)
    except ValueError:
        raise HCardError(Code.INVALID_AMOUNT) from None


@router.get(HOME + "/{number}", name="office_card")
def card_page(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    number: str,
    done: Annotated[str, Query(max_length=20)] = "",
    everything: Annotated[bool, Query(alias="all")] = False,
) -> Response:
    notices = done_notices(done, _DONE, language(request))
    return _card_page(request, ctx, staff, number, notices=notices, everything=everything)


@router.post(HOME + "/{number}/topup", name="office_card_topup")
def topup(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    number: str,
    amount: Annotated[str, Form(max_length=40)] = "",
    form_id: Annotated[str, Form(max_length=_MAX_FORM_ID)] = "",
) -> Response:
    """Cash paid in at the office, the only top-up booked by hand: a bank transfer tops the
    card up from the bank statement (the form offers no other way)."""
    values = {"amount": amount}
    try:
        card = cards.topup(ctx, staff, number, _amount(amount), TopupSource.CASH, form_id=form_id)
    except HCardError as error:
        if error.code is Code.UNKNOWN_CARD:
            raise
        return _refused(request, ctx, staff, number, error, "amount", values)
    return _done(card, Done.TOPPED_UP)


@router.post(HOME + "/{number}/block", name="office_card_block")
def block(ctx: ContextDep, staff: OfficeUser, number: str) -> Response:
    return _done(cards.set_blocked(ctx, staff, number, True), Done.BLOCKED)


@router.post(HOME + "/{number}/unblock", name="office_card_unblock")
def unblock(ctx: ContextDep, staff: OfficeUser, number: str) -> Response:
    return _done(cards.set_blocked(ctx, staff, number, False), Done.UNBLOCKED)


@router.post(HOME + "/{number}/replace", name="office_card_replace")
def replace(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    number: str,
    new_number: Annotated[str, Form(max_length=_MAX_TYPED)] = "",
) -> Response:
    """Move the whole balance to the new card (typed or pasted like on the find form)."""
    values = {"new_number": new_number}
    try:
        try:
            target = number_in(new_number)
        except ValueError:
            raise HCardError(Code.UNKNOWN_CARD) from None
        moved = cards.transfer(ctx, staff, number, target)
    except HCardError as error:
        return _refused(request, ctx, staff, number, error, "new_number", values)
    return _done(moved["from"], Done.REPLACED)  # type: ignore[arg-type]


@router.post(HOME + "/{number}/correction", name="office_card_correction")
def correction(
    request: Request,
    ctx: ContextDep,
    staff: AdminUser,
    number: str,
    correction_amount: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    allow_below_zero: Annotated[bool, Form()] = False,
    form_id: Annotated[str, Form(max_length=_MAX_FORM_ID)] = "",
) -> Response:
    """A correction (admin): plus or minus, with a reason; below zero only when confirmed."""
    values = {"correction_amount": correction_amount, "reason": reason}
    try:
        amount_cents = _amount(correction_amount)
        card = cards.correct(
            ctx,
            staff,
            number,
            amount_cents,
            reason,
            allow_below_zero=allow_below_zero,
            form_id=form_id,
        )
    except HCardError as error:
        fields: dict[Code, tuple[str, Text | None]] = {
            Code.INVALID_NAME: ("reason", N_("Please give a reason of up to 500 characters.")),
            Code.BELOW_ZERO_NOT_CONFIRMED: (
                "allow_below_zero",
                N_("Tick the box below to book it anyway."),
            ),
        }
        field, extra = fields.get(error.code, ("correction_amount", None))
        return _refused(request, ctx, staff, number, error, field, values, extra)
    return _done(card, Done.CORRECTED)


@router.post(HOME + "/{number}/check-code", name="office_card_check_code")
def check_code(request: Request, ctx: ContextDep, staff: OfficeUser, number: str) -> Response:
    """A new check code to print (a card's old, chip-derived code stops working)."""
    try:
        renewed: dict[str, Any] = cards.renew_check_code(ctx, staff, number)
    except HCardError as error:
        if error.code is not Code.CARD_NOT_ISSUED:
            raise
        return _refused(request, ctx, staff, number, error, "check_code", {})
    renewed["qr_url"] = f"{renewed['balance_url']}?k={renewed['check_code']}"
    return _card_page(request, ctx, staff, number, check_code=renewed)
