"""Throttling of everything that can be guessed: passwords, enrolment codes, check codes.

Only *failures* are meant to count (a wrong password, an unknown code); a right answer
never uses up a limit. Yet the check must be atomic: a hundred wrong passwords sent at
once must not all reach argon2 because none of them had failed yet. So every attempt
first *reserves* one failure against each of its keys (the user, the card, the client's
address) before the expensive or revealing check runs (`attempt`); past any key's limit
the answer is 429 `too_many_attempts` with `Retry-After`, without doing the work, so a
flood costs the server almost nothing. A right answer hands its reservation back. When the
flood stops, the window ends and the right password works again for its owner.

The counters live in memory (the `limits` library's fixed windows, whose counter is
incremented and compared under one lock; expired windows are removed): the server runs as
one process (docs/deploy.md), and a restart forgetting them is harmless. Keys are hashed to
a fixed size, so a megabyte of user name costs 32 bytes. The address is the client's as
uvicorn reports it (behind the reverse proxy on the same machine the forwarded one; uvicorn
trusts `X-Forwarded-For` from 127.0.0.1 only); IPv6 clients count by their /64 network.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from enum import StrEnum

import limits
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

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


def address_key(host: str) -> str:
    """The client address as throttling counts it: an IPv6 client by its /64 network (one
    line at home or one server has a whole /64), anything else as it is."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Throttle:
    def __init__(self, settings: ThrottleLimits) -> None:
        self._storage = MemoryStorage()
        self._limiter = FixedWindowRateLimiter(self._storage)
        self._items = {guard: limits.parse(getattr(settings, guard.value)) for guard in Guard}

    @staticmethod
    def _id(key: Key) -> str:
        return hashlib.sha256(key.value.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def _refund(self, reserved: list[Key]) -> None:
        for key in reserved:
            item = self._items[key.guard]
            self._storage.decr(item.key_for(key.guard.value, self._id(key)))

    @contextmanager
    def attempt(self, *keys: Key, failed: Callable[[HCardError], bool]) -> Iterator[None]:
        """Run the check in the `with` block as one attempt against every key.

        TOO_MANY_ATTEMPTS (with `retry_after_s`) before the block when a key has used up
        its limit. The attempt stays counted when the block raises an HCardError for which
        `failed(error)` is true (a wrong password); any other way out hands it back.
        """
        reserved: list[Key] = []
        wait_s = 0.0
        for key in keys:
            item = self._items[key.guard]
            if self._limiter.hit(item, key.guard.value, self._id(key)):
                reserved.append(key)
            else:
                self._refund([key])
                stats = self._limiter.get_window_stats(item, key.guard.value, self._id(key))
                wait_s = max(wait_s, stats.reset_time - time.time())
        if len(reserved) < len(keys):
            self._refund(reserved)
            raise HCardError(Code.TOO_MANY_ATTEMPTS, retry_after_s=max(1, math.ceil(wait_s)))
        try:
            yield
        except HCardError as error:
            if not failed(error):
                self._refund(reserved)
            raise
        except BaseException:
            self._refund(reserved)
            raise
        self._refund(reserved)
