"""The cached snapshot: what an offline terminal knows about cards and limits.

Pulled from `GET /v1/terminal/snapshot?since=<version>`, checked against the
issuer key the terminal got at enrolment (`hcard.signed.verify_document`,
`DOMAIN_SNAPSHOT`), merged into what the terminal already had (a full
snapshot replaces it, a delta adds and removes), and persisted atomically so
that a till that boots without network still decides with the last good one.

A snapshot whose signature does not verify is ignored as a whole
(`SNAPSHOT_BAD_SIGNATURE`): a forged deny-list removal or a raised limit must
never get in, and the older verified one is still safe to use.

Until the first snapshot arrives the limits are zero: an enrolled terminal
that never reached the server takes no offline payments at all.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hcard import cardnumber, keys
from hcard.errors import Code, HCardError
from hcard.signed import DOMAIN_SNAPSHOT, verify_document
from hcard.terminal.config import write_atomic
from hcard.terminal.offline import Limits


@dataclass(frozen=True)
class CardKnown:
    balance_cents: int
    counter: int


@dataclass
class SnapshotState:
    version: int = 0
    deny: set[str] = field(default_factory=set)
    balances: dict[str, CardKnown] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    terminal_keys: dict[int, str] = field(default_factory=dict)
    server_time_s: float | None = None


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int")
    return value


def _merge(state: SnapshotState, snap: dict[str, Any]) -> SnapshotState:
    """A new state: `snap` applied onto `state` (replacing it when `full`)."""
    full = bool(snap["full"])
    deny = set() if full else set(state.deny)
    balances = {} if full else dict(state.balances)
    for card in snap["deny_add"]:
        deny.add(cardnumber.normalize(card))
    for card in snap["deny_remove"]:
        deny.discard(cardnumber.normalize(card))
    for card, known in snap["balances"].items():
        balances[cardnumber.normalize(card)] = CardKnown(
            _int(known["balance_cents"], "balance_cents"), _int(known["counter"], "counter")
        )
    limits = snap["limits"]
    terminal_keys = {}
    for terminal_id, public in snap["terminal_keys"].items():
        keys.public_from_hex(public)  # refuse a malformed key here, not at a tap
        terminal_keys[int(terminal_id)] = public
    return SnapshotState(
        version=_int(snap["version"], "version"),
        deny=deny,
        balances=balances,
        limits=Limits(
            _int(limits["per_payment_cents"], "per_payment_cents"),
            _int(limits["per_card_day_cents"], "per_card_day_cents"),
            _int(limits["consecutive_offline"], "consecutive_offline"),
        ),
        terminal_keys=terminal_keys,
        server_time_s=snap.get("server_time_s"),
    )


SERVER_TIME_SLACK_S = 300.0


def _stale(old: SnapshotState, new: SnapshotState, full: bool) -> bool:
    """A correctly signed snapshot older than the one held: a replay, refused.

    Replaying an old answer could lift deny-list entries and set the clock
    back. A lower version is accepted only as a full snapshot with a newer
    `server_time_s`: a server restored from a backup numbers its changes
    below the old ones again and answers the higher `since` in full. Any
    snapshot whose `server_time_s` is more than `SERVER_TIME_SLACK_S` before
    the held one is refused. Within the slack, and for an old full snapshot of
    the same version, a replay still gets in: the answer carries no nonce of
    the request (a protocol change would be needed).
    """
    old_s, new_s = old.server_time_s, new.server_time_s
    newer = False
    if isinstance(old_s, int | float) and isinstance(new_s, int | float):
        if new_s < old_s - SERVER_TIME_SLACK_S:
            return True
        newer = new_s > old_s
    if new.version >= old.version:
        return False
    return not (full and newer)


class SnapshotStore:
    """The current verified snapshot, in memory and in `snapshot.json`. Thread-safe.

    The terminal cannot sign the merged view itself, so the file holds the
    server's signed answers (the last full one and the deltas after it), and
    loading replays them, verifying each: the file is as untrusted as the
    network. After `DELTAS_MAX` deltas the next pull asks for a full snapshot,
    which keeps the file small.
    """

    DELTAS_MAX = 50

    def __init__(self, path: Path, issuer: Ed25519PublicKey) -> None:
        self.path = path
        self._issuer = issuer
        self._lock = threading.Lock()
        self._answers: list[dict[str, Any]] = []
        self.state = SnapshotState()
        if path.exists():
            self._load()

    def _load(self) -> None:
        try:
            answers = json.loads(self.path.read_text("utf-8"))["answers"]
            state = SnapshotState()
            for answer in answers:
                state = self._verified(answer, state)
        except (ValueError, KeyError, TypeError, HCardError):
            return  # start like a fresh terminal: no offline payments until the next pull
        self._answers, self.state = answers, state

    def _verified(self, answer: Any, onto: SnapshotState) -> SnapshotState:
        snap = answer.get("snapshot") if isinstance(answer, dict) else None
        sig = answer.get("sig") if isinstance(answer, dict) else None
        if not isinstance(snap, dict) or not verify_document(
            self._issuer, DOMAIN_SNAPSHOT, snap, sig
        ):
            raise HCardError(Code.SNAPSHOT_BAD_SIGNATURE)
        try:
            return _merge(onto, snap)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise HCardError(Code.SNAPSHOT_BAD_SIGNATURE, reason="malformed") from exc

    def apply(self, answer: dict[str, Any]) -> SnapshotState:
        """Verify and merge one `GET /v1/terminal/snapshot` answer; persist it.

        Raises HCardError(SNAPSHOT_BAD_SIGNATURE) and keeps the old state when
        the signature (or the shape) is wrong.
        """
        with self._lock:
            new = self._verified(answer, self.state)
            full = bool(answer["snapshot"]["full"])
            if self._answers and _stale(self.state, new, full):
                raise HCardError(Code.SNAPSHOT_STALE, version=new.version)
            answers = [answer] if full else [*self._answers, answer]
            write_atomic(self.path, json.dumps({"answers": answers}).encode())
            self._answers, self.state = answers, new
            return new

    def since(self) -> int:
        """The version to ask changes after (0: send everything)."""
        with self._lock:
            if not self._answers or len(self._answers) > self.DELTAS_MAX:
                return 0
            return self.state.version
