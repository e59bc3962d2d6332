"""Merchants in the office: the list, adding one, its master data, deactivating it.

The form is the whole master data at once: name, the account holder exactly as the bank
knows it (the bank checks it against the IBAN before it pays), IBAN and BIC (checked as
they are typed through `check-bank`, and again by the service on every save), the address
in the parts a SEPA file carries, contact, the fee rate in percent with a decimal comma,
whether and how the merchant appears on the public acceptance list. A refusal re-renders
the form with the message next to the field it is about, in the page's language.

A merchant's page also lists its terminals (enrol, revoke: `pages/terminals.py`) and
deactivates it once no terminal of its is active or waiting to be set up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from babel.numbers import format_decimal
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from hcard.errors import Code, HCardError, message
from hcard.i18n import N_, Text, text
from hcard.server.api.deps import ContextDep
from hcard.server.api.errors import status_of
from hcard.server.api.staff import IdPath
from hcard.server.context import Context
from hcard.server.services import merchants, terminals
from hcard.server.services.acceptance import CATEGORY_LABELS
from hcard.server.services.users import Staff
from hcard.server.vocabulary import OFFICE, MerchantCategory
from hcard.server.web import auth
from hcard.server.web.auth import OfficeUser
from hcard.server.web.notices import done_notices, redirect_done
from hcard.server.web.pages import terminals as pages_terminals
from hcard.server.web.templating import LOCALES, language, render

router = APIRouter(include_in_schema=False)
#: for a page that needs the office's roles but not the user
OFFICE_ONLY = Depends(auth.allow(*OFFICE))

#: the form's text fields, each checked by the service (length, printable, IBAN and BIC)
TEXT_FIELDS = (
    "name",
    "holder_name",
    "iban",
    "bic",
    "street",
    "building_number",
    "postcode",
    "town",
    "country",
    "contact",
    "opening_hours",
)
#: a refusal's `field` as the form names it
_FORM_FIELD = {"iban/bic": "iban"}
#: a fee in percent: up to 100, at most two decimals (basis points), comma or point; ASCII
#: digits only (`\d` takes any script's, and `int` reads them)
_PERCENT = re.compile(r"^\s*([0-9]{1,3})(?:[,.]([0-9]{1,2}))?\s*%?\s*$")
_MAX_FEE_BP = 10_000


class Done(StrEnum):
    """What a redirect after a form tells a merchant's page (`?done=`; a terminal revoked
    there: `pages/terminals.Done`)."""

    CREATED = "created"
    SAVED = "saved"
    DEACTIVATED = "deactivated"
    ACTIVATED = "activated"


_DONE: dict[Done, Text] = {
    Done.CREATED: N_("The merchant was added. Next: enrol a terminal for them."),
    Done.SAVED: N_("The changes are saved."),
    Done.DEACTIVATED: N_("The merchant is deactivated and no longer on the acceptance list."),
    Done.ACTIVATED: N_("The merchant is active again. Tick “listed” if they want to be listed."),
}
_FEE_INVALID = N_("Please give the fee in percent, for example 1,5 (0 to 100, two decimals).")
_AT_MOST = N_("At most {count} characters.")
_CHECK_ENTRY = N_("Please check this entry.")
_FIX_FIELDS = N_("Please correct the marked fields.")


def fee_bp(typed: str) -> int:
    """`1,5` → 150 basis points (`1.5`, `1,50 %` too; empty is no fee); ValueError else."""
    if not typed.strip():
        return 0
    match = _PERCENT.match(typed)
    if match is None:
        raise ValueError(typed)
    whole, decimals = match.groups()
    bp = int(whole) * 100 + int((decimals or "0").ljust(2, "0"))
    if bp > _MAX_FEE_BP:
        raise ValueError(typed)
    return bp


def fee_text(bp: int, lang: str) -> str:
    """150 → `1,5` (German) or `1.5` (English): how the form shows a fee."""
    return format_decimal(Decimal(bp) / 100, locale=LOCALES[lang])


@dataclass
class MerchantForm:
    """What the form shows: the values (as typed, or as stored) and each field's error."""

    values: dict[str, str]
    listed: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    summary: str = ""

    @classmethod
    def empty(cls) -> MerchantForm:
        values = dict.fromkeys(TEXT_FIELDS, "")
        values.update(country="DE", fee="", category=MerchantCategory.OTHER)
        return cls(values)

    @classmethod
    def of(cls, merchant: dict[str, object], lang: str) -> MerchantForm:
        values = {name: str(merchant[name]) for name in TEXT_FIELDS}
        values["fee"] = fee_text(int(str(merchant["fee_bp"])), lang)
        values["category"] = str(merchant["category"])
        return cls(values, listed=bool(merchant["listed"]))

    @classmethod
    def typed(cls, form: FormData) -> MerchantForm:
        values = {name: _text(form, name) for name in (*TEXT_FIELDS, "fee", "category")}
        return cls(values, listed=form.get("listed") is not None)

    def changes(self, lang: str) -> dict[str, object] | None:
        """The service's values, or None with the fee's error noted."""
        try:
            bp = fee_bp(self.values["fee"])
        except ValueError:
            self.fail({"fee": text(_FEE_INVALID, lang)}, lang)
            return None
        values: dict[str, Any] = {name: self.values[name] for name in TEXT_FIELDS}
        return {**values, "fee_bp": bp, "category": self.values["category"], "listed": self.listed}

    def refused(self, error: HCardError, lang: str) -> None:
        """Note a refusal next to its field (or above the form when it names none)."""
        name = str(error.details.get("field", ""))
        name = _FORM_FIELD.get(name, name)
        shown = message(error.code, lang)
        if error.code is Code.MALFORMED_REQUEST:
            shown = text(_CHECK_ENTRY, lang)
        if "max_chars" in error.details:
            shown += " " + text(_AT_MOST, lang, count=error.details["max_chars"])
        if name in self.values or name == "listed":
            self.fail({name: shown}, lang)
        else:
            self.summary = shown

    def fail(self, errors: dict[str, str], lang: str) -> None:
        self.errors.update(errors)
        self.summary = text(_FIX_FIELDS, lang)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def categories(lang: str) -> list[tuple[str, str]]:
    """(value, label) of every category, for a select."""
    return [(str(category), text(CATEGORY_LABELS[category], lang)) for category in MerchantCategory]


