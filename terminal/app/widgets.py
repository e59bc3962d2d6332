"""The app's own widgets: the tap animation and the big ✓/✗ result symbol.

Both are drawn with Kivy graphics instead of font glyphs: they scale to any
screen, do not depend on which font has ✓ and ✗, and their shapes differ
(circle with a tick, square with a cross) so the result is clear without
colour, for colour-blind staff and in bright sunlight.
"""

from __future__ import annotations

from typing import Any

from kivy.animation import Animation
from kivy.graphics import Color, Ellipse, Line, RoundedRectangle
from kivy.properties import BooleanProperty, NumericProperty, OptionProperty
from kivy.uix.widget import Widget

from hcard.terminal.till import Outcome

GREEN = (0.12, 0.55, 0.27, 1)
RED = (0.78, 0.16, 0.16, 1)
WHITE = (1, 1, 1, 1)


def pick(values: dict[str, Any], key: str, default: Any = "") -> Any:
    """`values.get(key, default)` for kv rules, which rebind on `pick(app.x, ...)`."""
    return values.get(key, default)


class ResultSymbol(Widget):
    """approved: green circle with a tick; declined: red square with a cross."""

    kind = OptionProperty(Outcome.APPROVED, options=[Outcome.APPROVED, Outcome.DECLINED])

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.bind(pos=self._draw, size=self._draw, kind=self._draw)
        self._draw()

    def _draw(self, *_args: object) -> None:
        side = min(self.width, self.height)
        x0 = self.center_x - side / 2
        y0 = self.center_y - side / 2
        stroke = max(2.0, side * 0.07)
        self.canvas.clear()
        with self.canvas:
            if self.kind == Outcome.APPROVED:
                Color(*GREEN)
                Ellipse(pos=(x0, y0), size=(side, side))
                Color(*WHITE)
                Line(
                    points=[
                        x0 + side * 0.26,
                        y0 + side * 0.52,
                        x0 + side * 0.43,
                        y0 + side * 0.33,
                        x0 + side * 0.76,
                        y0 + side * 0.70,
                    ],
                    width=stroke,
                    cap="round",
                    joint="round",
                )
            else:
                Color(*RED)
                RoundedRectangle(pos=(x0, y0), size=(side, side), radius=[side * 0.12])
                Color(*WHITE)
                a, b = side * 0.28, side * 0.72
                Line(points=[x0 + a, y0 + a, x0 + b, y0 + b], width=stroke, cap="round")
                Line(points=[x0 + a, y0 + b, x0 + b, y0 + a], width=stroke, cap="round")


class TapPrompt(Widget):
    """A card with radio waves pulsing out of it while the till waits for a tap."""

    phase = NumericProperty(0.0)
    active = BooleanProperty(False)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._animation: Animation | None = None
        self.bind(pos=self._draw, size=self._draw, phase=self._draw, active=self._on_active)
        self._draw()

    def _on_active(self, *_args: object) -> None:
        if self._animation is not None:
            self._animation.cancel(self)
            self._animation = None
        if self.active:
            self.phase = 0.0
            self._animation = Animation(phase=1.0, duration=1.4) + Animation(phase=0.0, duration=0)
            self._animation.repeat = True
            self._animation.start(self)

    def _draw(self, *_args: object) -> None:
        side = min(self.width, self.height)
        card_w, card_h = side * 0.5, side * 0.32
        cx, cy = self.center_x, self.center_y - side * 0.12
        self.canvas.clear()
        with self.canvas:
            for ring in range(3):
                t = (self.phase + ring / 3) % 1.0
                Color(0.35, 0.7, 1.0, 1.0 - t)
                Line(
                    ellipse=(
                        cx - side * 0.5 * t,
                        cy + card_h * 0.2 - side * 0.5 * t,
                        side * t,
                        side * t,
                        -50,
                        50,
                    ),
                    width=max(1.5, side * 0.02),
                )
            Color(0.93, 0.95, 0.97, 1)
            RoundedRectangle(
                pos=(cx - card_w / 2, cy - card_h / 2),
                size=(card_w, card_h),
                radius=[card_h * 0.12],
            )
            Color(0.12, 0.35, 0.6, 1)
            RoundedRectangle(
                pos=(cx - card_w * 0.4, cy + card_h * 0.05),
                size=(card_w * 0.16, card_h * 0.26),
                radius=[card_h * 0.04],
            )
