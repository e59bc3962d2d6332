"""The pages, one module per area; `ROUTERS` is what the app includes, in this order."""

from __future__ import annotations

from fastapi import APIRouter

from hcard.server.web.pages import (
    account,
    alerts,
    audit,
    cards,
    dashboard,
    login,
    merchants,
    portal,
    public,
    settlement,
    terminals,
    users,
)

ROUTERS: tuple[APIRouter, ...] = (
    login.router,
    account.router,
    dashboard.router,
    alerts.router,
    cards.router,
    merchants.router,
    terminals.router,
    settlement.router,
    users.router,
    audit.router,
    portal.router,
    public.router,
)