def _done(request: Request, lang: str) -> list[dict[str, str]]:
    """The notice of the action that redirected here (on the merchant or its terminals)."""
    done = request.query_params.get("done", "")
    return done_notices(done, _DONE, lang) + done_notices(done, pages_terminals.DONE, lang)


@router.get("/office/merchants", name="merchants")
def merchant_list(request: Request, ctx: ContextDep, staff: OfficeUser) -> Response:
    lang = language(request)
    rows = merchants.list_merchants(ctx, staff)
    rows.sort(key=lambda m: (not m["active"], str(m["name"]).casefold()))
    return render(
        request,
        "merchants/list.html",
        title=text(N_("Merchants"), lang),
        merchants=rows,
        fees={m["id"]: fee_text(int(str(m["fee_bp"])), lang) for m in rows},
        labels=dict(categories(lang)),
        notices=_done(request, lang),
    )


def _form_page(request: Request, form: MerchantForm, status_code: int = 200) -> Response:
    lang = language(request)
    return render(
        request,
        "merchants/new.html",
        status_code=status_code,
        title=text(N_("Add a merchant"), lang),
        form=form,
        categories=categories(lang),
    )


@router.get("/office/merchants/new", name="merchant_new", dependencies=[OFFICE_ONLY])
def merchant_new(request: Request) -> Response:
    return _form_page(request, MerchantForm.empty())


@router.post("/office/merchants/new", name="merchant_create")
async def merchant_create(request: Request, ctx: ContextDep, staff: OfficeUser) -> Response:
    lang = language(request)
    form = MerchantForm.typed(await request.form())
    changes = form.changes(lang)
    if changes is None:
        return _form_page(request, form, 400)
    try:
        created = await run_in_threadpool(_create, ctx, staff, changes)
    except HCardError as error:
        form.refused(error, lang)
        return _form_page(request, form, status_of(error.code))
    return redirect_done(f"/office/merchants/{created['id']}", Done.CREATED)


def _create(ctx: Context, staff: Staff, changes: dict[str, Any]) -> dict[str, object]:
    return merchants.create_merchant(ctx, staff, **changes)


@router.get("/office/merchants/check-bank", name="merchant_check_bank", dependencies=[OFFICE_ONLY])
def check_bank(
    request: Request,
    iban: str = Query("", max_length=64),
    bic: str = Query("", max_length=20),
) -> JSONResponse:
    """The form's live check of IBAN and BIC (office.js): `{ok, message}` in the page's
    language. Only a hint: the save checks again."""
    lang = language(request)
    if not iban.strip():
        return JSONResponse({"ok": False, "message": ""})
    try:
        bank = merchants.check_bank(iban, bic)
    except HCardError as error:
        return JSONResponse({"ok": False, "message": message(error.code, lang)})
    said = (
        N_("IBAN and BIC are valid: {bank}, BIC {bic}.")
        if bank["bank_name"]
        else N_("IBAN and BIC are valid: BIC {bic}.")
    )
    shown = text(said, lang, bank=bank["bank_name"], bic=bank["bic"])
    return JSONResponse({"ok": True, "message": shown})


