"""Card numbers: 16 digits, printed in groups of four, the last a Luhn check digit.

The prefix `9276` (a private-use range, "HC" on a phone keypad would be 42) marks
a Hattingen Card; the next 11 digits are the serial the server hands out; the
Luhn digit catches every single typo and most swaps when staff type a number.
"""

from __future__ import annotations

PREFIX = "9276"
LENGTH = 16


def luhn_digit(digits: str) -> str:
    """The Luhn check digit for a string of digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def from_serial(serial: int) -> str:
    """The card number for the server's serial (1, 2, 3, ...)."""
    if not 0 < serial < 10**11:
        raise ValueError("serial out of range")
    body = f"{PREFIX}{serial:011d}"
    return body + luhn_digit(body)


def normalize(text: str) -> str:
    """Strip spaces and dashes; raise ValueError unless it is a valid card number."""
    digits = "".join(ch for ch in text if ch not in " -")
    if not is_valid(digits):
        raise ValueError(f"not a Hattingen Card number: {text!r}")
    return digits


def is_valid(number: object) -> bool:
    """True when `number` has our length, prefix and a correct check digit."""
    return (
        isinstance(number, str)
        and len(number) == LENGTH
        and number.isascii()
        and number.isdigit()
        and number.startswith(PREFIX)
        and luhn_digit(number[:-1]) == number[-1]
    )


def pretty(number: str) -> str:
    """`9276 0000 0000 0012` for printing."""
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
