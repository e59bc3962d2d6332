"""The cached snapshot: what an offline terminal knows about cards and limits.

Pulled from `GET /v1/terminal/snapshot?since=<version>`, checked against the
issuer key the terminal got at enrolment (`hcard.signed.verify_document`,
`DOMAIN_SNAPSHOT`), merged into what the terminal already had (a full
snapshot replaces it, a delta adds and removes), and persisted atomically so
that a till that boots without network still decides with the last good one.

Cheap with 20,000 cards (docs/protocol.md, `bench/snapshot_size.py`): the full
answer (about 1.1 MB) is written once when it arrives, the deltas after it go to
a small file of their own, and a delta that changes nothing is not written at all,
so a sync round rewrites kilobytes, not the town.

A snapshot whose signature does not verify is ignored as a whole
(`SNAPSHOT_BAD_SIGNATURE`): a forged deny-list removal or a raised limit must
never get in, and the older verified one is still safe to use.

Until the first snapshot arrives the limits are zero: an enrolled terminal
that never reached the server takes no offline payments at all.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
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


def _card(number: Any, known: Mapping[str, object]) -> str:
    """`number` normalized (ValueError if it is none). One the state holds already is
    normalized already: a full snapshot's 20,000 need no Luhn check each time."""
    return number if isinstance(number, str) and number in known else cardnumber.normalize(number)


def _merge(state: SnapshotState, snap: dict[str, Any]) -> SnapshotState:
    """A new state: `snap` applied onto `state` (replacing it when `full`)."""
    full = bool(snap["full"])
    deny = set() if full else set(state.deny)
    balances = {} if full else dict(state.balances)
    for card, known in snap["balances"].items():
        balances[_card(card, state.balances)] = CardKnown(
            _int(known["balance_cents"], "balance_cents"), _int(known["counter"], "counter")
        )
    for card in snap["deny_add"]:
        deny.add(_card(card, balances))
    for card in snap["deny_remove"]:
        deny.discard(_card(card, balances))
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


def _adds_nothing(old: SnapshotState, new: SnapshotState, snap: dict[str, Any]) -> bool:
    """A delta without a card, limit or key the till did not have: only the version and
    the server's time moved (an idle sync round)."""
    cards_moved = snap["balances"] or snap["deny_add"] or snap["deny_remove"]
    return not cards_moved and (new.limits, new.terminal_keys) == (old.limits, old.terminal_keys)


class SnapshotStore:
    """The current verified snapshot, in memory and on disk. Thread-safe.

    The terminal cannot sign the merged view itself, so it keeps the server's signed
    answers, and loading replays them, verifying each: the files are as untrusted as
    the network. `snapshot.json` holds the last full answer, written when one arrives;
    `snapshot-deltas.json` the deltas after it, named by the full one's signature (a
    power cut between the two writes leaves deltas of the full before, which loading
    then leaves out). A delta that adds nothing (`_adds_nothing`) moves the version in
    memory only. The next pull asks for a full snapshot after `DELTAS_MAX` deltas, or
    when the deltas carry more cards than the full one: the files and the replay at
    start stay at most about twice the full snapshot.
    """

    DELTAS_MAX = 50

    def __init__(self, path: Path, issuer: Ed25519PublicKey) -> None:
        self.path = path
        self.deltas_path = path.with_name(path.stem + "-deltas" + path.suffix)
        self._issuer = issuer
        self._lock = threading.Lock()
        self._base: list[dict[str, Any]] = []  # the answers of `snapshot.json`
        self._deltas: list[dict[str, Any]] = []  # those of the deltas file
        self._base_cards = 0
        self._delta_cards = 0
        self.state = SnapshotState()
        if path.exists():
            self._load()

    def _load(self) -> None:
        try:
            base = json.loads(self.path.read_text("utf-8"))["answers"]
            state = SnapshotState()
            for answer in base:
                state = self._verified(answer, state)
            base_cards = len(state.balances)
            deltas = self._held_deltas(base[-1]["sig"])
            for answer in deltas:
                state = self._verified(answer, state)
        except (ValueError, KeyError, TypeError, IndexError, HCardError):
            return  # start like a fresh terminal: no offline payments until the next pull
        self._base, self._deltas, self.state = base, deltas, state
        self._base_cards, self._delta_cards = base_cards, _cards_in(deltas)

    def _held_deltas(self, base_sig: str) -> list[dict[str, Any]]:
        """The deltas on disk after the full answer signed `base_sig`; none when the file
        names another one (a power cut after a new full answer was written)."""
        if not self.deltas_path.exists():
            return []
        held = json.loads(self.deltas_path.read_text("utf-8"))
        if held["base"] != base_sig:
            return []
        answers: list[dict[str, Any]] = held["answers"]
        return answers

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
            snap = answer["snapshot"]
            if self._base and _stale(self.state, new, bool(snap["full"])):
                raise HCardError(Code.SNAPSHOT_STALE, version=new.version)
            if snap["full"] or not self._base:
                write_atomic(self.path, json.dumps({"answers": [answer]}).encode())
                self.deltas_path.unlink(missing_ok=True)  # named by the full before: left out
                self._base, self._deltas = [answer], []
                self._base_cards, self._delta_cards = len(new.balances), 0
            elif not _adds_nothing(self.state, new, snap):
                deltas = [*self._deltas, answer]
                held = {"base": self._base[-1]["sig"], "answers": deltas}
                write_atomic(self.deltas_path, json.dumps(held).encode())
                self._deltas = deltas
                self._delta_cards += len(snap["balances"])
            self.state = new
            return new

    def since(self) -> int:
        """The version to ask changes after (0: send everything)."""
        with self._lock:
            if (
                not self._base
                or len(self._deltas) >= self.DELTAS_MAX
                or self._delta_cards > self._base_cards
            ):
                return 0
            return self.state.version


def _cards_in(answers: list[dict[str, Any]]) -> int:
    return sum(len(answer["snapshot"]["balances"]) for answer in answers)
