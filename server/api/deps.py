"""What handlers depend on: the context, the logged-in staff member, a terminal's raw request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from hcard.errors import Code, HCardError
from hcard.server import throttle
from hcard.server.context import Context
from hcard.server.services import terminals, users
from hcard.server.services.terminals import SignedRequest, Terminal
from hcard.server.services.users import Staff
from hcard.server.web import security

SESSION_COOKIE = "hcard_session"

T = TypeVar("T")


# The dependencies that only look at the request are `async def`: FastAPI runs a plain `def`
# dependency in a worker thread, a trip to the thread pool and back for every request.


async def get_context(request: Request) -> Context:
    return request.app.state.context


ContextDep = Annotated[Context, Depends(get_context)]


def set_session_cookie(response: Response, request: Request, token: str, max_age_s: int) -> None:
    """The session as a cookie: HttpOnly, SameSite=Strict, `Secure` whenever the request came
    over TLS (directly or as the reverse proxy's `X-Forwarded-Proto`)."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age_s,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")


def _bearer_header(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def bearer_token(request: Request) -> str:
    """The session token: the `Authorization: Bearer` header, or the browser's cookie."""
    if token := _bearer_header(request):
        return token
    if cookie := request.cookies.get(SESSION_COOKIE):
        return cookie
    raise HCardError(Code.NOT_AUTHENTICATED)


def current_staff(
    request: Request, ctx: ContextDep, token: Annotated[str, Depends(bearer_token)]
) -> Staff:
    """The logged-in user. A request that changes something with only the browser's cookie
    must carry the page's CSRF token as `X-CSRF-Token` (a script of our pages can; another
    site cannot), like every form of the office."""
    staff = users.authenticate(ctx, token)
    request.state.staff = staff  # for the audit log (api/audit.py)
    if request.method not in security.SAFE_METHODS and _bearer_header(request) is None:
        submitted = request.headers.get(security.CSRF_HEADER)
        security.check_csrf(ctx.csrf_key, request, submitted, token)
    return staff


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


async def client_address(request: Request) -> str:
    """The client's address as throttling counts it (`throttle.address_key`); behind the
    local reverse proxy the one it forwarded (uvicorn's proxy headers, from 127.0.0.1 only)."""
    return throttle.address_key(request.client.host) if request.client else "unknown"


AddressDep = Annotated[str, Depends(client_address)]


class NonceNotRecordedError(RuntimeError):
    """A handler took a `SignedCallDep` and returned without running its unit of work, or
    answered without its request having been authenticated."""


def _authenticate(request: Request, ctx: Context, body: bytes) -> SignedRequest:
    """Authenticate a terminal request over exactly the bytes and path it signed."""
    path = request.scope.get("raw_path", request.url.path.encode()).decode("utf-8", "replace")
    if query := request.scope.get("query_string", b""):
        path = f"{path}?{query.decode('utf-8', 'replace')}"
    return terminals.authenticate(ctx, request.method, path, body, request.headers)


class SignedCall:
    """A terminal's request, its signature not checked yet. `run(service)` authenticates it
    and runs the service, which runs the request's one unit of work (`SignedRequest.unit`,
    recording the nonce in the booking's own transaction); `read(service)` for a request
    that only reads: the nonce is recorded (its own commit) before the service runs, and the
    service gets the terminal, nothing to write with. Either in one trip to the thread pool.

    One trip, not two (an authenticating dependency, then the handler): each trip waits
    for a worker thread and the interpreter, which under fifty tills was milliseconds of a
    payment's latency. A service that returns without having run its unit would leave the
    nonce free for a replay: the nonce is recorded then, and the answer is a 500 (a bug to
    fix, found by the first test of the endpoint). A booking service that raised (a refusal
    before any booking) leaves it unrecorded, as a refused request books nothing; a read's
    nonce is recorded before its service runs, so a read refused (an unknown card) is not
    answered twice either.
    """

    __slots__ = ("_body", "_ctx", "_request", "authenticated")

    def __init__(self, request: Request, ctx: Context, body: bytes) -> None:
        self._request = request
        self._ctx = ctx
        self._body = body
        self.authenticated = False

    async def run(self, service: Callable[[SignedRequest], T]) -> T:
        return await run_in_threadpool(self._run, service)

    async def read(self, service: Callable[[Terminal], T]) -> T:
        return await self.run(lambda signed: service(signed.record_nonce()))

    def _run(self, service: Callable[[SignedRequest], T]) -> T:
        signed = _authenticate(self._request, self._ctx, self._body)
        self.authenticated = True
        result = service(signed)
        if not signed.opened:
            signed.record_nonce()
            request = self._request
            raise NonceNotRecordedError(f"{request.method} {request.url.path} ran no unit of work")
        return result


async def signed_call(
    request: Request, ctx: ContextDep, body: Annotated[bytes, Depends(raw_body)]
) -> AsyncIterator[SignedCall]:
    """For a terminal's requests: checked when the handler runs its service (`SignedCall`).
    A handler that answered without the request being authenticated (it never ran a
    service, or it caught the refusal) has its answer replaced by a 500 (a bug to fix, found
    by the first test of the endpoint)."""
    call = SignedCall(request, ctx, body)
    yield call
    if not call.authenticated:
        raise NonceNotRecordedError(f"{request.method} {request.url.path} answered unsigned")


#: a terminal's request: `SignedCall.run(service)`, whose `SignedRequest.unit` is the only way
#: to write for it, or `SignedCall.read(service)`, for a request that only reads
SignedCallDep = Annotated[SignedCall, Depends(signed_call, scope="function")]
