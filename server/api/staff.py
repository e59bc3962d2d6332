"""Staff API: login, users, merchants and their terminals, cards, ledger, alerts.

Every handler is one call to a service function, which checks the permission
and owns the transaction; the pydantic models here only say what a request
looks like (strict ints: an amount is never a string or a float).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from hcard.encoding import MAX_ID
from hcard.errors import Code, HCardError
from hcard.money import MAX_AMOUNT_CENTS
from hcard.server.api import openapi
from hcard.server.api.deps import (
    AddressDep,
    ContextDep,
    StaffDep,
    bearer_token,
    set_session_cookie,
)
from hcard.server.services import alerts, cards, ledger, merchants, terminals, users
from hcard.server.vocabulary import OFFICE, MerchantCategory, Role, TopupSource

router = APIRouter(prefix="/v1", tags=["staff"])

Amount = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT_CENTS)]
#: every id is a positive 64-bit integer in both databases: checked before they see it
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdBody = Annotated[StrictInt, Field(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=ledger.MAX_HISTORY)]
#: 16 digits (`hcard.cardnumber`), typed with spaces or dashes as printed; any other is unknown
CARD_NUMBER_MAX_CHARS = 40
CardNumber = Annotated[StrictStr, Field(min_length=1, max_length=CARD_NUMBER_MAX_CHARS)]
CardPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=CARD_NUMBER_MAX_CHARS,
        description="16 digits, as printed (spaces and dashes allowed)",
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    username: Annotated[StrictStr, Field(max_length=users.USERNAME_MAX_CHARS)]
    password: Annotated[StrictStr, Field(max_length=users.MAX_PASSWORD_LENGTH)]


class UserIn(Strict):
    username: Annotated[StrictStr, Field(min_length=1, max_length=80, examples=["kasse-ruhrstr"])]
    #: the rules (length, not the user name, not a common one) are the service's:
    #: password_too_weak, as on the office's pages
    password: Annotated[
        StrictStr,
        Field(max_length=users.MAX_PASSWORD_LENGTH, examples=["Glück auf, Ruhrstraße 12!"]),
    ]
    role: Role
    merchant_id: IdBody | None = None


FeeBp = Annotated[StrictInt, Field(ge=0, le=10_000)]
OpeningHours = Annotated[StrictStr, Field(max_length=merchants.OPENING_HOURS_MAX_CHARS)]


class MerchantIn(Strict):
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    iban: Annotated[StrictStr, Field(max_length=42, examples=["DE89370400440532013000"])]
    bic: Annotated[StrictStr, Field(max_length=11, examples=["COBADEFFXXX"])] = ""
    address: Annotated[StrictStr, Field(max_length=500)] = ""
    contact: Annotated[StrictStr, Field(max_length=500)] = ""
    fee_bp: FeeBp = 0
    #: the account holder as the bank knows it (SEPA payee check); empty: the name
    holder_name: Annotated[StrictStr, Field(max_length=70)] = ""
    street: Annotated[StrictStr, Field(max_length=70)] = ""
    building_number: Annotated[StrictStr, Field(max_length=16)] = ""
    postcode: Annotated[StrictStr, Field(max_length=16)] = ""
    town: Annotated[StrictStr, Field(max_length=35)] = ""
    country: Annotated[StrictStr, Field(min_length=2, max_length=2)] = "DE"
    #: on the public acceptance list (the merchant agreed), in its category
    listed: StrictBool = False
    category: MerchantCategory = MerchantCategory.OTHER
    opening_hours: OpeningHours = ""


class MerchantChange(Strict):
    """Only the fields given change."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    iban: Annotated[StrictStr, Field(max_length=42)] | None = None
    bic: Annotated[StrictStr, Field(max_length=11)] | None = None
    address: Annotated[StrictStr, Field(max_length=500)] | None = None
    contact: Annotated[StrictStr, Field(max_length=500)] | None = None
    fee_bp: FeeBp | None = None
    holder_name: Annotated[StrictStr, Field(max_length=70)] | None = None
    street: Annotated[StrictStr, Field(max_length=70)] | None = None
    building_number: Annotated[StrictStr, Field(max_length=16)] | None = None
    postcode: Annotated[StrictStr, Field(max_length=16)] | None = None
    town: Annotated[StrictStr, Field(max_length=35)] | None = None
    country: Annotated[StrictStr, Field(min_length=2, max_length=2)] | None = None
    listed: StrictBool | None = None
    category: MerchantCategory | None = None
    opening_hours: OpeningHours | None = None


