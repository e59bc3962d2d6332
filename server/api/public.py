"""Public JSON, no login: the acceptance points for the town's website.

`GET /v1/acceptance-points` (`?category=food`) lists the merchants that agreed to be listed,
with what a shop shows on its door and nothing else (`services/acceptance.py`). Any website
may read it from a browser (`Access-Control-Allow-Origin: *`: there is nothing private in
it and no cookie is needed), and caches may keep it for five minutes.

The cardholder's balance page and the acceptance page are HTML: `web/pages/public.py`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from hcard.server.api.deps import ContextDep
from hcard.server.services import acceptance
from hcard.server.vocabulary import MerchantCategory

router = APIRouter(prefix="/v1", tags=["public"])

#: the list (here and on the acceptance page, `web/pages/public.py`) changes when the office
#: edits a merchant: five minutes late is soon enough
CACHE_CONTROL = "public, max-age=300"


class AcceptancePointOut(BaseModel):
    name: str = Field(description="the shop's name")
    category: MerchantCategory = Field(description="what kind of place it is")
    street: str
    building_number: str
    postcode: str
    town: str
    opening_hours: str = Field(description="as the shop gave them, lines apart by newlines")
    map_url: str = Field(description="the address on OpenStreetMap; empty without an address")


class AcceptancePointsOut(BaseModel):
    acceptance_points: list[AcceptancePointOut] = Field(description="by name")


@router.get("/acceptance-points", response_model=AcceptancePointsOut)
def acceptance_points(
    ctx: ContextDep,
    response: Response,
    category: Annotated[
        MerchantCategory | None, Query(description="only the places of this category")
    ] = None,
) -> dict[str, object]:
    """Where the Hattingen Card is accepted: the listed, active merchants, by name."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cache-Control"] = CACHE_CONTROL
    points = acceptance.acceptance_points(ctx, category)
    return {"acceptance_points": [point.as_json() for point in points]}
