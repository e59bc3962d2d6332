"""How a till keypad turns key presses into cents: typed right to left.

Pressing 1, 2, 5, 0 shows 0,01 → 0,12 → 1,25 → 12,50 €, as every shop till does,
so there is never a decimal key to miss. Kept free of Kivy so it is plain to test.
"""

from __future__ import annotations

from hcard.money import MAX_AMOUNT_CENTS

# The tip buttons of the gastronomy mode (layout.kv reads them from here), beside "no tip".
TIP_PERCENTS = (5, 10, 15)


def push_digit(amount_cents: int, digit: int, max_cents: int = MAX_AMOUNT_CENTS) -> int:
    """Shift `digit` in on the right; a digit that would pass `max_cents` is ignored."""
    if not 0 <= digit <= 9:
        raise ValueError(f"not a digit: {digit!r}")
    candidate = amount_cents * 10 + digit
    return candidate if candidate <= max_cents else amount_cents


def backspace(amount_cents: int) -> int:
    """Drop the digit typed last."""
    return amount_cents // 10


def tip_for_percent(base_cents: int, percent: int) -> int:
    """The tip for `percent` of `base_cents`, rounded half up to a whole cent."""
    if percent < 0:
        raise ValueError("percent must not be negative")
    return (base_cents * percent + 50) // 100
