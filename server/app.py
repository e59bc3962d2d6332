"""The app factory: one FastAPI app per `Context` (database, issuer key, settings)."""

from __future__ import annotations

import math
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from hcard.server.api import errors, openapi, public, settlement, staff, terminal
from hcard.server.api.audit import AuditLog
from hcard.server.api.limits import BodyLimit
from hcard.server.context import Context
from hcard.server.web import pages
from hcard.server.web.security import SecurityHeaders

STATIC_DIR = Path(__file__).parent / "web" / "static"


def create_app(ctx: Context) -> FastAPI:
    app = FastAPI(
        title="Hattingen Card server",
        version="1",
        description="Ledger, terminal sync protocol (docs/protocol.md) and staff API.",
        # Swagger UI and ReDoc load their scripts from a CDN: a blank page offline and
        # third-party JavaScript on the staff server. The description stays at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = ctx
    ctx.started_s = math.floor(ctx.now())
    errors.install(app)
    app.include_router(terminal.router)
    app.include_router(staff.router)
    app.include_router(public.router)
    app.include_router(settlement.router)
    for router in pages.ROUTERS:
        app.include_router(router)
    # every file a page needs, from the server itself (no CDN: the CSP allows only 'self')
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/v1/health", tags=["meta"])
    async def health() -> dict[str, object]:  # no I/O: no trip to the thread pool
        return {"ok": True, "issuer_public_key": ctx.issuer_public_hex}

    openapi.install(app)
    app.add_middleware(BodyLimit, max_body_bytes=ctx.settings.max_body_bytes)
    app.add_middleware(AuditLog)
    app.add_middleware(SecurityHeaders)
    return app
