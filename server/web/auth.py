"""Who is looking at a page, and whether they may: the role every staff and portal page needs.

Each page handler names its users with one of the `Annotated` types below (`OfficeUser`,
`AdminUser`, `MerchantUser`, `StaffUser`); the dependency behind them

- finds the session (the `hcard_session` cookie; the JSON API takes the same token),
- sends a visitor without one to the login page (`LoginRequired`, answered with a redirect
  that comes back to the page afterwards),
- refuses a role the page is not for (`forbidden`, 403),
- and checks the CSRF token of every form that changes something (`csrf_failed`, 403).

tests/web/test_role_matrix.py walks every route of the app with every role: a page added
without one of these types fails it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from hcard.errors import Code, HCardError
from hcard.server.api.deps import SESSION_COOKIE, ContextDep
from hcard.server.context import Context
from hcard.server.services import users
from hcard.server.services.users import Staff
from hcard.server.vocabulary import OFFICE, Role
from hcard.server.web import security

LOGIN_PATH = "/office/login"


class LoginRequiredError(Exception):
    """No valid session: the answer is a redirect to the login page (`next` = this page)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def login_url(next_path: str) -> str:
    return f"{LOGIN_PATH}?next={quote(next_path, safe='/')}"


def home_of(staff: Staff) -> str:
    """Where a user lands after login: merchants in their portal, everyone else in the office."""
    return "/portal/" if staff.role == Role.MERCHANT else "/office/"


def safe_next(next_path: str | None, fallback: str) -> str:
    """A `next` that stays on this site (a path, not `//evil.example` nor a scheme)."""
    if (
        next_path
        and next_path.startswith("/")
        and not next_path.startswith("//")
        and "\\" not in next_path
        and not any(ord(char) < 0x20 for char in next_path)
    ):
        return next_path
    return fallback


async def check_form_token(request: Request, ctx: Context) -> None:
    """The CSRF check of a request that changes something (form field or header)."""
    if request.method in security.SAFE_METHODS:
        return
    submitted = request.headers.get(security.CSRF_HEADER)
    if submitted is None:
        form = await request.form()
        value = form.get(security.CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    session = request.cookies.get(SESSION_COOKIE, "")
    security.check_csrf(ctx.csrf_key, request, submitted, session)


def allow(*roles: Role) -> Callable[..., Awaitable[Staff]]:
    """The dependency of a page for `roles`: the logged-in user, or a refusal."""

    async def page_user(request: Request, ctx: ContextDep) -> Staff:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise LoginRequiredError(_this_page(request))
        try:
            staff = await run_in_threadpool(users.authenticate, ctx, token)
        except HCardError as error:
            if error.code is Code.NOT_AUTHENTICATED:
                raise LoginRequiredError(_this_page(request)) from None
            raise
        request.state.staff = staff
        if staff.role not in roles:
            raise HCardError(Code.FORBIDDEN)
        await check_form_token(request, ctx)
        return staff

    return page_user


def _this_page(request: Request) -> str:
    """Where to come back to after logging in: this page for a GET, else its parent area."""
    if request.method == "GET":
        query = request.url.query
        return request.url.path + (f"?{query}" if query else "")
    return "/office/"


#: the office: admin and marketing
OfficeUser = Annotated[Staff, Depends(allow(*OFFICE))]
#: users, roles, corrections and the audit log: admin only
AdminUser = Annotated[Staff, Depends(allow(Role.ADMIN))]
#: the merchant portal: a merchant's own login
MerchantUser = Annotated[Staff, Depends(allow(Role.MERCHANT))]
#: pages every logged-in user has (their own account: password, sessions)
StaffUser = Annotated[Staff, Depends(allow(*Role))]
