"""Writes the audit log (`services/audit.py`) for every request that changes something.

A pure ASGI middleware: it sees the method, the route and the answer's status, and who
made the request from what the authentication left in the request's state (`staff`, set
by `api/deps.current_staff` and `web/auth.allow`; `audit_username`, set by the login
handlers before they check the password). Requests that only read, and those of no
logged-in user (terminals, the public pages), are not logged here. The row is written
before the answer's first byte leaves, so an action the user saw done is in the log; the
user name typed at a failed login and the path's values are kept printable only.
"""

from __future__ import annotations

import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hcard.server.services import audit

log = logging.getLogger("hcard.server")
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def _printable(text: str) -> str:
    """What a user typed, fit for the log: no NUL (PostgreSQL refuses it in text) and no other
    control character (a log line that rewrites the screen of whoever reads it)."""
    return "".join(char for char in text if char.isprintable())


class AuditLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return
        recorded = False

        async def watch(message: Message) -> None:
            # the row is written before the answer leaves: what a user saw done is logged
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                await self._record(scope, int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if not recorded:  # no answer at all (the server's error page comes after us)
                await self._record(scope, 500)

    async def _record(self, scope: Scope, status: int) -> None:
        state = scope.get("state", {})
        staff = state.get("staff")
        username = staff.username if staff is not None else state.get("audit_username")
        if username is None:
            return
        route = scope.get("route")
        action = getattr(route, "name", None) or scope["path"]
        params = scope.get("path_params") or {}
        target = json.dumps(params, sort_keys=True, default=str) if params else ""
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        ctx = scope["app"].state.context
        username, action, target = (_printable(str(v)) for v in (username, action, target))
        try:
            await run_in_threadpool(
                audit.record,
                ctx,
                user_id=staff.user_id if staff is not None else None,
                username=username or "?",
                action=action,
                target=target,
                address=address,
                status=status,
            )
        except Exception:  # the action is done; a lost audit row is logged, not raised
            log.exception("audit log row not written for %s", action)
