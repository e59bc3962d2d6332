"""One simulated clock for everything: the server's `Context.now`, the tills' clocks, the
request signatures' timestamps and the journals' times.

Time moves only when the simulation moves it (`advance_s`), so a run of thousands of
operations takes seconds and every run of a seed sees the same times. The production code
reads the wall clock through `time.time()` in a few modules; `simulated_time` points their
`time` name at this clock for the length of a run (nothing else of theirs changes).
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Iterator
from types import SimpleNamespace

#: where the first simulated day starts: 2026-03-02 08:00 UTC (a Monday)
START_S = 1_772_438_400.0

#: the modules that read `time.time()` on the path of a payment, a sync or a snapshot
_PATCHED = (
    "hcard.reqsign",
    "hcard.terminal.client",
    "hcard.server.throttle",
)


class SimClock:
    """Seconds since the epoch, moved on by the simulation only."""

    def __init__(self, start_s: float = START_S) -> None:
        self._now_ms = round(start_s * 1000)

    def now_s(self) -> float:
        return self._now_ms / 1000

    def advance_s(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now_ms += round(seconds * 1000)


@contextlib.contextmanager
def simulated_time(clock: SimClock) -> Iterator[None]:
    """Let the modules in `_PATCHED` read `clock` where they read the wall clock."""
    fake = SimpleNamespace(
        **{name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
    )
    fake.time = clock.now_s
    modules = [importlib.import_module(name) for name in _PATCHED]
    saved = [module.time for module in modules]
    for module in modules:
        setattr(module, "time", fake)  # noqa: B010 - a module attribute by name
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            setattr(module, "time", original)  # noqa: B010
