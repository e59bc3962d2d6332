"""Typed settings from the environment and from the till's files, refused by name.

The till reads a few settings by hand: `$HCARD_TERMINAL_STATE`, `$HCARD_APP_SIZE`,
`config.json` (written at enrolment), the enrolment answer, `app.json` (the app's
settings), a printer's port. A bare `int(value)` would let `5.9` or `True` through, or fail
with "invalid literal for int()" that names nothing; these helpers check the type and the
range and say which setting is wrong, German first, then English (the project's catalogues,
`hcard.i18n`). No dependency: pydantic is not in the till's packages, and these few values do
not need it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from hcard.i18n import N_, pair

_INTEGER = re.compile(r"[+-]?[0-9]+")


class SettingError(ValueError):
    """A setting that is missing, of the wrong type or out of range; the message names it,
    German / English: `problem` is a marked text (`N_("…")`) with its `{fields}`."""

    def __init__(self, name: str, problem: str, **fields: object) -> None:
        german, english = pair(problem, **fields)
        super().__init__(f"{name}: {german} / {name}: {english}")
        self.name = name


def expected(name: str, value: object, what: str) -> SettingError:
    """The error for `value` where `what` (a marked text) was expected."""
    return SettingError(name, N_("expected {what}, not {value!r}"), what=what, value=value)


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
        return SettingError(
            name,
            N_("expected a whole number from {minimum} to {maximum}, not {value!r}"),
            minimum=minimum,
            maximum=maximum,
            value=value,
        )
    if minimum is not None:
        return SettingError(
            name,
            N_("expected a whole number of at least {minimum}, not {value!r}"),
            minimum=minimum,
            value=value,
        )
    return expected(name, value, N_("a whole number"))


def text(name: str, value: object) -> str:
    """`value` as a string."""
    if not isinstance(value, str):
        raise expected(name, value, N_("a string"))
    return value


def optional_text(name: str, value: object) -> str | None:
    """`value` as a string, or None."""
    return None if value is None else text(name, value)


def environ(name: str, environment: Mapping[str, str] | None = None) -> str | None:
    """`$name`, or None when it is unset or empty (an empty `Environment=NAME=` in a systemd
    unit means "not set", not "the current folder")."""
    value = (os.environ if environment is None else environment).get(name, "")
    return value or None
