"""My account (every logged-in user, office and merchants): password and sessions.

Changing one's password asks for the current one (wrong ones count like wrong logins) and
ends every other session of the user: a browser somewhere that knew the old password is
logged out, this one stays. "Log out everywhere" ends all of them, this one too (a phone
left logged in at a shop's counter). The page says when this session ends by itself.
"""

from __future__ import annotations

from enum import StrEnum

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hcard.errors import Code, HCardError, message
from hcard.i18n import N_, Text, text
from hcard.server.api.deps import SESSION_COOKIE, ContextDep, clear_session_cookie
from hcard.server.api.errors import retry_headers, status_of
from hcard.server.context import Context
from hcard.server.services import users
from hcard.server.services.users import Staff
from hcard.server.web import auth
from hcard.server.web.auth import StaffUser
from hcard.server.web.notices import done_notices, redirect_done
from hcard.server.web.pages import login
from hcard.server.web.pages.users import PASSWORD_RULES, UserForm, role_label
from hcard.server.web.templating import language, render

router = APIRouter(include_in_schema=False)

_WRONG_CURRENT = N_("This is not your current password.")


class Done(StrEnum):
    """What a redirect after a form tells the account page (`?done=`)."""

    PASSWORD = "password"  # noqa: S105 - what was done, not a password


_DONE: dict[Done, Text] = {
    Done.PASSWORD: N_("Your password is changed. You were logged out everywhere else."),
}


def _page(
    request: Request,
    ctx: Context,
    staff: Staff,
    form: UserForm | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    lang = language(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    # a form shown again with its errors is no longer what was done
    notices = [] if form else done_notices(request.query_params.get("done", ""), _DONE, lang)
    return render(
        request,
        "account/index.html",
        status_code=status_code,
        headers=headers,
        title=text(N_("My account"), lang),
        role=role_label(staff.role, lang),
        session=users.session_info(ctx, staff, token),
        rules=text(PASSWORD_RULES, lang),
        form=form or UserForm(),
        notices=notices,
    )


@router.get("/office/account", name="account")
def account(request: Request, ctx: ContextDep, staff: StaffUser) -> Response:
    return _page(request, ctx, staff)


@router.post("/office/account/password", name="account_password")
async def account_password(request: Request, ctx: ContextDep, staff: StaffUser) -> Response:
    lang = language(request)
    form = UserForm.typed(await request.form(), "current", "password", "repeat")
    headers: dict[str, str] = {}
    status_code = 400
    if form.same_passwords(lang):
        try:
            await run_in_threadpool(
                users.change_own_password,
                ctx,
                staff,
                request.cookies.get(SESSION_COOKIE, ""),
                form.values["current"],
                form.values["password"],
            )
        except HCardError as error:
            status_code = _refused(form, error, lang)
            headers = retry_headers(error.details)
        else:
            return redirect_done("/office/account", Done.PASSWORD)
    form.values = {"current": "", "password": "", "repeat": ""}
    return await run_in_threadpool(_page, request, ctx, staff, form, status_code, headers)


def _refused(form: UserForm, error: HCardError, lang: str) -> int:
    """Note the refusal at its field; the answer's status (a wrong current password is a
    mistake in the form, not a failed login: 400)."""
    if error.code is Code.BAD_CREDENTIALS:
        form.errors["current"] = text(_WRONG_CURRENT, lang)
        return 400
    if error.code is Code.TOO_MANY_ATTEMPTS:
        form.errors["current"] = message(error.code, lang)
        return status_of(error.code)
    form.refused(error, lang, "password")
    return status_of(error.code)


@router.post("/office/account/logout-everywhere", name="account_logout_everywhere")
def logout_everywhere(ctx: ContextDep, staff: StaffUser) -> Response:
    """End every session of this user, this one too: back to the login page."""
    users.logout_everywhere(ctx, staff)
    response = redirect_done(auth.LOGIN_PATH, login.Done.LOGGED_OUT)
    clear_session_cookie(response)
    return response
