"""Terminals: enrolment codes, enrolment, revocation, and authenticating their requests.

Marketing staff create a terminal for a merchant and get a one-time code
(`K7QM-3XPA`: 8 characters from an alphabet without 0/O, 1/I/L, so it can be
read aloud over the phone and typed on a touchscreen). The Pi sends the code
with the public key it made; the code then never works again and expires
after `Settings.enrolment_ttl_s` anyway. Only the code's SHA-256 is stored.

Every later request of a terminal is signed (`hcard.reqsign`); `authenticate`
checks, in this order: well-formed headers, known and not revoked terminal,
signature over method + path + body hash + timestamp + nonce, clock skew; and
the request's unit of work (`SignedRequest.unit`) records the nonce first, in
its own transaction, refusing one seen before (kept in the database, so a
restart does not open a replay window and several server processes agree). A revoked terminal is
refused whatever it sends; when its signature verifies (the lost or stolen
device itself is calling) an alert is recorded too.

What a till says of itself rides along every signed request in two unsigned, informational
headers (`hcard.reqsign`): its software version and how many journal records it has not
uploaded yet. With the time of the request they are stored on the terminal's row by the
request's unit of work (the nonce's transaction: no extra commit), so the office sees a
till that has not called for a day or has records waiting; the time at most once a minute
unless what the till says changed (`_seen_update_step`: a request that changes nothing there
writes and locks nothing). A header that is missing or malformed changes nothing: it never
refuses a request.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hcard import keys, reqsign
from hcard.errors import Code, HCardError
from hcard.records import GENESIS_HASH
from hcard.server import names
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db import locking
from hcard.server.db.tables import enrolment_codes, merchants, nonces, terminals
from hcard.server.services import alerts
from hcard.server.services.users import Staff
from hcard.server.throttle import Guard, Key
from hcard.server.vocabulary import OFFICE, TerminalStatus

T = TypeVar("T")

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
NAME_MAX_CHARS = 100
SOFTWARE_MAX_CHARS = 40
RECORDS_WAITING_MAX = 1_000_000
#: a till's `last_seen_s` is rewritten at most this often (sooner when what it says changed)
SEEN_EVERY_S = 60
#: an active till not heard of for this long needs a look (switched off, no network)
SILENT_AFTER_S = 86_400


@dataclass(frozen=True)
class Terminal:
    """An authenticated terminal, as the request handlers see it."""

    id: int
    merchant_id: int
    public: Ed25519PublicKey


@lru_cache(maxsize=4096)
def _public(hex_key: str) -> Ed25519PublicKey:
    return keys.public_from_hex(hex_key)


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def normalize_code(text: str) -> str:
    """`k7qm 3xpa` → `K7QM-3XPA`; raise ENROLMENT_CODE_INVALID for anything else."""
    compact = "".join(ch for ch in str(text).upper() if ch not in " -")
    if len(compact) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in compact):
        raise HCardError(Code.ENROLMENT_CODE_INVALID)
    return f"{compact[:4]}-{compact[4:]}"


def create_terminal(ctx: Context, actor: Staff, merchant_id: int, name: str) -> dict[str, object]:
    """Make a pending terminal for the merchant and its one-time enrolment code."""
    actor.require(*OFFICE)
    name = names.printable(name, field="name", max_chars=NAME_MAX_CHARS)
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    code = f"{raw[:4]}-{raw[4:]}"
    now = ctx.now()
    expires_s = now + ctx.settings.enrolment_ttl_s
    with db_engine.write(ctx.engine) as conn:
        merchant = conn.execute(
            sa.select(merchants.c.active).where(merchants.c.id == merchant_id)
        ).first()
        if merchant is None:
            raise HCardError(Code.NOT_FOUND, what="merchant")
        if not merchant.active:
            raise HCardError(Code.MERCHANT_INACTIVE)
        terminal_id = conn.execute(
            sa.insert(terminals)
            .values(
                merchant_id=merchant_id, name=name, status=TerminalStatus.PENDING, created_s=now
            )
            .returning(terminals.c.id)
        ).scalar_one()
        conn.execute(
            sa.insert(enrolment_codes).values(
                code_sha256=_code_hash(code), terminal_id=terminal_id, expires_s=expires_s
            )
        )
    return {"terminal_id": terminal_id, "code": code, "expires_s": expires_s}


def enrol(
    ctx: Context, code: str, public_key_hex: str, name: str | None, address: str
) -> dict[str, object]:
    """Bind the terminal's public key to the pending terminal behind `code` (once).

    Wrong codes are throttled per client `address` (`server/throttle.py`).
    """
    guard = Key(Guard.ENROL_ADDRESS, address)
    with ctx.throttle.attempt(guard, failed=lambda e: e.code is Code.ENROLMENT_CODE_INVALID):
        return _enrol(ctx, code, public_key_hex, name)


def _enrol(ctx: Context, code: str, public_key_hex: str, name: str | None) -> dict[str, object]:
    code = normalize_code(code)
    if name is not None:
        name = names.printable(name, field="name", max_chars=NAME_MAX_CHARS, required=False)
    try:
        keys.public_from_hex(public_key_hex)
    except ValueError:
        raise HCardError(Code.MALFORMED_REQUEST, field="public_key") from None
    public_key_hex = public_key_hex.lower()
    now = ctx.now()
    with db_engine.write(ctx.engine) as conn:
        # The terminal's row first, like revoke and every booking (terminal row, then the
        # rest): an enrolment racing a revocation waits instead of deadlocking.
        owner = conn.execute(
            sa.select(enrolment_codes.c.terminal_id).where(
                enrolment_codes.c.code_sha256 == _code_hash(code)
            )
        ).scalar_one_or_none()
        if owner is None:
            raise HCardError(Code.ENROLMENT_CODE_INVALID)
        locking.terminal(conn, owner)
        # Mark the code used in the statement that checks it: two racing
        # enrolments with one code cannot both win.
        used = conn.execute(
            sa.update(enrolment_codes)
            .where(
                enrolment_codes.c.code_sha256 == _code_hash(code),
                enrolment_codes.c.used_s.is_(None),
                enrolment_codes.c.expires_s > now,
            )
            .values(used_s=now)
            .returning(enrolment_codes.c.terminal_id)
        ).first()
        if used is None:
            raise HCardError(Code.ENROLMENT_CODE_INVALID)
        if conn.execute(
            sa.select(terminals.c.id).where(terminals.c.public_key == public_key_hex)
        ).first():
            raise HCardError(Code.MALFORMED_REQUEST, field="public_key", reason="already enrolled")
        values: dict[str, object] = {
            "public_key": public_key_hex,
            "status": TerminalStatus.ACTIVE,
            "last_seen_s": now,  # the till's first call
        }
        if name:
            values["name"] = name
        # Only a terminal still pending becomes active: a revoked one stays revoked even if
        # its code were somehow still unused (revoke marks it used in the same transaction).
        enrolled = conn.execute(
            sa.update(terminals)
            .where(
                terminals.c.id == used.terminal_id,
                terminals.c.status == TerminalStatus.PENDING,
            )
            .values(values)
        ).rowcount
        if enrolled != 1:
            raise HCardError(Code.ENROLMENT_CODE_INVALID)
        row = conn.execute(
            sa.select(terminals.c.id, terminals.c.merchant_id, merchants.c.name)
            .select_from(terminals.join(merchants, merchants.c.id == terminals.c.merchant_id))
            .where(terminals.c.id == used.terminal_id)
        ).one()
    answer: dict[str, object] = {
        "terminal_id": row.id,
        "merchant_id": row.merchant_id,
        "merchant_name": row.name,
        "issuer_public_key": ctx.issuer_public_hex,
    }
    if ctx.card_write_secret is not None:
        # only the holder of the one-time code gets it: the till then writes cards
        # without anyone typing the secret on it (docs/protocol.md, POST /v1/enrol)
        answer["card_write_secret"] = ctx.card_write_secret
    return answer


def revoke(ctx: Context, actor: Staff, terminal_id: int) -> dict[str, object]:
    """Revoke a terminal, enrolled or not: its key is refused from now on, and a code it
    has not used yet dies with it (a pending terminal can never become active)."""
    actor.require(*OFFICE)
    with db_engine.write(ctx.engine) as conn:
        if locking.terminal(conn, terminal_id) is None:
            raise HCardError(Code.NOT_FOUND, what="terminal")
        conn.execute(
            sa.update(terminals)
            .where(terminals.c.id == terminal_id)
            .values(status=TerminalStatus.REVOKED)
        )
        # a code not yet used must not bring a revoked terminal back
        conn.execute(
            sa.update(enrolment_codes)
            .where(enrolment_codes.c.terminal_id == terminal_id, enrolment_codes.c.used_s.is_(None))
            .values(used_s=ctx.now())
        )
    return {"terminal_id": terminal_id, "status": TerminalStatus.REVOKED}


_LIST_COLUMNS = (
    terminals.c.id,
    terminals.c.merchant_id,
    terminals.c.name,
    terminals.c.status,
    terminals.c.public_key,
    terminals.c.last_seq,
    terminals.c.created_s,
    terminals.c.last_seen_s,
    terminals.c.software_version,
    terminals.c.records_waiting,
)


def last_heard() -> sa.ColumnElement[float]:
    """When the server last heard of a till: its last call, or (never called) its creation."""
    return sa.func.coalesce(terminals.c.last_seen_s, terminals.c.created_s)


def silent(now_s: float) -> sa.ColumnElement[bool]:
    """The one rule of "not seen for a day", for the terminals list and the overview alike:
    an active till the server has not heard of for `SILENT_AFTER_S` (its enrolment is its
    first call, so a till set up a moment ago is not silent)."""
    return sa.type_coerce(
        sa.and_(terminals.c.status == TerminalStatus.ACTIVE, last_heard() < now_s - SILENT_AFTER_S),
        sa.Boolean,
    )


def list_terminals(ctx: Context, actor: Staff, merchant_id: int) -> list[dict[str, object]]:
    """A merchant's terminals in the order they were made, each with `silent`."""
    actor.require_merchant_access(merchant_id)
    with db_engine.read(ctx.engine) as conn:
        rows = conn.execute(
            sa.select(*_LIST_COLUMNS, silent(ctx.now()).label("silent"))
            .where(terminals.c.merchant_id == merchant_id)
            .order_by(terminals.c.id)
        ).mappings()
        return [dict(row) for row in rows]


