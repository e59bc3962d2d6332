"""Alerts (`/office/alerts`): what the server saw that a person must look at, in plain words.

Open alerts come first, each with what it means and what to do, and a form to mark it
handled with a note (3 to 500 characters: what was done). Handled alerts stay below as the
history: who, when, the note. An alert that happens again after it was handled is a new
open alert (`services/alerts.py`), so a handled one never changes afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from hcard import cardnumber
from hcard.errors import Code, HCardError, message
from hcard.i18n import N_, Text, text
from hcard.server.api.deps import ContextDep
from hcard.server.api.staff import IdPath
from hcard.server.services import alerts
from hcard.server.vocabulary import AlertKind
from hcard.server.web.auth import OfficeUser
from hcard.server.web.notices import done_notices, redirect_done
from hcard.server.web.templating import language, render

router = APIRouter(include_in_schema=False)

HOME = "/office/alerts"


@dataclass(frozen=True)
class Explanation:
    title: Text
    meaning: Text
    todo: Text


#: each kind of alert for someone who is not an engineer: what happened, what to do now
EXPLANATIONS: dict[AlertKind, Explanation] = {
    AlertKind.CHAIN_GAP: Explanation(
        N_("Records missing from a till"),
        N_(
            "A till sent its records with a gap: some records in between have not arrived."
            " The records after the gap are not booked until the missing ones come."
        ),
        N_(
            "Check that the till is switched on and online: it sends the missing records by"
            " itself. If the alert comes back, call technical support. Do not reset the till."
        ),
    ),
    AlertKind.CHAIN_FORK: Explanation(
        N_("A till contradicts itself"),
        N_(
            "A till sent a record that differs from one it sent before under the same number."
            " Its memory may have been restored from an old copy, or someone tampered with it."
        ),
        N_("Stop using the till and call technical support. Do not delete anything on the till."),
    ),
    AlertKind.BAD_SIGNATURE: Explanation(
        N_("A record without a valid signature"),
        N_(
            "A record did not carry the till's valid signature, so it was refused. The data"
            " was damaged on the way, or someone tried to send false records."
        ),
        N_(
            "Call technical support. If the till was lost or stolen, revoke it on the"
            " terminals page."
        ),
    ),
    AlertKind.BAD_RECORD: Explanation(
        N_("A record the server cannot accept"),
        N_(
            "A till sent a record the server cannot read or that breaks the rules, for"
            " example an impossible amount. It and the records after it were not booked."
        ),
        N_(
            "Note the till's name and call technical support: the till's software may need"
            " an update."
        ),
    ),
    AlertKind.JOURNAL_FOREIGN: Explanation(
        N_("Records of another till"),
        N_(
            "A till sent records that belong to a different till: its memory was copied or"
            " moved from one device to another."
        ),
        N_(
            "Ask the shop which device they use. Call technical support before the till is"
            " used again."
        ),
    ),
    AlertKind.CARD_ROLLBACK: Explanation(
        N_("A card showed an old state"),
        N_(
            "A card showed an older state of its memory than the server knows: someone may"
            " have copied an earlier balance back onto it to spend the money twice. The card"
            " is blocked for payments."
        ),
        N_(
            "Look at the card's history. When the cardholder comes, give them a new card and"
            " move the balance to it (Replace on the card's page). Unblock the card only if"
            " you are sure it was a technical fault."
        ),
    ),
    AlertKind.OVERDRAW: Explanation(
        N_("A card went below zero"),
        N_(
            "A card was taken below zero: an offline payment or a correction spent more than"
            " was on it. The card is blocked for payments."
        ),
        N_(
            "Look at the card's history. Ask the cardholder to top up the missing amount,"
            " then unblock the card."
        ),
    ),
    AlertKind.UNKNOWN_CARD: Explanation(
        N_("An unknown card was used"),
        N_(
            "A till accepted a card offline that the server does not know. It may be a forged"
            " card, or a card from a test system."
        ),
        N_("Ask the shop about the payment. If it happens again, call technical support."),
    ),
    AlertKind.REVOKED_TERMINAL: Explanation(
        N_("A revoked till is still calling"),
        N_(
            "A till that was revoked (lost, stolen or replaced) is still calling the server."
            " Everything it sends is refused: it can no longer take payments or top-ups."
        ),
        N_(
            "Find out where the device is: ask the shop. If it was stolen, tell the police."
            " If it calls again after you marked this handled, a new alert opens."
        ),
    ),
    AlertKind.CARD_COPIED: Explanation(
        N_("A copied card"),
        N_(
            "The same card number showed up on a chip that is not the card's own: one of them"
            " is a copy. The card is blocked for payments."
        ),
        N_(
            "Give the cardholder a new card and move the balance to it (Replace on the card's"
            " page). Leave the old card blocked."
        ),
    ),
    AlertKind.SHOWN_NOT_AUTHORISED: Explanation(
        N_("A shown payment booked without its approval"),
        N_(
            "A till showed an online payment or top-up as approved, and the server had no"
            " record of approving it. This happens after the server was restored from a"
            " backup: the payment was booked as the till showed it."
        ),
        N_(
            "If the server was not restored from a backup recently, a till may be broken or"
            " tampered with: call technical support and look at the till's payments."
        ),
    ),
    AlertKind.PAYOUT_RETURNED: Explanation(
        N_("A payout came back"),
        N_(
            "A payout to a merchant came back from the bank, for example because the account"
            " is wrong or closed. The money is owed to the merchant again and is paid with the"
            " next monthly close."
        ),
        N_(
            "Ask the merchant for their correct bank details and change them on the"
            " merchant's page before the next monthly close."
        ),
    ),
}


class Done(StrEnum):
    """What a redirect after a form tells this page (`?done=`)."""

    HANDLED = "handled"


#: the notices a redirect back to this page may show, never text from the URL
_DONE: dict[StrEnum, Text] = {
    Done.HANDLED: N_("The alert is marked as handled. It stays in the history below."),
}


def _page(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    *,
    status_code: int = 200,
    notices: list[dict[str, str]] | None = None,
    errors: dict[int, str] | None = None,
    notes: dict[int, str] | None = None,
) -> Response:
    lang = language(request)
    listed = alerts.office_list(ctx, staff)
    return render(
        request,
        "alerts/index.html",
        status_code=status_code,
        title=text(N_("Alerts"), lang),
        listed=listed,
        explanations=EXPLANATIONS,
        pretty=cardnumber.pretty,
        notices=notices or [],
        errors=errors or {},
        notes=notes or {},
        note_min=alerts.NOTE_MIN_CHARS,
        note_max=alerts.NOTE_MAX_CHARS,
    )


@router.get(HOME, name="office_alerts")
def alerts_page(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    return _page(request, ctx, staff, notices=done_notices(done, _DONE, language(request)))


@router.post(HOME + "/{alert_id}/handle", name="office_alert_handle")
def handle(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    alert_id: IdPath,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Mark the alert handled with the note; a bad note or one handled meanwhile is shown on
    the page again (the typed note kept)."""
    lang = language(request)
    try:
        alerts.handle(ctx, staff, alert_id, note)
    except HCardError as error:
        if error.code is Code.INVALID_NAME:
            shown = text(
                N_("Please write a note of {low} to {high} characters: what did you do?"),
                lang,
                low=alerts.NOTE_MIN_CHARS,
                high=alerts.NOTE_MAX_CHARS,
            )
            return _page(
                request,
                ctx,
                staff,
                status_code=400,
                errors={alert_id: shown},
                notes={alert_id: note[: alerts.NOTE_MAX_CHARS]},
            )
        if error.code is Code.ALERT_ALREADY_HANDLED:
            notice = {"kind": "warn", "text": message(error.code, lang)}
            return _page(request, ctx, staff, status_code=409, notices=[notice])
        raise
    return redirect_done(HOME, Done.HANDLED, anchor="handled")
