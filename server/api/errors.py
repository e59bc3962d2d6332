"""Every error answer is `hcard.errors.error_body(code)`: one stable code, German + English.

Installed on the app for our own refusals (`HCardError`), for FastAPI's request
validation (422 → 400 `malformed_request`, or `invalid_amount` when the bad
field is an amount), for Starlette's 404/405, and for anything unexpected
(500 `internal_error`, details only in the server log). A 405 names in `Allow` every method
the path has. A throttled answer (429)
carries `Retry-After`. On a page (`web.errors.is_page`) the same refusal is an HTML page in
the visitor's language, and a missing session a redirect to the login page.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from hcard.errors import Code, HCardError, error_body
from hcard.server.api import routes
from hcard.server.web import auth
from hcard.server.web import errors as web_errors

log = logging.getLogger("hcard.server")

STATUS: dict[Code, int] = {
    Code.NOT_AUTHENTICATED: 401,
    Code.BAD_CREDENTIALS: 401,
    Code.UNKNOWN_TERMINAL: 401,
    Code.BAD_SIGNATURE: 401,
    Code.CLOCK_SKEW: 401,
    Code.NONCE_REUSED: 401,
    Code.FORBIDDEN: 403,
    Code.CSRF_FAILED: 403,
    Code.TERMINAL_REVOKED: 403,
    Code.NOT_FOUND: 404,
    Code.UNKNOWN_CARD: 404,
    Code.SEQUENCE_CONFLICT: 409,
    Code.CARD_ALREADY_EXISTS: 409,
    Code.CARD_BLOCKED: 409,
    Code.CARD_NOT_ISSUED: 409,
    Code.INSUFFICIENT_FUNDS: 409,
    Code.PERIOD_ALREADY_SETTLED: 409,
    Code.RUN_DOWNLOADED: 409,
    Code.RUN_CANCELLED: 409,
    Code.RUN_NOT_LAST: 409,
    Code.PERIOD_OUT_OF_ORDER: 409,
    Code.LINE_ALREADY_BOOKED: 409,
    Code.STATEMENT_AMBIGUOUS: 409,
    Code.MERCHANT_INACTIVE: 409,
    Code.MERCHANT_HAS_TERMINALS: 409,
    Code.ALERT_ALREADY_HANDLED: 409,
    Code.USERNAME_TAKEN: 409,
    Code.OWN_ACCOUNT: 409,
    Code.CARD_ALREADY_REPLACED: 409,
    Code.TOPUP_PENDING: 409,
    Code.BODY_TOO_LARGE: 413,
    Code.BATCH_TOO_LARGE: 413,
    Code.TOO_MANY_ATTEMPTS: 429,
    Code.INTERNAL_ERROR: 500,
}


#: the methods a 405's `Allow` may name
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def status_of(code: Code) -> int:
    return STATUS.get(code, 400)


def retry_headers(details: dict[str, object]) -> dict[str, str]:
    """`Retry-After` for a throttled answer (TOO_MANY_ATTEMPTS carries `retry_after_s`)."""
    retry_after_s = details.get("retry_after_s")
    return {"Retry-After": str(retry_after_s)} if isinstance(retry_after_s, int) else {}


def error_response(code: Code, **details: object) -> JSONResponse:
    return JSONResponse(
        error_body(code, **details), status_code=status_of(code), headers=retry_headers(details)
    )


async def _hcard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HCardError)
    if web_errors.is_page(request.url.path):
        headers = retry_headers(exc.details)
        return web_errors.page_error(request, exc.code, status_of(exc.code), headers)
    return error_response(exc.code, **exc.details)


async def _login_required(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, auth.LoginRequiredError)
    return web_errors.login_redirect(exc)


def _bad_name_text(problem: Any) -> bool:
    """A name that is a string but too short or too long (a wrong type stays malformed)."""
    field = str(problem.get("loc", ("",))[-1])
    return field.endswith("name") and problem.get("type") in ("string_too_short", "string_too_long")


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if web_errors.is_page(request.url.path):
        return web_errors.page_error(request, Code.MALFORMED_REQUEST, 400)
    problems = exc.errors()
    fields = [".".join(str(part) for part in problem.get("loc", ())) for problem in problems]
    if any(field.endswith("amount_cents") for field in fields):
        code = Code.INVALID_AMOUNT
    elif any(_bad_name_text(problem) for problem in problems):
        code = Code.INVALID_NAME
    else:
        code = Code.MALFORMED_REQUEST
    return error_response(code, fields=fields)


def allowed_methods(request: Request) -> str:
    """A 405's `Allow` (RFC 9110): the methods of the routes whose path matches, the most
    specific ones (fewest parameters: `POST /v1/cards/reserve`, not `GET /v1/cards/{n}`).
    Starlette's names only the first route that matched the path."""
    matching = [
        (route.path_format.count("{"), method)
        for route in routes.api_routes(request.app.router.routes)
        for method in _METHODS
        if route.matches({**request.scope, "method": method})[0] is Match.FULL
    ]
    fewest = min((params for params, _ in matching), default=0)
    return ", ".join(method for method in _METHODS if (fewest, method) in matching)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if web_errors.is_page(request.url.path):
        code = Code.NOT_FOUND if exc.status_code == 404 else Code.MALFORMED_REQUEST
        return web_errors.page_error(request, code, 404 if exc.status_code == 404 else 400)
    if exc.status_code == 404:
        return error_response(Code.NOT_FOUND)
    headers = {"Allow": allowed_methods(request)} if exc.status_code == 405 else exc.headers
    response = JSONResponse(
        error_body(Code.MALFORMED_REQUEST), status_code=exc.status_code, headers=headers
    )
    if exc.status_code < 400 or exc.status_code >= 500:
        response.status_code = 400
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error", exc_info=exc)
    if web_errors.is_page(request.url.path):
        return web_errors.page_error(request, Code.INTERNAL_ERROR, 500)
    return error_response(Code.INTERNAL_ERROR)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HCardError, _hcard_error)
    app.add_exception_handler(auth.LoginRequiredError, _login_required)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