def all_terminals(ctx: Context, actor: Staff) -> list[dict[str, object]]:
    """Every terminal with its merchant's name and `silent`: active ones first, then
    pending, revoked."""
    actor.require(*OFFICE)
    order = sa.case(
        {TerminalStatus.ACTIVE: 0, TerminalStatus.PENDING: 1}, value=terminals.c.status, else_=2
    )
    with db_engine.read(ctx.engine) as conn:
        rows = conn.execute(
            sa.select(
                *_LIST_COLUMNS,
                silent(ctx.now()).label("silent"),
                merchants.c.name.label("merchant_name"),
            )
            .select_from(terminals.join(merchants, merchants.c.id == terminals.c.merchant_id))
            .order_by(order, merchants.c.name, terminals.c.id)
        ).mappings()
        return [dict(row) for row in rows]


#: The statements of every terminal request, built once with bound parameters: building one
#: costs SQLAlchemy more than SQLite takes to run it (bench/server_auth.py).
_SIGNER = sa.select(terminals.c.merchant_id, terminals.c.status, terminals.c.public_key).where(
    terminals.c.id == sa.bindparam("terminal_id")
)
_NONCE_INSERT = {
    dialect: insert(nonces)
    .values(
        terminal_id=sa.bindparam("terminal_id"),
        nonce=sa.bindparam("nonce"),
        seen_s=sa.bindparam("seen_s"),
    )
    .on_conflict_do_nothing()
    .returning(nonces.c.nonce)
    for dialect, insert in (("sqlite", sqlite_insert), ("postgresql", postgresql_insert))
}


