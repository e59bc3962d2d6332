"""The header's menu: the areas a role may open, in the order the office works through them."""

from __future__ import annotations

from dataclasses import dataclass

from hcard.i18n import N_, Text, text
from hcard.server.services.users import Staff
from hcard.server.vocabulary import Role


@dataclass(frozen=True)
class Area:
    href: str
    label: Text
    roles: tuple[Role, ...]


AREAS = (
    Area("/office/", N_("Overview"), (Role.ADMIN, Role.MARKETING)),
    Area("/office/alerts", N_("Alerts"), (Role.ADMIN, Role.MARKETING)),
    Area("/office/cards", N_("Cards"), (Role.ADMIN, Role.MARKETING)),
    Area("/office/merchants", N_("Merchants"), (Role.ADMIN, Role.MARKETING)),
    Area("/office/terminals", N_("Terminals"), (Role.ADMIN, Role.MARKETING)),
    Area("/office/settlement", N_("Monthly close"), (Role.ADMIN, Role.MARKETING)),
    Area("/office/users", N_("Users"), (Role.ADMIN,)),
    Area("/office/audit", N_("Audit log"), (Role.ADMIN,)),
    Area("/portal/", N_("Overview"), (Role.MERCHANT,)),
    Area("/portal/payments", N_("Payments"), (Role.MERCHANT,)),
    Area("/portal/statements", N_("Statements"), (Role.MERCHANT,)),
    Area("/portal/details", N_("Our details"), (Role.MERCHANT,)),
)


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str
    current: bool


def nav_for(staff: Staff | None, path: str, lang: str) -> list[NavItem]:
    """The menu of `staff` on the page at `path` (the longest matching area is current)."""
    if staff is None:
        return []
    areas = [area for area in AREAS if staff.role in area.roles]
    matching = [a for a in areas if path == a.href or path.startswith(a.href.rstrip("/") + "/")]
    current = max(matching, key=lambda a: len(a.href), default=None)
    return [NavItem(a.href, text(a.label, lang), a is current) for a in areas]
