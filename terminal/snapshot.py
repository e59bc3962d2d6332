"""The cached snapshot: what an offline terminal knows about cards and limits.

Pulled from `GET /v1/terminal/snapshot?since=<version>`, checked against the
issuer key the terminal got at enrolment (`DOMAIN_SNAPSHOT`), merged into what
the terminal already had (a full snapshot replaces it, a delta adds and
removes), and persisted atomically so that a till that boots without network
still decides with the last good one.

Cheap with 20,000 cards (docs/protocol.md, `bench/snapshot_size.py`): the
server's answer is `{"sig":"<hex>","snapshot":<the signed bytes>}`, so the
signature is checked over the bytes as they came, not over a re-encoding, and
those bytes are what is kept: the full answer (about 1.1 MB) written once when
it arrives, the deltas after it in a small file of their own, a delta that
changes nothing not at all. A sync round rewrites kilobytes, not the town.

A snapshot whose signature does not verify is ignored as a whole
(`SNAPSHOT_BAD_SIGNATURE`): a forged deny-list removal or a raised limit must
never get in, and the older verified one is still safe to use.

Until the first snapshot arrives the limits are zero: an enrolled terminal
that never reached the server takes no offline payments at all.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hcard import cardnumber, keys
from hcard.encoding import canonical_bytes
from hcard.errors import Code, HCardError
from hcard.signed import DOMAIN_SNAPSHOT
from hcard.terminal.config import write_atomic
from hcard.terminal.offline import Limits

_SHA256_HEX = re.compile("[0-9a-f]{64}")


@dataclass(frozen=True)
class CardKnown:
    balance_cents: int
    counter: int  # the highest purse counter of the card the server has seen
    # every purse write up to this counter is known to the server (0 from a server before
    # the field): only then is its balance the card's (`offline.balance_cents`)
    trusted_counter: int = 0
    # other tills' top-ups whose write a purse of theirs may hold ({terminal_id, counter,
    # amount_cents}), the balance not (`payment.pending_in_purse_cents`)
    pending_topups: tuple[dict[str, int | None], ...] = ()


@dataclass
class SnapshotState:
    version: int = 0
    deny: set[str] = field(default_factory=set)
    balances: dict[str, CardKnown] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    terminal_keys: dict[int, str] = field(default_factory=dict)
    #: the server's digest of `terminal_keys`: sent with the next pull, so that a delta
    #: leaves out the keys when they are still these (docs/protocol.md)
    terminal_keys_sha256: str | None = None
    server_time_s: float | None = None


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int")
    return value


def _card(number: Any) -> str:
    """A card number as the server sends it: 16 ASCII digits with our prefix (ValueError
    otherwise, and the snapshot is refused as malformed). Its Luhn digit, there against
    typing errors, is not checked again: the numbers come from the server's table under
    the issuer's signature, and 20,000 checks would cost a Pi a good part of a second at
    every start."""
    if not (
        isinstance(number, str)
        and len(number) == cardnumber.LENGTH
        and number.isascii()
        and number.isdigit()
        and number.startswith(cardnumber.PREFIX)
    ):
        raise ValueError(f"not a card number: {number!r}")
    return number


def _pending(value: object) -> tuple[dict[str, int | None], ...]:
    """A card's `pending_topups`: a list of {terminal_id, counter (or null), amount_cents
    above 0} (ValueError otherwise)."""
    if not isinstance(value, list):
        raise ValueError("pending_topups is not a list")
    writes = []
    for write in value:
        if not isinstance(write, dict) or set(write) != {"terminal_id", "counter", "amount_cents"}:
            raise ValueError("pending_topups holds something else than a write")
        counter, amount = write["counter"], _int(write["amount_cents"], "amount_cents")
        if amount <= 0:
            raise ValueError("pending_topups holds an amount of 0 or less")
        writes.append(
            {
                "terminal_id": _int(write["terminal_id"], "terminal_id"),
                "counter": None if counter is None else _int(counter, "counter"),
                "amount_cents": amount,
            }
        )
    return tuple(writes)


def _merge(state: SnapshotState, snap: dict[str, Any]) -> SnapshotState:
    """A new state: `snap` applied onto `state` (replacing it when `full`)."""
    full = bool(snap["full"])
    deny = set() if full else set(state.deny)
    balances = {} if full else dict(state.balances)
    for card, known in snap["balances"].items():
        balances[_card(card)] = CardKnown(
            _int(known["balance_cents"], "balance_cents"),
            _int(known["counter"], "counter"),
            _int(known.get("trusted_counter", 0), "trusted_counter"),
            _pending(known.get("pending_topups", [])),
        )
    for card in snap["deny_add"]:
        deny.add(_card(card))
    for card in snap["deny_remove"]:
        deny.discard(_card(card))
    limits = snap["limits"]
    terminal_keys, keys_sha256 = _terminal_keys(state, snap)
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
        terminal_keys_sha256=keys_sha256,
        server_time_s=snap.get("server_time_s"),
    )


def _terminal_keys(state: SnapshotState, snap: dict[str, Any]) -> tuple[dict[int, str], str | None]:
    """(terminal keys, their digest) after `snap`: the ones it carries, or, left out, the ones
    held, if they are those the snapshot names (ValueError otherwise)."""
    digest = snap.get("terminal_keys_sha256")
    if not (isinstance(digest, str) and _SHA256_HEX.fullmatch(digest)):
        digest = None
    if "terminal_keys" not in snap:
        if digest is None or digest != state.terminal_keys_sha256:
            raise ValueError("terminal keys left out, and not the ones held")
        return state.terminal_keys, digest
    terminal_keys = {}
    for terminal_id, public in snap["terminal_keys"].items():
        keys.public_from_hex(public)  # refuse a malformed key here, not at a tap
        terminal_keys[int(terminal_id)] = public
    return terminal_keys, digest


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


_SIG_HEAD = b'{"sig":"'
_SNAPSHOT_HEAD = b'","snapshot":'
_SIG_HEX_LENGTH = 128


def _signed_parts(body: bytes) -> tuple[bytes, bytes]:
    """(signature in hex, signed snapshot bytes) of an answer body as the server makes it
    (`hcard.server.services.snapshot.answer`); ValueError for any other form."""
    sig_end = len(_SIG_HEAD) + _SIG_HEX_LENGTH
    if not (
        body.startswith(_SIG_HEAD)
        and body.startswith(_SNAPSHOT_HEAD, sig_end)
        and body.endswith(b"}")
    ):
        raise ValueError("not a snapshot answer")
    return body[len(_SIG_HEAD) : sig_end], body[sig_end + len(_SNAPSHOT_HEAD) : -1]


class SnapshotStore:
    """The current verified snapshot, in memory and on disk. Thread-safe.

    The terminal cannot sign the merged view itself, so it keeps the server's signed
    answers as they came, and loading replays them, verifying each: the files are as
    untrusted as the network. `snapshot.json` is the last full answer, written when one
    arrives; `snapshot-deltas.json` holds the deltas after it, one a line after a first
    line with the full one's signature (a power cut between the two writes leaves
    deltas of the full before, which loading then leaves out). A delta that adds
    nothing (`_adds_nothing`) moves the version in memory only. The next pull asks
    for a full snapshot after `DELTAS_MAX` deltas, or when the deltas carry more
    cards than the full one: the files and the replay at start stay at most about
    twice the full snapshot.
    """

    DELTAS_MAX = 50

    def __init__(self, path: Path, issuer: Ed25519PublicKey) -> None:
        self.path = path
        self.deltas_path = path.with_name(path.stem + "-deltas" + path.suffix)
        self._issuer = issuer
        self._lock = threading.Lock()
        self._full = b""  # the full answer's body, as on disk
        self._deltas: list[bytes] = []  # the bodies of the deltas after it
        self._full_cards = 0
        self._delta_cards = 0
        self.state = SnapshotState()
        if path.exists():
            self._load()

    def _load(self) -> None:
        try:
            full = self.path.read_bytes()
            state, snap = self._verified(full, SnapshotState())
            full_cards = len(snap["balances"])
            deltas, delta_cards = self._held_deltas(full), 0
            for body in deltas:
                state, snap = self._verified(body, state)
                delta_cards += len(snap["balances"])
        except (OSError, ValueError, HCardError):
            return  # start like a fresh terminal: no offline payments until the next pull
        self._full, self._deltas, self.state = full, deltas, state
        self._full_cards, self._delta_cards = full_cards, delta_cards

    def _held_deltas(self, full: bytes) -> list[bytes]:
        """The deltas on disk after the answer `full`; none when the file names another
        full answer (a power cut after a new one was written)."""
        if not self.deltas_path.exists():
            return []
        base, *deltas = self.deltas_path.read_bytes().splitlines()
        return deltas if base == _signed_parts(full)[0] else []

    def _verified(self, body: bytes, onto: SnapshotState) -> tuple[SnapshotState, dict[str, Any]]:
        """(`onto` with the answer `body` applied, its snapshot); SNAPSHOT_BAD_SIGNATURE
        when the signature or the shape is wrong."""
        try:
            sig_hex, signed_bytes = _signed_parts(body)
            sig = bytes.fromhex(sig_hex.decode("ascii"))
        except ValueError as exc:
            raise HCardError(Code.SNAPSHOT_BAD_SIGNATURE, reason="malformed") from exc
        if not keys.verify(self._issuer, DOMAIN_SNAPSHOT + signed_bytes, sig):
            raise HCardError(Code.SNAPSHOT_BAD_SIGNATURE)
        try:
            snap = json.loads(signed_bytes)
            return _merge(onto, snap), snap
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise HCardError(Code.SNAPSHOT_BAD_SIGNATURE, reason="malformed") from exc

    def apply(self, answer: dict[str, Any]) -> SnapshotState:
        """`apply_body` for an answer already parsed (its canonical bytes are the body)."""
        try:
            body = canonical_bytes(answer)
        except TypeError as exc:
            raise HCardError(Code.SNAPSHOT_BAD_SIGNATURE, reason="malformed") from exc
        return self.apply_body(body)

    def apply_body(self, body: bytes) -> SnapshotState:
        """Verify and merge one `GET /v1/terminal/snapshot` answer body; persist it.

        Raises HCardError(SNAPSHOT_BAD_SIGNATURE) and keeps the old state when
        the signature (or the shape) is wrong, SNAPSHOT_STALE for a replay.
        """
        with self._lock:
            new, snap = self._verified(body, self.state)
            if self._full and _stale(self.state, new, bool(snap["full"])):
                raise HCardError(Code.SNAPSHOT_STALE, version=new.version)
            if snap["full"] or not self._full:
                write_atomic(self.path, body)
                self.deltas_path.unlink(missing_ok=True)  # named by the full before: left out
                self._full, self._deltas = body, []
                self._full_cards, self._delta_cards = len(snap["balances"]), 0
            elif not _adds_nothing(self.state, new, snap):
                deltas = [*self._deltas, body]
                base = _signed_parts(self._full)[0]
                write_atomic(self.deltas_path, b"\n".join([base, *deltas]) + b"\n")
                self._deltas = deltas
                self._delta_cards += len(snap["balances"])
            self.state = new
            return new

    def keys_sha256(self) -> str | None:
        """The digest of the terminal keys held, for the next pull (None: send them)."""
        with self._lock:
            return self.state.terminal_keys_sha256

    def since(self) -> int:
        """The version to ask changes after (0: send everything)."""
        with self._lock:
            if (
                not self._full
                or len(self._deltas) >= self.DELTAS_MAX
                or self._delta_cards > self._full_cards
            ):
                return 0
            return self.state.version