@lru_cache(maxsize=8)
def _seen_update(said_keys: tuple[str, ...]) -> sa.Update:
    """`_seen_update_step`'s statement for what a till says of itself (one per set of keys)."""
    said: dict[str, sa.BindParameter[object]] = {
        name: sa.bindparam(f"said_{name}") for name in said_keys
    }
    changed = [terminals.c[name].is_distinct_from(value) for name, value in said.items()]
    return (
        sa.update(terminals)
        .where(
            terminals.c.id == sa.bindparam("terminal_id"),
            sa.or_(
                terminals.c.last_seen_s.is_(None),
                terminals.c.last_seen_s < sa.bindparam("stale_s"),
                *changed,
            ),
        )
        .values(last_seen_s=sa.bindparam("now_s"), **said)
    )


def reported(headers: Mapping[str, str]) -> dict[str, object]:
    """What the till says of itself (software version, records waiting), the values that
    are well-formed only."""
    said: dict[str, object] = {}
    software = headers.get(reqsign.HEADER_SOFTWARE, "").strip()
    if 0 < len(software) <= SOFTWARE_MAX_CHARS and all(" " <= ch <= "~" for ch in software):
        said["software_version"] = software
    waiting = headers.get(reqsign.HEADER_RECORDS_WAITING, "").strip()
    if waiting.isascii() and waiting.isdigit() and int(waiting) <= RECORDS_WAITING_MAX:
        said["records_waiting"] = int(waiting)
    return said


