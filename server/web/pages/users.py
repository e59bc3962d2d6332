"""Users and roles (admins only): who may log in, as what; new users, a new password.

Each user has one role: admin (everything, users and the audit log too), office (the
marketing office: merchants, terminals, cards, the monthly close) or merchant (their own
portal, for one merchant). A user who leaves is deactivated, not deleted: their name stays
in the audit log and on what they booked, their sessions end at once. An admin cannot
deactivate themself or change their own role (another admin does: the scheme is never
left without one), nor set their own password here: that is done on the account page with
the current one, so a session left open is not enough to take the account. Passwords
follow `users.check_password`; the forms say the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from hcard.encoding import MAX_ID
from hcard.errors import Code, HCardError, message
from hcard.i18n import N_, Text, text
from hcard.server.api.deps import ContextDep
from hcard.server.api.errors import status_of
from hcard.server.api.staff import IdPath
from hcard.server.context import Context
from hcard.server.services import merchants, users
from hcard.server.services.users import Staff
from hcard.server.vocabulary import Role
from hcard.server.web.auth import AdminUser
from hcard.server.web.notices import done_notices, redirect_done
from hcard.server.web.templating import language, render

router = APIRouter(include_in_schema=False)

ROLE_LABELS: dict[Role, Text] = {
    Role.ADMIN: N_("Admin"),
    Role.MARKETING: N_("Office"),
    Role.MERCHANT: N_("Merchant"),
}
ROLE_HINTS: dict[Role, Text] = {
    Role.ADMIN: N_("everything, users and the audit log too"),
    Role.MARKETING: N_("merchants, terminals, cards, alerts, the monthly close"),
    Role.MERCHANT: N_("their own merchant portal only"),
}
PASSWORD_RULES = N_(
    "At least 12 characters besides the user name, not a commonly used password."
    " A short sentence is easy to remember and hard to guess."
)
_PASSWORDS_DIFFER = N_("The two passwords are not the same.")
_CHOOSE_MERCHANT = N_("Please choose the merchant this login is for.")
_CHECK_ENTRY = N_("Please check this entry.")
_OWN_PASSWORD = N_(
    "Your own password is changed on your account page, where you give your current one."
)


class Done(StrEnum):
    """What a redirect after a form tells a user's page (`?done=`)."""

    CREATED = "created"
    ROLE = "role"
    DEACTIVATED = "deactivated"
    ACTIVATED = "activated"
    PASSWORD = "password"  # noqa: S105 - what was done, not a password


_DONE: dict[Done, Text] = {
    Done.CREATED: N_("The user was created. Tell them their user name and password."),
    Done.ROLE: N_("The role is changed. It holds from the user's next click."),
    Done.DEACTIVATED: N_("The user is deactivated and logged out everywhere."),
    Done.ACTIVATED: N_("The user can log in again."),
    Done.PASSWORD: N_("The password is set and the user is logged out everywhere."),
}


def role_label(role: object, lang: str) -> str:
    """A role in words (`Office` for marketing)."""
    return text(ROLE_LABELS[Role(str(role))], lang)


def roles(lang: str) -> list[dict[str, str]]:
    """Each role for a select: value, label, what it may do."""
    return [
        {
            "value": str(role),
            "label": text(ROLE_LABELS[role], lang),
            "hint": text(ROLE_HINTS[role], lang),
        }
        for role in Role
    ]