class TerminalIn(Strict):
    name: Annotated[StrictStr, Field(min_length=1, max_length=100)]


class CardIn(Strict):
    uid: Annotated[StrictStr, Field(pattern=r"^[0-9a-fA-F]{14}$")]
    card_number: CardNumber | None = None


class ReserveIn(Strict):
    count: Annotated[StrictInt, Field(ge=1, le=cards.MAX_RESERVE)]


class TopupIn(Strict):
    amount_cents: Amount
    source: TopupSource = TopupSource.CASH


class TransferIn(Strict):
    to_card: CardNumber


class CorrectionIn(Strict):
    card_number: CardNumber
    amount_cents: Annotated[StrictInt, Field(ge=-MAX_AMOUNT_CENTS, le=MAX_AMOUNT_CENTS)]
    reason: Annotated[StrictStr, Field(min_length=3, max_length=500)]
    #: a correction that takes the card below zero must say so; the card is then flagged
    allow_below_zero: StrictBool = False


@router.post("/auth/login", responses=openapi.errors(401, 429))
def login(
    ctx: ContextDep, body: LoginIn, request: Request, address: AddressDep, response: Response
) -> dict[str, object]:
    """A bearer token, also set as the session cookie (`deps.set_session_cookie`)."""
    request.state.audit_username = body.username
    session = users.login(ctx, body.username, body.password, address)
    set_session_cookie(response, request, str(session["token"]), ctx.settings.session_ttl_s)
    return session


@router.post("/auth/logout")
def logout(ctx: ContextDep, token: Annotated[str, Depends(bearer_token)]) -> dict[str, bool]:
    """End this session; a token that is no session is refused (401) like everywhere."""
    users.authenticate(ctx, token)
    users.logout(ctx, token)
    return {"ok": True}


@router.get("/me")
def me(staff: StaffDep) -> dict[str, object]:
    return {
        "user_id": staff.user_id,
        "username": staff.username,
        "role": staff.role,
        "merchant_id": staff.merchant_id,
    }


@router.post("/users", responses=openapi.errors(404, 409))
def create_user(ctx: ContextDep, staff: StaffDep, body: UserIn) -> dict[str, object]:
    return users.create_user(ctx, staff, body.username, body.password, body.role, body.merchant_id)


@router.get("/users")
def list_users(ctx: ContextDep, staff: StaffDep) -> list[dict[str, object]]:
    return users.list_users(ctx, staff)


@router.post("/merchants", responses=openapi.errors(404))
def create_merchant(ctx: ContextDep, staff: StaffDep, body: MerchantIn) -> dict[str, object]:
    return merchants.create_merchant(ctx, staff, **body.model_dump())


@router.get("/merchants")
def list_merchants(ctx: ContextDep, staff: StaffDep) -> list[dict[str, object]]:
    return merchants.list_merchants(ctx, staff)


@router.get("/merchants/{merchant_id}", responses=openapi.errors(404))
def get_merchant(ctx: ContextDep, staff: StaffDep, merchant_id: IdPath) -> dict[str, object]:
    return merchants.get_merchant(ctx, staff, merchant_id)


@router.patch("/merchants/{merchant_id}", responses=openapi.errors(404, 409))
def update_merchant(
    ctx: ContextDep, staff: StaffDep, merchant_id: IdPath, body: MerchantChange
) -> dict[str, object]:
    """Change master data: IBAN with BIC, account holder, address, fee rate."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return merchants.update_merchant(ctx, staff, merchant_id, changes)


@router.get("/merchants/{merchant_id}/payments", responses=openapi.errors(404))
def merchant_payments(
    ctx: ContextDep, staff: StaffDep, merchant_id: IdPath, limit: Limit = 200
) -> list[dict[str, object]]:
    """Payments, voids and till top-ups in the merchant's shops (merchants: only their own)."""
    return merchants.movements(ctx, staff, merchant_id, limit)


