"""Money is integer euro cents (`amount_cents: int`), never a float.

German formatting (`12,50 €`) goes through Babel where it is installed (server
and app); the core falls back to a tiny formatter of its own so that a bare
terminal install still prints amounts the same way.
"""

from __future__ import annotations

import re

#: The largest amount a single payment, top-up or transfer may carry: 10,000 €.
#: Anything above is refused as absurd before it reaches the ledger.
MAX_AMOUNT_CENTS = 1_000_000

#: ASCII digits only: `\d` would take any script's digits too (full-width "１２" as 12 €)
_AMOUNT_RE = re.compile(r"^\s*(-?)([0-9]{1,7})(?:[,.]([0-9]{1,2}))?\s*(?:€|EUR)?\s*$")


def format_cents(amount_cents: int, locale: str = "de") -> str:
    """Return `amount_cents` as a human amount: `12,50 €` (de) or `€12.50` (en)."""
    if not isinstance(amount_cents, int) or isinstance(amount_cents, bool):
        raise TypeError("amount_cents must be int")
    sign = "-" if amount_cents < 0 else ""
    euros, cents = divmod(abs(amount_cents), 100)
    if locale.startswith("en"):
        return f"{sign}€{euros:,}.{cents:02d}"
    grouped = f"{euros:,}".replace(",", ".")
    return f"{sign}{grouped},{cents:02d}\u00a0€"


def parse_amount(text: str) -> int:
    """Parse `12,50`, `12.5`, `12 €` into cents; raise ValueError on anything else.

    Only used for typed input (provisioning, web forms); the till keypad
    produces cents directly.
    """
    match = _AMOUNT_RE.match(text)
    if not match:
        raise ValueError(f"not an amount: {text!r}")
    sign, euros, cents = match.groups()
    value = int(euros) * 100 + int((cents or "0").ljust(2, "0"))
    return -value if sign else value


def is_valid_amount(amount_cents: object) -> bool:
    """True for a positive int no larger than MAX_AMOUNT_CENTS (bools excluded)."""
    return (
        isinstance(amount_cents, int)
        and not isinstance(amount_cents, bool)
        and 0 < amount_cents <= MAX_AMOUNT_CENTS
    )
