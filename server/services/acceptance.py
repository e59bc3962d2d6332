"""The acceptance points: where the card is taken, for everyone (no login).

A merchant is shown only when it agreed to be listed (`merchants.listed`) and is still
active: the office sets both. What is shown is what a shop puts on its door: name,
category, address and opening hours; never the bank account, the contact or the fee. The
public page (`web/pages/public.py`) and the JSON for the town's website
(`GET /v1/acceptance-points`, `api/public.py`) read the same list, in one query.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from urllib.parse import quote_plus

import sqlalchemy as sa

from hcard.i18n import N_, Text
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import merchants
from hcard.server.vocabulary import MerchantCategory

#: what each category is called on the pages (and in the office's merchant form)
CATEGORY_LABELS: dict[MerchantCategory, Text] = {
    MerchantCategory.RESTAURANT: N_("Restaurants and cafés"),
    MerchantCategory.FOOD: N_("Food and drink"),
    MerchantCategory.RETAIL: N_("Shops"),
    MerchantCategory.FASHION: N_("Fashion and shoes"),
    MerchantCategory.HEALTH: N_("Health and beauty"),
    MerchantCategory.SERVICES: N_("Services"),
    MerchantCategory.CULTURE: N_("Culture and leisure"),
    MerchantCategory.OTHER: N_("Other"),
}

_MAP_SEARCH = "https://www.openstreetmap.org/search?query="


@dataclass(frozen=True)
class AcceptancePoint:
    """One listed merchant, as the public sees it."""

    name: str
    category: MerchantCategory
    street: str
    building_number: str
    postcode: str
    town: str
    opening_hours: str

    @property
    def address(self) -> str:
        """`Street 1, 45525 Hattingen`, as written in Germany; parts left empty are left out."""
        street = " ".join(part for part in (self.street, self.building_number) if part)
        place = " ".join(part for part in (self.postcode, self.town) if part)
        return ", ".join(part for part in (street, place) if part)

    @property
    def map_url(self) -> str:
        """The address searched on OpenStreetMap; empty when there is no address."""
        address = self.address
        return _MAP_SEARCH + quote_plus(address) if address else ""

    def as_json(self) -> dict[str, str]:
        """The fields the JSON API gives, and nothing else."""
        return {
            "name": self.name,
            "category": self.category.value,
            "street": self.street,
            "building_number": self.building_number,
            "postcode": self.postcode,
            "town": self.town,
            "opening_hours": self.opening_hours,
            "map_url": self.map_url,
        }


def acceptance_points(
    ctx: Context, category: MerchantCategory | None = None
) -> list[AcceptancePoint]:
    """The listed, active merchants (of one `category`, or all), by name."""
    query = (
        sa.select(
            merchants.c.name,
            merchants.c.category,
            merchants.c.street,
            merchants.c.building_number,
            merchants.c.postcode,
            merchants.c.town,
            merchants.c.opening_hours,
        )
        .where(merchants.c.listed, merchants.c.active)
        .order_by(merchants.c.id)
    )
    if category is not None:
        query = query.where(merchants.c.category == category)
    with db_engine.read(ctx.engine) as conn:
        rows = conn.execute(query).all()
    points = [
        AcceptancePoint(
            name=row.name,
            category=MerchantCategory(row.category),
            street=row.street,
            building_number=row.building_number,
            postcode=row.postcode,
            town=row.town,
            opening_hours=row.opening_hours,
        )
        for row in rows
    ]
    return sorted(points, key=lambda point: sort_key(point.name))


def sort_key(name: str) -> str:
    """How a German reader looks a name up: case and accents aside (Bäckerei under B,
    before Buchhandlung), which neither database's plain ORDER BY does."""
    letters = unicodedata.normalize("NFKD", name.casefold())
    return "".join(char for char in letters if not unicodedata.combining(char))


def by_category(
    points: list[AcceptancePoint],
) -> list[tuple[MerchantCategory, list[AcceptancePoint]]]:
    """`points` grouped by category, in the categories' order; empty categories left out."""
    groups: dict[MerchantCategory, list[AcceptancePoint]] = {c: [] for c in MerchantCategory}
    for point in points:
        groups[point.category].append(point)
    return [(category, group) for category, group in groups.items() if group]