@router.post("/merchants/{merchant_id}/terminals", responses=openapi.errors(404, 409))
def create_terminal(
    ctx: ContextDep, staff: StaffDep, merchant_id: IdPath, body: TerminalIn
) -> dict[str, object]:
    """A pending terminal and its one-time enrolment code."""
    return terminals.create_terminal(ctx, staff, merchant_id, body.name)


@router.get("/merchants/{merchant_id}/terminals", responses=openapi.errors(404))
def list_terminals(
    ctx: ContextDep, staff: StaffDep, merchant_id: IdPath
) -> list[dict[str, object]]:
    return terminals.list_terminals(ctx, staff, merchant_id)


@router.post("/terminals/{terminal_id}/revoke", responses=openapi.errors(404))
def revoke_terminal(ctx: ContextDep, staff: StaffDep, terminal_id: IdPath) -> dict[str, object]:
    return terminals.revoke(ctx, staff, terminal_id)


@router.post("/cards", responses=openapi.errors(404, 409))
def issue_card(ctx: ContextDep, staff: StaffDep, body: CardIn) -> dict[str, object]:
    """Register a tag: card number + issuer signature; the same UID again returns the same card."""
    return cards.issue(ctx, staff, body.uid, body.card_number)


@router.post("/cards/reserve")
def reserve_cards(ctx: ContextDep, staff: StaffDep, body: ReserveIn) -> dict[str, object]:
    return {"card_numbers": cards.reserve(ctx, staff, body.count)}


@router.get("/cards/{card_number}", responses=openapi.errors(404))
def get_card(ctx: ContextDep, staff: StaffDep, card_number: CardPath) -> dict[str, object]:
    return cards.get(ctx, staff, card_number)


@router.post("/cards/{card_number}/check-code", responses=openapi.errors(404, 409))
def renew_check_code(ctx: ContextDep, staff: StaffDep, card_number: CardPath) -> dict[str, object]:
    """The check code to print for the card; a card issued before check codes came from the
    server's secret loses its old code (readable from the chip) with this call."""
    return cards.renew_check_code(ctx, staff, card_number)


@router.post("/cards/{card_number}/topup", responses=openapi.errors(404, 409))
def topup(
    ctx: ContextDep, staff: StaffDep, card_number: CardPath, body: TopupIn
) -> dict[str, object]:
    return cards.topup(ctx, staff, card_number, body.amount_cents, body.source)


@router.post("/cards/{card_number}/block", responses=openapi.errors(404))
def block(ctx: ContextDep, staff: StaffDep, card_number: CardPath) -> dict[str, object]:
    return cards.set_blocked(ctx, staff, card_number, True)


@router.post("/cards/{card_number}/unblock", responses=openapi.errors(404))
def unblock(ctx: ContextDep, staff: StaffDep, card_number: CardPath) -> dict[str, object]:
    return cards.set_blocked(ctx, staff, card_number, False)


@router.post("/cards/{card_number}/transfer", responses=openapi.errors(404, 409))
def transfer(
    ctx: ContextDep, staff: StaffDep, card_number: CardPath, body: TransferIn
) -> dict[str, object]:
    """Move the balance of a lost card to its replacement (the old card is blocked)."""
    return cards.transfer(ctx, staff, card_number, body.to_card)


@router.get("/cards/{card_number}/history", responses=openapi.errors(404))
def history(
    ctx: ContextDep, staff: StaffDep, card_number: CardPath, limit: Limit = 100
) -> dict[str, object]:
    return cards.history(ctx, staff, card_number, limit)


@router.post("/ledger/corrections", responses=openapi.errors(404, 409))
def correction(ctx: ContextDep, staff: StaffDep, body: CorrectionIn) -> dict[str, object]:
    """A manual correction (admin): a new transaction with reason and author, never an edit."""
    if body.amount_cents == 0:
        raise HCardError(Code.INVALID_AMOUNT)
    return cards.correct(
        ctx,
        staff,
        body.card_number,
        body.amount_cents,
        body.reason,
        allow_below_zero=body.allow_below_zero,
    )


@router.get("/ledger/check")
def ledger_check(ctx: ContextDep, staff: StaffDep) -> dict[str, object]:
    staff.require(*OFFICE)
    return ledger.check(ctx.engine).as_json()


@router.get("/alerts")
def list_alerts(ctx: ContextDep, staff: StaffDep, limit: Limit = 200) -> list[dict[str, object]]:
    return alerts.list_alerts(ctx, staff, limit)