class SignedRequest:
    """An authenticated terminal request whose nonce is not recorded yet.

    `unit(fn)` is the only way to write for it: it records the nonce first, in the same
    transaction (and commit) as `fn`'s work, so a replayed request is refused
    `nonce_reused` before it can book anything, and a service cannot forget to record it.
    One unit per request: a second is refused (it would be a second commit, and the nonce
    is spent). A request that only reads has its nonce recorded by `record_nonce` before
    its read service runs (`api/deps.py` `SignedCall.read`).
    """

    __slots__ = ("_ctx", "_nonce", "_opened", "_said", "body", "terminal")

    def __init__(
        self,
        ctx: Context,
        terminal: Terminal,
        body: bytes,
        nonce: str,
        said: Mapping[str, object] | None = None,
    ) -> None:
        self._ctx = ctx
        self.terminal = terminal
        self.body = body
        self._nonce = nonce
        self._said = dict(said or {})
        self._opened = False

    def __repr__(self) -> str:
        return f"SignedRequest(terminal={self.terminal.id}, opened={self._opened})"

    @property
    def opened(self) -> bool:
        """Was the request's unit run (its nonce recorded, or rolled back with its error)?"""
        return self._opened

    def unit(self, fn: Callable[[sa.Connection], T]) -> T:
        """Run `fn(connection)` as the request's one unit of work (`db_engine.unit`: group
        commit on SQLite), after recording its nonce in the same transaction."""
        if self._opened:
            raise RuntimeError("a signed request has one unit of work")
        self._opened = True

        def run(conn: sa.Connection) -> T:
            now_s = self._ctx.now()
            terminal_id = self.terminal.id
            # one round trip on PostgreSQL, with the transaction's BEGIN; old nonces are
            # forgotten before `last_seen` may lock the terminal's row (db/locking.py:
            # the terminal first), or two requests of one till could wait for each other
            recorded, *_rest = db_engine.pipelined(
                conn,
                _nonce_insert(conn, terminal_id, self._nonce, now_s),
                *_forget_old_nonces(self._ctx, now_s),
                _seen_update_step(terminal_id, now_s, self._said),
            )
            if not recorded:
                raise HCardError(Code.NONCE_REUSED)
            return fn(conn)

        return db_engine.unit(self._ctx.engine, run)

    def record_nonce(self) -> Terminal:
        """For requests that only read: record the nonce now, in its own commit."""
        self.unit(lambda _conn: None)
        return self.terminal


def _seen_update_step(
    terminal_id: int, now_s: float, said: Mapping[str, object]
) -> db_engine.Bound:
    """The statement that stores when the till called and what it said of itself: one
    conditional UPDATE that writes only when the stored time is `SEEN_EVERY_S` old or
    what it says changed.

    No row lock is asked for: most requests (a snapshot pull every few seconds, a balance
    check) change nothing here and so touch no row, and on PostgreSQL they do not wait
    behind the till's own sync batch, which holds the row. One that does write locks the
    terminal's row by writing it, first in its transaction, as db/locking.py's order wants.
    """
    return (
        _seen_update(tuple(sorted(said))),
        {
            "terminal_id": terminal_id,
            "now_s": now_s,
            "stale_s": now_s - SEEN_EVERY_S,
            **{f"said_{name}": value for name, value in said.items()},
        },
    )


def authenticate(
    ctx: Context, method: str, path: str, body: bytes, headers: Mapping[str, str]
) -> SignedRequest:
    """Check a terminal request's signature headers; raise the protocol's refusal if not ok.

    The nonce is checked and recorded by the request's unit of work (`SignedRequest`), in
    the very transaction that books the request: one commit per request, not two.
    """
    try:
        terminal_id, timestamp_s, nonce, signature = reqsign.parse_headers(headers)
    except ValueError:
        raise HCardError(Code.BAD_SIGNATURE, reason="missing or malformed headers") from None
    with db_engine.read_statement(ctx.engine) as conn:
        row = conn.execute(_SIGNER, {"terminal_id": terminal_id}).first()
    if row is None or row.status == TerminalStatus.PENDING:
        raise HCardError(Code.UNKNOWN_TERMINAL)
    if row.public_key is None:  # revoked before it ever enrolled: no key to check
        raise HCardError(Code.TERMINAL_REVOKED)
    public = _public(row.public_key)
    signature_ok = reqsign.signature_ok(
        public, method, path, body, terminal_id, timestamp_s, nonce, signature
    )
    if row.status == TerminalStatus.REVOKED:
        # Refused either way; alerted only when its own key signed it (the device itself).
        if signature_ok:
            alerts.revoked_terminal_called(ctx, terminal_id, method, path)
        raise HCardError(Code.TERMINAL_REVOKED)
    if not signature_ok:
        raise HCardError(Code.BAD_SIGNATURE)
    now = ctx.now()
    if not reqsign.skew_ok(timestamp_s, now) or timestamp_s < ctx.started_s:
        # Signed before this server started: its nonce may be one a database restored from
        # a backup no longer holds, and a late duplicate (or a replay) of a request the till
        # was answered for would be decided again (an authorisation it was told was
        # declined, approved now). The till learns the time and signs anew.
        raise HCardError(Code.CLOCK_SKEW, server_time_s=int(now))
    terminal = Terminal(id=terminal_id, merchant_id=row.merchant_id, public=public)
    return SignedRequest(ctx, terminal, body, nonce, reported(headers))


