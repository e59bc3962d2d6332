"""When a reader that could not be opened is tried again: one rule for every backend.

A till's reader is unplugged, its driver restarted, its service stopped: the backend
keeps answering `connected == False` and tries to reopen on later calls, soon after a
loss (a replug takes a moment) and less often while the device stays away, so an
absent reader costs no CPU and does not fill the log (one warning per try, at most
every `BACKOFF_MAX_S`).
"""

from __future__ import annotations

import time

BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0


class Backoff:
    """The next time a closed device may be opened (time.monotonic seconds)."""

    def __init__(self, first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self._delay_s = 0.0
        self._next_try_s = 0.0

    @property
    def next_try_s(self) -> float:
        return self._next_try_s

    def ready(self) -> bool:
        """True when an open may be tried now."""
        return time.monotonic() >= self._next_try_s

    def failed(self) -> float:
        """An open failed: wait twice as long as last time (first_s .. max_s); the delay."""
        self._delay_s = min(self._max_s, max(self._first_s, 2 * self._delay_s))
        self._next_try_s = time.monotonic() + self._delay_s
        return self._delay_s

    def lost(self) -> None:
        """An open device failed: try again after first_s."""
        self._delay_s = self._first_s
        self._next_try_s = time.monotonic() + self._delay_s

    def opened(self) -> None:
        """The device is open: the next failure starts again at first_s."""
        self._delay_s = 0.0