def _merchant_page(
    request: Request,
    ctx: Context,
    staff: Staff,
    merchant_id: int,
    *,
    form: MerchantForm | None = None,
    notices: list[dict[str, str]] | None = None,
    enrol: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    lang = language(request)
    merchant = merchants.get_merchant(ctx, staff, merchant_id)
    tills = pages_terminals.terminal_rows(terminals.list_terminals(ctx, staff, merchant_id), lang)
    return render(
        request,
        "merchants/view.html",
        status_code=status_code,
        title=str(merchant["name"]),
        merchant=merchant,
        terminals=tills,
        live_terminals=sum(1 for till in tills if till["live"]),
        form=form or MerchantForm.of(merchant, lang),
        categories=categories(lang),
        enrol=enrol or {"name": "", "error": ""},
        notices=notices if notices is not None else _done(request, lang),
    )


@router.get("/office/merchants/{merchant_id}", name="merchant")
def merchant_view(
    request: Request, ctx: ContextDep, staff: OfficeUser, merchant_id: IdPath
) -> Response:
    return _merchant_page(request, ctx, staff, merchant_id)


@router.post("/office/merchants/{merchant_id}", name="merchant_update")
async def merchant_update(
    request: Request, ctx: ContextDep, staff: OfficeUser, merchant_id: IdPath
) -> Response:
    lang = language(request)
    form = MerchantForm.typed(await request.form())
    changes = form.changes(lang)
    status_code = 400
    if changes is not None:
        try:
            await run_in_threadpool(merchants.update_merchant, ctx, staff, merchant_id, changes)
        except HCardError as error:
            if error.code is Code.NOT_FOUND:
                raise
            form.refused(error, lang)
            status_code = status_of(error.code)
        else:
            return redirect_done(f"/office/merchants/{merchant_id}", Done.SAVED)
    return await run_in_threadpool(
        _merchant_page, request, ctx, staff, merchant_id, form=form, status_code=status_code
    )


async def _set_active(
    request: Request, ctx: Context, staff: Staff, merchant_id: int, active: bool
) -> Response:
    try:
        await run_in_threadpool(merchants.set_active, ctx, staff, merchant_id, active)
    except HCardError as error:
        if error.code is not Code.MERCHANT_HAS_TERMINALS:
            raise
        shown = [{"kind": "error", "text": message(error.code, language(request))}]
        return await run_in_threadpool(
            _merchant_page,
            request,
            ctx,
            staff,
            merchant_id,
            notices=shown,
            status_code=status_of(error.code),
        )
    done = Done.ACTIVATED if active else Done.DEACTIVATED
    return redirect_done(f"/office/merchants/{merchant_id}", done)


@router.post("/office/merchants/{merchant_id}/deactivate", name="merchant_deactivate")
async def merchant_deactivate(
    request: Request, ctx: ContextDep, staff: OfficeUser, merchant_id: IdPath
) -> Response:
    return await _set_active(request, ctx, staff, merchant_id, False)


@router.post("/office/merchants/{merchant_id}/activate", name="merchant_activate")
async def merchant_activate(
    request: Request, ctx: ContextDep, staff: OfficeUser, merchant_id: IdPath
) -> Response:
    return await _set_active(request, ctx, staff, merchant_id, True)


@router.post("/office/merchants/{merchant_id}/terminals", name="terminal_enrol")
async def terminal_enrol(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    merchant_id: IdPath,
    name: str = Form("", max_length=terminals.NAME_MAX_CHARS * 4),
) -> Response:
    """Make a terminal and show its one-time code: not a redirect, the code exists only in
    this answer (a refusal shows the merchant's page with the message at the name)."""
    lang = language(request)
    try:
        merchant = await run_in_threadpool(merchants.get_merchant, ctx, staff, merchant_id)
        made = await run_in_threadpool(terminals.create_terminal, ctx, staff, merchant_id, name)
    except HCardError as error:
        if error.code not in (Code.INVALID_NAME, Code.MERCHANT_INACTIVE):
            raise
        shown = message(error.code, lang)
        at_name = error.code is Code.INVALID_NAME  # else the form is not there (inactive)
        return await run_in_threadpool(
            _merchant_page,
            request,
            ctx,
            staff,
            merchant_id,
            enrol={"name": name, "error": shown if at_name else ""},
            notices=[] if at_name else [{"kind": "error", "text": shown}],
            status_code=status_of(error.code),
        )
    code = str(made["code"])
    return render(
        request,
        "terminals/enrolled.html",
        title=text(N_("Enrolment code"), lang),
        merchant=merchant,
        terminal_name=name.strip(),
        code=code,
        qr=pages_terminals.qr_data_uri(code),
        expires_s=made["expires_s"],
        server_url=str(request.base_url).rstrip("/"),
    )
