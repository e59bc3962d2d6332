"""The app's FastAPI routes, through its included routers (FastAPI keeps them apart)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every `APIRoute` (JSON and pages alike), the included routers' too."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif isinstance(original := getattr(route, "original_router", None), APIRouter):
            yield from api_routes(original.routes)
