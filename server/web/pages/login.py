"""Logging in and out of the office and the merchant portal, and choosing the language.

The login form has its CSRF token like every form (bound to the browser's CSRF cookie,
before any session exists). Wrong passwords are throttled per user name and per address
(`users.login`); past the limit the page says so and when to try again. After a login the
browser gets a new session cookie (HttpOnly, SameSite=Strict, Secure behind TLS) and goes
back to the page that sent it here, or to its home (the office or the portal); the session
the browser had before ends on the server.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from hcard.errors import Code, HCardError, message
from hcard.i18n import LANGUAGES, N_, Text, text
from hcard.server.api.deps import (
    SESSION_COOKIE,
    AddressDep,
    ContextDep,
    clear_session_cookie,
    set_session_cookie,
)
from hcard.server.api.errors import retry_headers
from hcard.server.services import users
from hcard.server.services.users import Staff
from hcard.server.vocabulary import Role
from hcard.server.web import auth, security
from hcard.server.web.notices import done_notices, redirect_done
from hcard.server.web.templating import LANGUAGE_COOKIE, language, render

router = APIRouter(include_in_schema=False)

#: a year: the language is a preference, not a secret
_LANGUAGE_COOKIE_MAX_AGE_S = 365 * 24 * 3600


class Done(StrEnum):
    """What a redirect tells the login page (`?done=`): here, or logged out everywhere
    from the account page."""

    LOGGED_OUT = "logged-out"


_DONE: dict[Done, Text] = {Done.LOGGED_OUT: N_("You are logged out.")}


def _login_page(
    request: Request,
    next_path: str,
    *,
    status_code: int = 200,
    error: str = "",
    username: str = "",
    headers: dict[str, str] | None = None,
    notices: list[dict[str, str]] | None = None,
) -> Response:
    lang = language(request)
    return render(
        request,
        "login.html",
        status_code=status_code,
        headers=headers,
        title=text(N_("Log in"), lang),
        next=next_path,
        error=error,
        username=username,
        notices=notices or [],
    )


@router.get("/office/login", name="office_login_page")
def login_page(request: Request, next: Annotated[str, Query(max_length=500)] = "") -> Response:
    notices = done_notices(request.query_params.get("done", ""), _DONE, language(request))
    return _login_page(request, auth.safe_next(next, ""), notices=notices)


@router.post("/office/login", name="office_login")
async def login(
    request: Request,
    ctx: ContextDep,
    address: AddressDep,
    username: Annotated[str, Form(max_length=users.USERNAME_MAX_CHARS * 4)] = "",
    password: Annotated[str, Form(max_length=users.MAX_PASSWORD_LENGTH)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    lang = language(request)
    request.state.audit_username = username[: users.USERNAME_MAX_CHARS] or "?"
    try:
        security.check_csrf(ctx.csrf_key, request, csrf, request.cookies.get(SESSION_COOKIE, ""))
    except HCardError as error:
        return _login_page(request, next, status_code=403, error=message(error.code, lang))
    try:
        session = await run_in_threadpool(users.login, ctx, username, password, address)
    except HCardError as error:
        if error.code not in (Code.BAD_CREDENTIALS, Code.TOO_MANY_ATTEMPTS):
            raise
        status = 429 if error.code is Code.TOO_MANY_ATTEMPTS else 401
        shown = message(error.code, lang)
        if error.code is Code.TOO_MANY_ATTEMPTS:
            minutes = max(1, -(-int(error.details.get("retry_after_s", 60)) // 60))  # type: ignore[call-overload]
            shown = f"{shown} " + text(N_("Try again in {minutes} min."), lang, minutes=minutes)
        return _login_page(
            request,
            next,
            status_code=status,
            error=shown,
            username=username,
            headers=retry_headers(error.details),
        )
    staff = Staff(
        user_id=int(session["user_id"]),  # type: ignore[call-overload]
        username=str(session["username"]),
        role=Role(str(session["role"])),
        merchant_id=session["merchant_id"],  # type: ignore[arg-type]
    )
    request.state.staff = staff
    if previous := request.cookies.get(SESSION_COOKIE, ""):
        # the session this browser had (another user's, or an old one of this user's) ends
        # here, not when it expires: a login at a shared desk leaves no session behind
        await run_in_threadpool(users.logout, ctx, previous)
    response = RedirectResponse(auth.safe_next(next, auth.home_of(staff)), status_code=303)
    set_session_cookie(response, request, str(session["token"]), ctx.settings.session_ttl_s)
    return response


@router.post("/office/logout", name="office_logout", dependencies=[Depends(auth.allow(*Role))])
def logout(request: Request, ctx: ContextDep) -> Response:
    users.logout(ctx, request.cookies.get(SESSION_COOKIE, ""))
    response = redirect_done(auth.LOGIN_PATH, Done.LOGGED_OUT)
    clear_session_cookie(response)
    return response


@router.get("/lang/{code}", name="choose_language")
def choose_language(code: str, next: Annotated[str, Query(max_length=500)] = "/") -> Response:
    """Switch the pages' language (a cookie) and go back to the page."""
    response = RedirectResponse(auth.safe_next(next, "/"), status_code=303)
    if code in LANGUAGES:
        response.set_cookie(
            LANGUAGE_COOKIE, code, max_age=_LANGUAGE_COOKIE_MAX_AGE_S, samesite="lax"
        )
    return response