def _nonce_insert(
    conn: sa.Connection, terminal_id: int, nonce: str, now_s: float
) -> db_engine.Bound:
    """The statement that records the request's nonce; it returns no row when the nonce was
    seen before (a replay: NONCE_REUSED).

    One statement that inserts nothing when the nonce is there (`ON CONFLICT DO NOTHING`,
    both engines; on PostgreSQL it waits for a concurrent insert of the same nonce and then
    sees it), instead of a SAVEPOINT around an insert that may fail: two round trips fewer
    for every terminal request on PostgreSQL."""
    params = {"terminal_id": terminal_id, "nonce": nonce, "seen_s": now_s}
    return _NONCE_INSERT[conn.dialect.name], params


def _forget_old_nonces(ctx: Context, now_s: float) -> list[db_engine.Bound]:
    """Now and then (one request in a hundred) the statement that forgets the nonces older
    than any timestamp we still accept; otherwise none."""
    if random.random() >= 0.01:
        return []
    return [(_FORGET_NONCES, {"before_s": now_s - ctx.settings.nonce_keep_s})]


_FORGET_NONCES = sa.delete(nonces).where(nonces.c.seen_s < sa.bindparam("before_s"))


#: (last seq, its hash) of a terminal's chain on the server
ChainHead = tuple[int, str]


def chain_head_headers(head: ChainHead) -> dict[str, str]:
    """The terminal's chain head as an answer's headers (`reqsign.HEADER_CHAIN_*`): each sync
    round pulls the snapshot, so a till with nothing to upload still learns of a server
    restored to before what it had acknowledged; each authorisation answer carries them too."""
    seq, head_hash = head
    return {reqsign.HEADER_CHAIN_SEQ: str(seq), reqsign.HEADER_CHAIN_HASH: head_hash}


def read_chain_head(ctx: Context, terminal_id: int) -> ChainHead:
    """The terminal's chain head on the server, in a read transaction of its own."""
    with db_engine.read(ctx.engine) as conn:
        return chain_head(conn, terminal_id, lock=False)


def chain_head(conn: sa.Connection, terminal_id: int, *, lock: bool) -> ChainHead:
    """(last_seq, last_hash) the server has of the terminal; with `lock`, serialise per terminal.

    On PostgreSQL the row lock makes two syncs (or authorisations) of one
    terminal run one after the other; on SQLite `BEGIN IMMEDIATE` already did.
    """
    if lock:
        return chain_head_locked(conn, terminal_id)[0]
    row = conn.execute(sa.select(*_HEAD).where(terminals.c.id == terminal_id)).first()
    return _head(terminal_id, row)


def chain_head_locked(
    conn: sa.Connection, terminal_id: int, *also: db_engine.Step
) -> tuple[ChainHead, list[list[Any]]]:
    """`chain_head(lock=True)`, and the rows of the statements `also` (which do not depend
    on it), all in one round trip on PostgreSQL (`db_engine.pipelined`)."""
    head_rows, *rows = db_engine.pipelined(
        conn, locking.terminal_step(conn, terminal_id, *_HEAD), *also
    )
    return _head(terminal_id, head_rows[0] if head_rows else None), rows


#: the columns of a terminal's chain head
_HEAD = (terminals.c.last_seq, terminals.c.last_hash)


def _head(terminal_id: int, row: Any) -> ChainHead:
    if row is None:
        raise LookupError(f"terminal {terminal_id}")  # authenticated requests only
    return row.last_seq, row.last_hash or GENESIS_HASH
