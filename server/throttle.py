"""Throttling of everything that can be guessed: passwords, enrolment codes, check codes.

Only *failures* count (a wrong password, an unknown code); a right answer never uses up a
limit. Before the expensive or revealing check (argon2, the database) `check` refuses at
once when any of the request's keys (the user, the card, the client's address) has used
up its limit: answer 429 `too_many_attempts` with `Retry-After`, without doing the work,
so a flood of wrong passwords costs the server almost nothing and no longer slows other
requests. After a failure `fail` counts it against every key. When the flood stops, the
moving window empties and the right password works again for its owner.

The counters live in memory (the `limits` library's moving window): the server runs as
one process (docs/deploy.md), and a restart forgetting them is harmless. The address is
the client's as uvicorn reports it, which behind the reverse proxy on the same machine is
the one in `X-Forwarded-For` (uvicorn trusts it from 127.0.0.1 only).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from enum import StrEnum

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from hcard.errors import Code, HCardError


class Guard(StrEnum):
    """What is being guessed, and by which key the failures are counted."""

    LOGIN_USER = "login_user"
    LOGIN_ADDRESS = "login_address"
    ENROL_ADDRESS = "enrol_address"
    BALANCE_CARD = "balance_card"
    BALANCE_ADDRESS = "balance_address"


@dataclass(frozen=True)
class ThrottleLimits:
    """Failures allowed per key, in the `limits` notation (`10 per 10 minutes`).

    A user's password: 10 wrong per 10 minutes (a human mistypes a few times; a guesser
    gets 1,440 tries a day at most). An address: 30 wrong logins (an office behind one
    router), 10 wrong enrolment codes (codes are typed rarely, by staff). A card's check
    code (40 bits): 10 wrong per hour per card, 30 per 10 minutes per address.
    """

    login_user: str = "10 per 10 minutes"
    login_address: str = "30 per 10 minutes"
    enrol_address: str = "10 per 10 minutes"
    balance_card: str = "10 per hour"
    balance_address: str = "30 per 10 minutes"

    def __post_init__(self) -> None:
        for f in fields(self):
            limits.parse(getattr(self, f.name))  # ValueError names a bad setting at start


@dataclass(frozen=True)
class Key:
    guard: Guard
    value: str


class Throttle:
    def __init__(self, settings: ThrottleLimits) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._items = {guard: limits.parse(getattr(settings, guard.value)) for guard in Guard}

    def check(self, *keys: Key) -> None:
        """Raise TOO_MANY_ATTEMPTS (with `retry_after_s`) if any key has no failure left."""
        now = time.time()
        wait_s = 0.0
        for key in keys:
            item = self._items[key.guard]
            if not self._limiter.test(item, key.guard.value, key.value):
                stats = self._limiter.get_window_stats(item, key.guard.value, key.value)
                wait_s = max(wait_s, stats.reset_time - now)
        if wait_s > 0:
            raise HCardError(Code.TOO_MANY_ATTEMPTS, retry_after_s=max(1, math.ceil(wait_s)))

    def fail(self, *keys: Key) -> None:
        """Count one failure against every key."""
        for key in keys:
            self._limiter.hit(self._items[key.guard], key.guard.value, key.value)
