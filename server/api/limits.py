"""Refuse an oversized body before anything parses it.

Pure ASGI middleware: a `Content-Length` over the limit is answered 413 at
once, without parsing; a body without one (chunked) is counted while it
streams and refused as soon as it passes the limit. The body is then handed on
whole, so the handlers (which need the exact bytes for the signature check)
read it from memory.

After the refusal is written, the rest of the upload is read and thrown away
(for at most `DRAIN_MAX_BYTES` / `DRAIN_MAX_S`) before the connection closes:
closing a socket with unread data makes the kernel send a reset that can
destroy the 413 before the client reads it ("lingering close").
"""

from __future__ import annotations

import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hcard.errors import Code, error_body

DRAIN_MAX_BYTES = 64 * 1024 * 1024
DRAIN_MAX_S = 5.0


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_body_bytes
            except ValueError:
                await _refuse(send, receive, 400, Code.MALFORMED_REQUEST)
                return
            if too_large:
                await _refuse(send, receive, 413, Code.BODY_TOO_LARGE)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                more = bool(message.get("more_body", False))
                await _refuse(send, receive if more else None, 413, Code.BODY_TOO_LARGE)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _refuse(send: Send, receive: Receive | None, status: int, code: Code) -> None:
    """Answer `code`; then, with `receive`, discard what is still coming before closing."""
    payload = json.dumps(error_body(code)).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": True})
    if receive is not None:
        await _drain(receive)
    await send({"type": "http.response.body", "body": b""})


async def _drain(receive: Receive) -> None:
    drained, deadline = 0, time.monotonic() + DRAIN_MAX_S
    while drained < DRAIN_MAX_BYTES and time.monotonic() < deadline:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
