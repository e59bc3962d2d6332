"""The OpenAPI description tells the truth: every refusal, its status and its error body.

FastAPI writes a 422 for every route with parameters, which this server never answers
(`api/errors.py` turns a validation error into 400 `malformed_request`), and knows nothing
of our refusals. `install` rewrites the description once, when it is first asked for:

- the 422 and its schemas go; every error answer is `Error<status>`: the project's error
  body (`hcard.errors.error_body`) with the codes that status carries (`errors.STATUS`);
- what a route's authentication can answer comes from its dependencies, so a new route
  cannot forget it: a staff route (`deps.current_staff`) 401/403 and the staff security
  schemes (bearer token, or the session cookie with `X-CSRF-Token`), a signed terminal
  route (`deps.signed_call`) 401/403 and the four signature
  headers (`hcard/reqsign.py`) as one security requirement;
- 400 on every route (a malformed `Content-Length` is refused before any route,
  `api/limits.py`), 413 on every route with a body;
- what a route's service refuses (404, 409, 429) the route says itself: `errors(404, 409)`.

A file a route answers (XML, PDF, CSV, HTML) is its `response_class` below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from hcard import reqsign
from hcard.errors import Code
from hcard.server.api import deps
from hcard.server.api import routes as routes_
from hcard.server.api.errors import status_of

#: what each error status means here (the codes it carries are in its schema)
MEANINGS: dict[int, str] = {
    400: "Refused: a malformed request (`malformed_request`, `invalid_amount`, "
    "`invalid_name` for a parameter or body outside its bounds; `fields` in `details`) "
    "or a request the rules refuse.",
    401: "Not authenticated: no or an unknown session, wrong credentials, or a terminal "
    "signature that is missing, wrong, too far from the server's clock or replayed "
    "(`clock_skew` carries `server_time_s`).",
    403: "Authenticated but not allowed: another role, a session cookie without its "
    "`X-CSRF-Token`, or a revoked terminal.",
    404: "No such object (or not one the caller may see).",
    409: "In conflict with the object's state (blocked, already done, settled, ...).",
    413: "The body is over the server's limit (`body_too_large`) or a batch over "
    "1,000 records (`batch_too_large`).",
    429: "Too many failed attempts from this address or for this name: try again after "
    "`Retry-After` seconds.",
}
#: every status an error answer of the JSON API can have (500 is a bug, never described)
ERROR_STATUSES = tuple(sorted(MEANINGS))
_REMOVED_SCHEMAS = ("HTTPValidationError", "ValidationError")

STAFF_SECURITY: list[dict[str, list[str]]] = [{"staffBearer": []}, {"staffSession": []}]
TERMINAL_SECURITY: list[dict[str, list[str]]] = [
    {"terminalId": [], "terminalTimestamp": [], "terminalNonce": [], "terminalSignature": []}
]


class XmlFile(Response):
    """A SEPA transfer file."""

    media_type = "application/xml"


class PdfFile(Response):
    media_type = "application/pdf"


class CsvFile(Response):
    media_type = "text/csv"


def codes_of(status: int) -> list[str]:
    """The error codes answered with `status`, as `api/errors.py` maps them."""
    return sorted(code.value for code in Code if status_of(code) == status)


def error_schema(status: int) -> dict[str, Any]:
    return {
        "title": f"Error{status}",
        "type": "object",
        "description": "The error body of every refusal: a stable code, its German and "
        "English message, and details (docs/protocol.md).",
        "required": ["code", "message_de", "message_en"],
        "additionalProperties": False,
        "properties": {
            "code": {"type": "string", "enum": codes_of(status)},
            "message_de": {"type": "string"},
            "message_en": {"type": "string"},
            "details": {"type": "object"},
        },
    }


def _error_answer(status: int) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": MEANINGS[status],
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/Error{status}"}}
        },
    }
    if status == 429:
        answer["headers"] = {
            "Retry-After": {
                "description": "seconds until the next attempt may succeed",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        }
    return answer


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's own refusals, for its decorator: `responses=openapi.errors(404, 409)`."""
    return {status: _error_answer(status) for status in statuses}


