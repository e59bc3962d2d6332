"""Typed settings from the environment and from the till's files, refused by name.

The till reads a few settings by hand: `$HCARD_TERMINAL_STATE`, `$HCARD_APP_SIZE`,
`config.json` (written at enrolment), the enrolment answer, `app.json` (the app's
settings), a printer's port. A bare `int(value)` would let `5.9` or `True` through, or fail
with "invalid literal for int()" that names nothing; these helpers check the type and the
range and say which setting is wrong, German first, then English. No dependency: pydantic is
not in the till's packages, and these few values do not need it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

_INTEGER = re.compile(r"[+-]?[0-9]+")


class SettingError(ValueError):
    """A setting that is missing, of the wrong type or out of range; the message names it."""

    def __init__(self, name: str, problem_de: str, problem_en: str) -> None:
        super().__init__(f"{name}: {problem_de} / {name}: {problem_en}")
        self.name = name


def expected(name: str, value: object, what_de: str, what_en: str) -> SettingError:
    """The error for `value` where `what` was expected."""
    return SettingError(
        name, f"{what_de} erwartet, nicht {value!r}", f"expected {what_en}, not {value!r}"
    )


def integer(
    name: str, value: object, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """`value` as a whole number: an int (not a bool), or ASCII digits with an optional
    sign (what the environment and a command line hold), within the bounds."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        number = int(value)
    else:
        raise _whole(name, value, minimum, maximum)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise _whole(name, value, minimum, maximum)
    return number


def _whole(name: str, value: object, minimum: int | None, maximum: int | None) -> SettingError:
    if minimum is not None and maximum is not None:
        return expected(
            name,
            value,
            f"eine ganze Zahl von {minimum} bis {maximum}",
            f"a whole number from {minimum} to {maximum}",
        )
    if minimum is not None:
        return expected(
            name, value, f"eine ganze Zahl ab {minimum}", f"a whole number of at least {minimum}"
        )
    return expected(name, value, "eine ganze Zahl", "a whole number")


def text(name: str, value: object) -> str:
    """`value` as a string."""
    if not isinstance(value, str):
        raise expected(name, value, "ein Text", "a string")
    return value


def optional_text(name: str, value: object) -> str | None:
    """`value` as a string, or None."""
    return None if value is None else text(name, value)


def environ(name: str, environment: Mapping[str, str] | None = None) -> str | None:
    """`$name`, or None when it is unset or empty (an empty `Environment=NAME=` in a systemd
    unit means "not set", not "the current folder")."""
    value = (os.environ if environment is None else environment).get(name, "")
    return value or None
