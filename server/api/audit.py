"""Writes the audit log (`services/audit.py`) for every request that changes something.

A pure ASGI middleware: it sees the method, the route and the answer's status, and who
made the request from what the authentication left in the request's state (`staff`, set
by `api/deps.current_staff` and `web/auth.allow`; `audit_username`, set by the login
handlers before they check the password). Requests that only read, and those of no
logged-in user (terminals, the public pages), are not logged here.
"""

from __future__ import annotations

import json
import logging

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hcard.server.services import audit

log = logging.getLogger("hcard.server")
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuditLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            await self._record(scope, status)

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
        try:
            await run_in_threadpool(
                audit.record,
                ctx,
                user_id=staff.user_id if staff is not None else None,
                username=str(username),
                action=action,
                target=target,
                address=address,
                status=status,
            )
        except Exception:  # the action is done; a lost audit row is logged, not raised
            log.exception("audit log row not written for %s", action)
