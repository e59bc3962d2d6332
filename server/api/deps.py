"""What handlers depend on: the context, the logged-in staff member, a terminal's raw request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from hcard.errors import Code, HCardError
from hcard.server import throttle
from hcard.server.context import Context
from hcard.server.services import terminals, users
from hcard.server.services.users import Staff

SESSION_COOKIE = "hcard_session"


def get_context(request: Request) -> Context:
    return request.app.state.context


ContextDep = Annotated[Context, Depends(get_context)]


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    if cookie := request.cookies.get(SESSION_COOKIE):
        return cookie
    raise HCardError(Code.NOT_AUTHENTICATED)


def current_staff(ctx: ContextDep, token: Annotated[str, Depends(bearer_token)]) -> Staff:
    return users.authenticate(ctx, token)


StaffDep = Annotated[Staff, Depends(current_staff)]


async def raw_body(request: Request) -> bytes:
    return await request.body()


def parse_json(body: bytes) -> Any:
    """Parse a request body; anything that is not JSON is `malformed_request`."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise HCardError(Code.MALFORMED_REQUEST, reason="body is not JSON") from None
    except RecursionError:  # nested deeper than the parser's stack: no request of ours is
        raise HCardError(Code.MALFORMED_REQUEST, reason="body nested too deeply") from None


def client_address(request: Request) -> str:
    """The client's address as throttling counts it (`throttle.address_key`); behind the
    local reverse proxy the one it forwarded (uvicorn's proxy headers, from 127.0.0.1 only)."""
    return throttle.address_key(request.client.host) if request.client else "unknown"


AddressDep = Annotated[str, Depends(client_address)]


@dataclass(frozen=True)
class SignedRequest:
    terminal: terminals.Terminal
    body: bytes


def _authenticate(
    request: Request, ctx: Context, body: bytes, *, record_nonce: bool
) -> SignedRequest:
    """Authenticate a terminal request over exactly the bytes and path it signed."""
    path = request.scope.get("raw_path", request.url.path.encode()).decode("utf-8", "replace")
    if query := request.scope.get("query_string", b""):
        path = f"{path}?{query.decode('utf-8', 'replace')}"
    terminal = terminals.authenticate(
        ctx, request.method, path, body, request.headers, record_nonce=record_nonce
    )
    return SignedRequest(terminal=terminal, body=body)


def signed_request(
    request: Request, ctx: ContextDep, body: Annotated[bytes, Depends(raw_body)]
) -> SignedRequest:
    return _authenticate(request, ctx, body, record_nonce=True)


def signed_booking(
    request: Request, ctx: ContextDep, body: Annotated[bytes, Depends(raw_body)]
) -> SignedRequest:
    """For requests that book: the service records the nonce in its own transaction."""
    return _authenticate(request, ctx, body, record_nonce=False)


SignedDep = Annotated[SignedRequest, Depends(signed_request)]
SignedBookingDep = Annotated[SignedRequest, Depends(signed_booking)]
