"""Refusals on pages: the same codes and texts as the JSON API, as a page in the visitor's
language (German or English), with a way back. A visitor without a session is sent to the
login page instead (`auth.LoginRequiredError`)."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hcard.errors import Code, message
from hcard.i18n import N_, text
from hcard.server.web import auth, security
from hcard.server.web.templating import language, render

#: the JSON API and the static files answer for themselves; every other path is a page
_NOT_PAGES = ("/v1/", "/static/", "/openapi.json")


def is_page(path: str) -> bool:
    return not path.startswith(_NOT_PAGES)


def page_error(
    request: Request, code: Code, status_code: int, headers: dict[str, str] | None = None
) -> HTMLResponse:
    """The refusal as a page. A 500 is answered by Starlette's outermost middleware, outside
    `SecurityHeaders`: it carries the strict headers itself."""
    if status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
        headers = {**security.PAGE_HEADERS, **(headers or {})}
    lang = language(request)
    back = auth.safe_next(request.headers.get("referer", "").partition(request.url.netloc)[2], "/")
    return render(
        request,
        "error.html",
        status_code=status_code,
        headers=headers,
        title=text(N_("Not possible"), lang) if status_code < 500 else text(N_("Error"), lang),
        message=message(code, lang),
        back=back,
    )


def login_redirect(error: auth.LoginRequiredError) -> Response:
    return RedirectResponse(auth.login_url(error.next_path), status_code=303)
