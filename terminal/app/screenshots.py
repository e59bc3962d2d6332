"""Save a PNG of every screen at 800x480, 1280x800 and 800x1280 into docs/screenshots/.

`python -m hcard.terminal.app.screenshots [OUT_DIR]`. Runs the real app, layouts
and fonts, on a private Xvfb display when there is no DISPLAY. The screens are
filled with example data (the same dataclasses the `Till` returns); nothing is
paid, so no till, server or card is needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from hcard.errors import Code
from hcard.terminal.app import keypad, kivyconfig
from hcard.terminal.app.headless import virtual_display
from hcard.terminal.till import (
    CardInfo,
    DayTotals,
    Outcome,
    PaymentResult,
    Status,
    TodayEntry,
)

SIZES = ((800, 480), (1280, 800), (800, 1280))
DEFAULT_OUT = Path("docs/screenshots")

STATUS = Status(
    enrolled=True,
    online=True,
    reader_connected=True,
    unsynced_count=0,
    last_sync_s=time.time(),
    terminal_id=3,
    merchant_name="Café am Untermarkt",
    server_url="https://karte.hattingen.example",
)
OFFLINE = Status(**{**STATUS.__dict__, "online": False, "unsynced_count": 4})
TODAY = [
    TodayEntry(41, 1250, 0, "4800 0000 0001 2342", offline=False, voided=False),
    TodayEntry(42, 880, 80, "4800 0000 0007 1117", offline=True, voided=False),
    TodayEntry(43, 2390, 0, "4800 0000 0003 5551", offline=False, voided=True),
    TodayEntry(44, 450, 0, "4800 0000 0001 2342", offline=False, voided=False),
    TodayEntry(45, 2000, 0, "4800 0000 0007 1117", offline=False, voided=False, topup=True),
]


def scenes(app):
    """(name, set-up) pairs; each set-up leaves the app showing one screen."""

    def amount():
        app.show_status(STATUS)
        app.amount_cents = 1250
        app._render_amount()
        app.go("amount")

    def tip():
        app.amount_cents = 4280
        app.set_tip_percent(keypad.TIP_PERCENTS[1])
        app.go("tip")

    def tap():
        app.tap_title = app.tr._("Please tap the card")
        app.tap_amount_text = app.money(1250)
        app.go("tap")

    def approved():
        app.amount_cents, app.tip_cents = 1250, 0
        app.show_payment_result(
            PaymentResult(Outcome.APPROVED, None, 1250, 0, 3750, 17, offline=False)
        )

    def declined():
        app.amount_cents, app.tip_cents = 1250, 0
        app.show_payment_result(
            PaymentResult(Outcome.DECLINED, Code.CARD_BLOCKED, 0, 0, None, None, offline=False)
        )

    def partial():
        app.amount_cents, app.tip_cents = 2500, 0
        app.show_payment_result(
            PaymentResult(Outcome.DECLINED, Code.INSUFFICIENT_FUNDS, 0, 0, 830, None, False, 830)
        )

    def offline():
        app.show_status(OFFLINE)
        app.amount_cents, app.tip_cents = 880, 0
        app.show_payment_result(PaymentResult(Outcome.APPROVED, None, 880, 0, 2120, 42, True))

    def topup():
        app.show_status(STATUS)
        app.open_topup()
        app.topup_cents = 2000
        app._render_topup()

    def topup_approved():
        app.topup_cents = 2000
        app.show_topup_result(PaymentResult(Outcome.APPROVED, None, 2000, 0, 3750, 18, False))

    def topup_declined():
        app.show_status(OFFLINE)
        app.topup_cents = 2000
        app.show_topup_result(
            PaymentResult(Outcome.DECLINED, Code.SERVER_UNREACHABLE, 0, 0, None, None, True)
        )

    def balance():
        app.show_status(STATUS)
        app._on_balance(
            CardInfo(
                "4800 0000 0001 2342",
                3750,
                blocked=False,
                recent=[(-1250, "Café am Untermarkt"), (-450, "Buchhandlung"), (5000, "Aufladung")],
            )
        )
        app.go("balance")

    def today():
        app._on_today(TODAY)
        app.go("today")

    def pin():
        app.ask_pin(lambda: None)
        app._pin_key("1")
        app._pin_key("2")

    def dayclose():
        app._on_day_close(DayTotals(38, 61230, 1, 2390, 5, 4, 7, 45, 3, 6000, 1, 2000))
        app.go("dayclose")

    def settings_screen():
        app._show_settings()

    return [
        ("amount", amount),
        ("tip", tip),
        ("tap", tap),
        ("approved", approved),
        ("declined", declined),
        ("partial", partial),
        ("offline", offline),
        ("topup", topup),
        ("topup-approved", topup_approved),
        ("topup-declined", topup_declined),
        ("balance", balance),
        ("today", today),
        ("pin", pin),
        ("dayclose", dayclose),
        ("settings", settings_screen),
    ]


def shrink(path: Path, colours: int = 64) -> None:
    """Re-save as a 64-colour palette PNG: a quarter of the size, no visible loss."""
    from PIL import Image  # Pillow comes with python-escpos

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def take(out_dir: Path, language: str) -> list[Path]:
    kivyconfig.configure(SIZES[0])
    from kivy.clock import Clock
    from kivy.core.window import Window

    from hcard.terminal.app.app import TillApp
    from hcard.terminal.app.pin import hash_pin
    from hcard.terminal.app.settings import AppSettings, Language, TillMode

    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="hcard-shots-"))
    app_settings = AppSettings(
        language=Language(language), mode=TillMode.GASTRONOMY, manager_pin_hash=hash_pin("0000")
    )
    app = TillApp(None, data_dir, app_settings)
    saved: list[Path] = []
    steps: list[tuple[str, Any]] = []  # ("resize", (width, height)) or (scene, its set-up)
    for width, height in SIZES:
        steps.append(("resize", (width, height)))
        for name, setup in scenes(app):
            steps.append((f"{name}-{width}x{height}", setup))

    def run_step(_dt: float, index: int = 0) -> None:
        if index >= len(steps):
            app.stop()
            return
        label, action = steps[index]
        if label == "resize":
            Window.size = action
            Clock.schedule_once(lambda dt: run_step(dt, index + 1), 0.3)
            return
        action()
        # two frames: one to lay out, one to draw the new texts
        Clock.schedule_once(lambda _dt: shoot(label, index), 0.15)

    def shoot(label: str, index: int) -> None:
        path = out_dir / f"{label}.png"
        app.root.export_to_png(str(path))
        shrink(path)
        saved.append(path)
        run_step(0, index + 1)

    app.bind(on_start=lambda *_: Clock.schedule_once(run_step, 0.5))
    app.run()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--language", choices=("de", "en"), default="de")
    args = parser.parse_args(argv)
    display = (
        nullcontext(os.environ["DISPLAY"]) if os.environ.get("DISPLAY") else (virtual_display())
    )
    with display as name:
        os.environ["DISPLAY"] = name
        saved = take(args.out_dir, args.language)
    for path in saved:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