def _signature_header(name: str, text: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "apiKey",
        "in": "header",
        "name": name,
        "description": f"{text} Signed: `HCARD-REQUEST-1`, method, path with query, SHA-256 "
        "of the body, timestamp, nonce and terminal id, one per line, with the terminal's "
        "Ed25519 key (hcard/reqsign.py, docs/protocol.md). Schema of the value: "
        f"`{schema}`.",
    }


def security_schemes() -> dict[str, Any]:
    return {
        "staffBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The token `POST /v1/auth/login` answered.",
        },
        "staffSession": {
            "type": "apiKey",
            "in": "cookie",
            "name": deps.SESSION_COOKIE,
            "description": "The office's session cookie; a request that changes something "
            "must carry the page's CSRF token as `X-CSRF-Token` besides.",
        },
        "terminalId": _signature_header(
            reqsign.HEADER_TERMINAL, "The terminal's id.", {"type": "integer", "minimum": 1}
        ),
        "terminalTimestamp": _signature_header(
            reqsign.HEADER_TIMESTAMP,
            f"Seconds since 1970, within {reqsign.MAX_CLOCK_SKEW_S} s of the server's clock.",
            {"type": "integer", "minimum": 0},
        ),
        "terminalNonce": _signature_header(
            reqsign.HEADER_NONCE,
            "Never used before by this terminal.",
            {"type": "string", "pattern": "^[0-9A-Za-z]{16,64}$"},
        ),
        "terminalSignature": _signature_header(
            reqsign.HEADER_SIGNATURE,
            "The Ed25519 signature, hex. Beside it the till sends, unsigned, "
            f"`{reqsign.HEADER_SOFTWARE}` and `{reqsign.HEADER_RECORDS_WAITING}` for the office.",
            {"type": "string", "pattern": "^[0-9a-fA-F]{128}$"},
        ),
    }


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _describe_route(route: APIRoute, operation: dict[str, Any]) -> None:
    calls = set(_calls(route.dependant))
    answers: dict[str, Any] = operation.setdefault("responses", {})
    answers.pop("422", None)
    statuses = {400}
    if "requestBody" in operation:
        statuses.add(413)
    if deps.current_staff in calls:
        operation["security"] = STAFF_SECURITY
        statuses |= {401, 403}
    elif deps.bearer_token in calls:  # logout: any session, no role
        operation["security"] = STAFF_SECURITY
        statuses.add(401)
    elif deps.signed_call in calls:
        operation["security"] = TERMINAL_SECURITY
        statuses |= {401, 403}
    for status in sorted(statuses):
        answers.setdefault(str(status), _error_answer(status))


def describe(schema: dict[str, Any], routes: Iterable[BaseRoute]) -> None:
    """Rewrite FastAPI's description in place (see the module's docstring)."""
    components = schema.setdefault("components", {})
    found = components.setdefault("schemas", {})
    for name in _REMOVED_SCHEMAS:
        found.pop(name, None)
    for status in ERROR_STATUSES:
        found[f"Error{status}"] = error_schema(status)
    components["securitySchemes"] = security_schemes()
    for route in routes_.api_routes(routes):
        if not route.include_in_schema:
            continue
        for method in route.methods or ():
            _describe_route(route, schema["paths"][route.path_format][method.lower()])


def install(app: FastAPI) -> None:
    """Describe the app's answers the first time its description is asked for."""
    generate = app.openapi
    described: list[dict[str, Any]] = []  # the last description, rewritten once

    def openapi() -> dict[str, Any]:
        schema = generate()  # FastAPI's own, made anew only when the routes changed
        if not described or described[0] is not schema:
            describe(schema, app.routes)
            described[:] = [schema]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
