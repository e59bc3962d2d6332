"""Kivy settings that must be made before the first Kivy window import.

Kiosk by default (full screen, no border, no cursor, Escape does not quit); a
fixed window size for screenshots, tests and a laptop demo. Kivy reads its own
command line unless told not to, so `KIVY_NO_ARGS` is set first: our argparse
owns `sys.argv`.
"""

from __future__ import annotations

import os

from hcard.i18n import N_
from hcard.terminal import parse

SIZE_ENV = "HCARD_APP_SIZE"


def parse_size(text: str, name: str = "--size") -> tuple[int, int]:
    """`800x480` → (800, 480); `parse.SettingError` (a ValueError) naming `name` otherwise."""
    width, sep, height = text.lower().partition("x")
    if not sep or not _pixels(width) or not _pixels(height):
        raise parse.SettingError(name, N_("invalid size {size!r}, e.g. 800x480"), size=text)
    return int(width), int(height)


def _pixels(text: str) -> bool:
    return text.isascii() and text.isdigit() and int(text) > 0


def configure(size: tuple[int, int] | None = None) -> None:
    """`size` None means kiosk (or `$HCARD_APP_SIZE` when set and not empty)."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    from_env = parse.environ(SIZE_ENV)
    if size is None and from_env is not None:
        size = parse_size(from_env, f"${SIZE_ENV}")
    from kivy.config import Config

    Config.set("kivy", "exit_on_escape", "0")
    Config.set("input", "mouse", "mouse,multitouch_on_demand")
    if size is None:
        Config.set("graphics", "fullscreen", "auto")
        Config.set("graphics", "borderless", "1")
        Config.set("graphics", "show_cursor", "0")
        # A touchscreen has no keyboard: text fields (settings) get Kivy's on-screen one.
        Config.set("kivy", "keyboard_mode", "systemanddock")
    else:
        Config.set("graphics", "fullscreen", "0")
        Config.set("graphics", "width", str(size[0]))
        Config.set("graphics", "height", str(size[1]))