@dataclass
class UserForm:
    """A form of this page as typed, and the errors of its fields."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def typed(cls, form: FormData, *names: str) -> UserForm:
        values = {}
        for name in names:
            value = form.get(name)
            values[name] = value if isinstance(value, str) else ""
        return cls(values)

    def merchant_id(self, lang: str) -> int | None:
        """The chosen merchant for the merchant role (None for the other roles)."""
        if self.values.get("role") != Role.MERCHANT:
            return None
        chosen = self.values.get("merchant_id", "")
        if not chosen.isascii() or not chosen.isdigit() or not 1 <= int(chosen) <= MAX_ID:
            self.errors["merchant_id"] = text(_CHOOSE_MERCHANT, lang)
            return None
        return int(chosen)

    def same_passwords(self, lang: str) -> bool:
        if self.values["password"] != self.values["repeat"]:
            self.errors["repeat"] = text(_PASSWORDS_DIFFER, lang)
            return False
        return True

    def refused(self, error: HCardError, lang: str, default_field: str) -> None:
        """The refusal next to the field it is about."""
        name = str(error.details.get("field", default_field))
        shown = message(error.code, lang)
        if error.code is Code.MALFORMED_REQUEST:
            shown = text(_CHECK_ENTRY, lang)
        if error.code is Code.PASSWORD_TOO_WEAK:
            name = "password"
        if error.code is Code.NOT_FOUND:
            name = "merchant_id"
        self.errors[name if name in self.values else default_field] = shown


def _notices(request: Request, lang: str) -> list[dict[str, str]]:
    return done_notices(request.query_params.get("done", ""), _DONE, lang)


def _merchant_choices(ctx: Context, staff: Staff) -> list[dict[str, object]]:
    rows = merchants.list_merchants(ctx, staff)
    return sorted(
        ({"id": m["id"], "name": m["name"]} for m in rows if m["active"]),
        key=lambda m: str(m["name"]).casefold(),
    )


def _list_page(
    request: Request,
    ctx: Context,
    staff: Staff,
    form: UserForm | None = None,
    status_code: int = 200,
) -> Response:
    lang = language(request)
    rows = users.list_users(ctx, staff)
    return render(
        request,
        "users/list.html",
        status_code=status_code,
        title=text(N_("Users"), lang),
        users=[{**row, "role_label": role_label(row["role"], lang)} for row in rows],
        roles=roles(lang),
        merchants=_merchant_choices(ctx, staff),
        rules=text(PASSWORD_RULES, lang),
        form=form or UserForm({"role": Role.MARKETING}),
        notices=_notices(request, lang),
    )


@router.get("/office/users", name="users")
def user_list(request: Request, ctx: ContextDep, staff: AdminUser) -> Response:
    return _list_page(request, ctx, staff)


@router.post("/office/users", name="user_create")
async def user_create(request: Request, ctx: ContextDep, staff: AdminUser) -> Response:
    lang = language(request)
    form = UserForm.typed(
        await request.form(), "username", "role", "merchant_id", "password", "repeat"
    )
    merchant_id = form.merchant_id(lang)
    if form.same_passwords(lang) and not form.errors:
        try:
            created = await run_in_threadpool(
                users.create_user,
                ctx,
                staff,
                form.values["username"],
                form.values["password"],
                form.values["role"],
                merchant_id,
            )
        except HCardError as error:
            form.refused(error, lang, "username")
            form.values["password"] = form.values["repeat"] = ""
            return await run_in_threadpool(
                _list_page, request, ctx, staff, form, status_of(error.code)
            )
        return redirect_done(f"/office/users/{created['id']}", Done.CREATED)
    form.values["password"] = form.values["repeat"] = ""
    return await run_in_threadpool(_list_page, request, ctx, staff, form, 400)


def _user_page(
    request: Request,
    ctx: Context,
    staff: Staff,
    user_id: int,
    *,
    role_form: UserForm | None = None,
    password_form: UserForm | None = None,
    notices: list[dict[str, str]] | None = None,
    status_code: int = 200,
) -> Response:
    lang = language(request)
    user = users.get_user(ctx, staff, user_id)
    current = {"role": str(user["role"]), "merchant_id": str(user["merchant_id"] or "")}
    return render(
        request,
        "users/view.html",
        status_code=status_code,
        title=str(user["username"]),
        user={**user, "role_label": role_label(user["role"], lang)},
        own=user_id == staff.user_id,
        roles=roles(lang),
        merchants=_merchant_choices(ctx, staff),
        rules=text(PASSWORD_RULES, lang),
        role_form=role_form or UserForm(current),
        password_form=password_form or UserForm(),
        notices=notices if notices is not None else _notices(request, lang),
    )


@router.get("/office/users/{user_id}", name="user")
def user_view(request: Request, ctx: ContextDep, staff: AdminUser, user_id: IdPath) -> Response:
    return _user_page(request, ctx, staff, user_id)


@router.post("/office/users/{user_id}/role", name="user_role")
async def user_role(
    request: Request, ctx: ContextDep, staff: AdminUser, user_id: IdPath
) -> Response:
    lang = language(request)
    form = UserForm.typed(await request.form(), "role", "merchant_id")
    merchant_id = form.merchant_id(lang)
    status_code = 400
    if not form.errors:
        try:
            await run_in_threadpool(
                users.change_role, ctx, staff, user_id, form.values["role"], merchant_id
            )
        except HCardError as error:
            if error.code is Code.OWN_ACCOUNT:
                return await _refused(request, ctx, staff, user_id, error)
            form.refused(error, lang, "role")
            status_code = status_of(error.code)
        else:
            return redirect_done(f"/office/users/{user_id}", Done.ROLE)
    return await run_in_threadpool(
        _user_page, request, ctx, staff, user_id, role_form=form, status_code=status_code
    )


async def _refused(
    request: Request,
    ctx: Context,
    staff: Staff,
    user_id: int,
    error: HCardError,
    said: Text | None = None,
) -> Response:
    """The user's page with the refusal above it (`said`: this page's words for it)."""
    lang = language(request)
    shown = [
        {"kind": "error", "text": message(error.code, lang) if said is None else text(said, lang)}
    ]
    return await run_in_threadpool(
        _user_page,
        request,
        ctx,
        staff,
        user_id,
        notices=shown,
        status_code=status_of(error.code),
    )


async def _set_active(
    request: Request, ctx: Context, staff: Staff, user_id: int, active: bool
) -> Response:
    try:
        await run_in_threadpool(users.set_active, ctx, staff, user_id, active)
    except HCardError as error:
        if error.code is not Code.OWN_ACCOUNT:
            raise
        return await _refused(request, ctx, staff, user_id, error)
    done = Done.ACTIVATED if active else Done.DEACTIVATED
    return redirect_done(f"/office/users/{user_id}", done)


@router.post("/office/users/{user_id}/deactivate", name="user_deactivate")
async def user_deactivate(
    request: Request, ctx: ContextDep, staff: AdminUser, user_id: IdPath
) -> Response:
    return await _set_active(request, ctx, staff, user_id, False)


@router.post("/office/users/{user_id}/activate", name="user_activate")
async def user_activate(
    request: Request, ctx: ContextDep, staff: AdminUser, user_id: IdPath
) -> Response:
    return await _set_active(request, ctx, staff, user_id, True)


@router.post("/office/users/{user_id}/password", name="user_password")
async def user_password(
    request: Request, ctx: ContextDep, staff: AdminUser, user_id: IdPath
) -> Response:
    """Set a user's password (forgotten, or known to someone else): their sessions end."""
    lang = language(request)
    form = UserForm.typed(await request.form(), "password", "repeat")
    status_code = 400
    if form.same_passwords(lang):
        try:
            await run_in_threadpool(
                users.set_password, ctx, staff, user_id, form.values["password"]
            )
        except HCardError as error:
            if error.code is Code.NOT_FOUND:
                raise
            if error.code is Code.OWN_ACCOUNT:  # the form is not on one's own page
                return await _refused(request, ctx, staff, user_id, error, _OWN_PASSWORD)
            form.refused(error, lang, "password")
            status_code = status_of(error.code)
        else:
            return redirect_done(f"/office/users/{user_id}", Done.PASSWORD)
    form.values = {"password": "", "repeat": ""}
    return await run_in_threadpool(
        _user_page, request, ctx, staff, user_id, password_form=form, status_code=status_code
    )
