"""What keeps the pages safe: strict headers on every answer, CSRF tokens on every form.

CSRF: a random `hcard_csrf` cookie (HttpOnly, SameSite=Lax) and, in every form, the
HMAC of that cookie and the session cookie under a key derived from the issuer key
("signed double submit", OWASP). A cross-site page can neither read the cookie nor compute
the token, and a token of one session is worthless in another. The session cookie itself
is SameSite=Strict, so a cross-site POST arrives without a session anyway: the token is
the second lock. The CSRF cookie is no credential, so it is Lax: a browser arriving from a
link elsewhere (an e-mail, the town's website) still sends it, and the page does not set a
new one under the forms already open in other tabs (whose tokens would then all fail).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hcard.errors import Code, HCardError

CSRF_COOKIE = "hcard_csrf"
CSRF_FIELD = "csrf"
#: a form's token may also come as a header (a script that posts for a form)
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: no inline script or style anywhere: every file comes from the server itself
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(key: bytes, csrf_cookie: str, session_cookie: str) -> str:
    """The token a form carries: bound to this browser's CSRF cookie and its session."""
    message = f"{csrf_cookie}\x00{session_cookie}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def check_csrf(key: bytes, request: Request, submitted: str | None, session_cookie: str) -> None:
    """Refuse (`csrf_failed`) a state-changing request whose token is missing or wrong."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    expected = csrf_token(key, cookie, session_cookie)
    if not cookie or not submitted or not hmac.compare_digest(expected, submitted):
        raise HCardError(Code.CSRF_FAILED)


class SecurityHeaders:
    """Adds `PAGE_HEADERS` to every answer that does not set its own policy (pure ASGI:
    no buffering of streamed files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in PAGE_HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
