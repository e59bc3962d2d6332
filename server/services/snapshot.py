"""The snapshot terminals cache for offline decisions, signed with the issuer key.

Versioned by one counter that every change a terminal must learn about bumps
(a card's balance, its deny status, its counter): `since=<version>` returns only
cards changed after that version. `cards_changed` is the one function that moves
it (the ledger for balances, `cards.bump` for status, sync for counters). The
counter is read before the cards, so a change committed in between is sent again
next time rather than missed.

It stays small and one answer however long a till was away (docs/protocol.md):
per card about 56 bytes of JSON, which gzip brings to about 9 (the card numbers
are serials in order), so 20,000 cards are about 1.1 MB, under 200 KiB on the wire
(`bench/snapshot_size.py`). A delta is never paged: a till that was off for a
month gets every change in one answer, or the full snapshot when the delta would
carry most of the cards (`answer_in_full`). A delta leaves out the terminal keys
the till holds already (`keys_sha256`). The body is made once, in canonical
bytes, and is exactly what the issuer signed, so the till checks the signature
over what it received; `encode` gzips it for a client that accepts gzip.

What a till may take from it (`services/trust.py`): beside a card's `counter` (the highest
seen, which the offline limits count from) its `trusted_counter` (every purse write up to
it is known, so a till may take the balance for a card whose counter it covers), and its
`balance_cents` leaves out the till top-ups of other tills approved and not yet confirmed
(`pending_topups`): one whose card write was torn is voided later. The asking till's own
are in it; it knows which of them it never showed.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from hcard import keys, signed
from hcard.encoding import canonical_bytes
from hcard.server.context import Context
from hcard.server.db import counters, locking
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import accounts, cards, pending_topups, terminals
from hcard.server.vocabulary import CounterName, TerminalStatus


def cards_changed(
    conn: sa.Connection,
    where: sa.ColumnElement[bool],
    values: Mapping[str, Any] | None = None,
    *,
    rows: Sequence[Mapping[str, Any]] = (),
) -> int:
    """Update the cards `where` selects with `values` and give them a new snapshot version,
    so that the tills learn the change from their next snapshot; return that version.

    The one place the version moves (with `accounts_cards_changed`, `_next_version`): one
    new version per call, however many cards. `rows` runs the statement once per row
    (executemany) with bound parameters.
    """
    version = _next_version(conn)
    statement = sa.update(cards).where(where).values(version=version, **(values or {}))
    if rows:
        conn.execute(statement, list(rows))
    else:
        conn.execute(statement)
    return version


#: every booking's: the cards of the accounts bound as `account_ids` get a new version
_ACCOUNTS_CARDS_CHANGED = (
    sa.update(cards)
    .where(cards.c.account_id.in_(sa.bindparam("account_ids", expanding=True)))
    .values(version=sa.bindparam("new_version"))
)


def accounts_cards_changed(conn: sa.Connection, account_ids: Sequence[int]) -> int:
    """`cards_changed` for the cards of the accounts `account_ids` (every booking), with a
    statement built once: building it took SQLAlchemy longer than SQLite takes to run it."""
    version = _next_version(conn)
    conn.execute(_ACCOUNTS_CARDS_CHANGED, {"new_version": version, "account_ids": account_ids})
    return version


def _next_version(conn: sa.Connection) -> int:
    locking.version_counter(conn)
    return counters.next_value(conn, CounterName.VERSION)


def cards_changed_sql(conn: sa.Connection, account_ids: str, *, after: str) -> list[str]:
    """`cards_changed` for the cards of the accounts in the bound array `:<account_ids>`, as
    two CTEs of a PostgreSQL statement that books (`ledger._book_postgres`): a new version
    from the counter's row, taken only when the CTE `after` has a row, given to the cards.
    The same order of locks: the counter's row, then the cards'."""
    locking.version_counter(conn)
    return [
        "version AS (UPDATE counters SET value = value + 1"  # noqa: S608 - our names, values bound
        f" WHERE name = '{CounterName.VERSION}' AND EXISTS (SELECT FROM {after})"
        " RETURNING value)",
        "changed_cards AS (UPDATE cards SET version = version.value FROM version"  # noqa: S608 - our names, values bound
        f" WHERE cards.account_id = ANY(CAST(:{account_ids} AS BIGINT[])))",
    ]


#: a delta carrying at least FULL_SHARE_NUM / FULL_SHARE_DEN of the issued cards is
#: answered in full: each changed card is in the delta's balances and in `deny_add` or
#: `deny_remove` (~75 bytes), in the full only in its balances (~56): from about 3/4 of
#: the cards on the delta is the larger answer (tests/server/test_snapshot_size.py)
FULL_SHARE_NUM, FULL_SHARE_DEN = 3, 4
#: ... and at least this many cards: below, either answer is a few kilobytes
FULL_MIN_CARDS = 1_000
#: bodies below this go uncompressed: gzip's header and table would not pay for themselves
GZIP_MIN_BYTES = 512
GZIP_LEVEL = 6


def answer_in_full(since: int, version: int, changed_cards: int, issued_cards: int) -> bool:
    """Whether `since=<since>` is answered with the full snapshot rather than a delta.

    In full: a till that has nothing (0), one ahead of the server (a server restored
    from a backup numbers its changes below the till's version again), and a delta that
    would carry so many cards that the full snapshot is no larger (a till that was off
    for weeks): it replaces the till's state in one answer instead of a merge.
    """
    if since <= 0 or since > version:
        return True
    return (
        changed_cards >= FULL_MIN_CARDS
        and changed_cards * FULL_SHARE_DEN >= issued_cards * FULL_SHARE_NUM
    )


#: (card_id, cents) of the till top-ups approved and not yet confirmed (`pending_topups`),
#: but those of the terminal bound as `except_terminal` (0: none is left aside): what a till
#: is not given of a card's balance, here and in the authorise answer. Built once: SQLAlchemy
#: takes longer to build a subquery than SQLite to run the statement it is part of.
PENDING_TOPUPS_BY_CARD = (
    sa.select(
        pending_topups.c.card_id,
        # PostgreSQL's sum of bigints is numeric: a Decimal in the document
        sa.cast(sa.func.sum(pending_topups.c.amount_cents), sa.BigInteger).label("cents"),
    )
    .where(
        pending_topups.c.terminal_id != sa.bindparam("except_terminal"),
        pending_topups.c.voided.is_(False),
    )
    .group_by(pending_topups.c.card_id)
    .subquery()
)


#: other tills' top-ups whose card write a purse may hold, for `pending_topups` here and
#: in the authorise answer: approved and not yet confirmed, or voided with the counter of
#: their write (it may have landed although the till saw it fail). A voided one stays
#: listed: only a purse its till wrote at that counter matches it, and the till never
#: writes at that counter again, so once the card moved on it matches nothing. (The
#: card's highest counter seen cannot retire it: it counts writes that never landed.)
PENDING_WRITES = (
    sa.select(
        pending_topups.c.card_id,
        cards.c.number,
        pending_topups.c.terminal_id,
        pending_topups.c.counter,
        pending_topups.c.amount_cents,
    )
    .join(cards, cards.c.id == pending_topups.c.card_id)
    # every row: a voided one is kept only with its counter (`sync._Batch._write`)
    .where(pending_topups.c.terminal_id != sa.bindparam("except_terminal"))
    .order_by(pending_topups.c.card_id, pending_topups.c.terminal_id, pending_topups.c.seq)
)


def pending_write(row: Any) -> dict[str, int | None]:
    """One of `PENDING_WRITES` as a till gets it."""
    return {
        "terminal_id": row.terminal_id,
        "counter": row.counter,
        "amount_cents": row.amount_cents,
    }


def keys_digest(terminal_keys: Mapping[str, str]) -> str:
    """SHA-256 (hex) of the canonical `terminal_keys`: the till sends the one it holds, and a
    delta leaves out keys it has already (`document`)."""
    return hashlib.sha256(canonical_bytes(dict(terminal_keys))).hexdigest()


def document(
    ctx: Context, since: int, keys_sha256: str | None = None, terminal_id: int = 0
) -> dict[str, object]:
    """The snapshot for `since=<since>` as terminal `terminal_id` gets it, unsigned (`answer`
    signs it); without a terminal (0) every pending till top-up is left out of the balances.

    `terminal_keys_sha256` is always there; `terminal_keys` is left out of a delta when
    the till holds them already (`keys_sha256`, the digest it sent, is theirs): four
    hundred tills' keys are 30 KB that gzip cannot shrink (17 KB), in every idle pull of
    every till. A full answer always carries them: it is what the till replays at start.
    """
    issued = cards.c.uid.is_not(None)
    with db_engine.read(ctx.engine) as conn:
        version = counters.current(conn, CounterName.VERSION)
        issued_cards, changed_cards = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(sa.case((cards.c.version > since, 1))),
            ).where(issued)
        ).one()
        full = answer_in_full(since, version, changed_cards, issued_cards)
        pending = PENDING_TOPUPS_BY_CARD
        query = (
            sa.select(
                cards.c.number,
                cards.c.blocked,
                cards.c.flagged,
                cards.c.counter,
                cards.c.trusted_counter,
                (accounts.c.balance_cents - sa.func.coalesce(pending.c.cents, 0)).label(
                    "balance_cents"
                ),
            )
            .select_from(
                cards.join(accounts, accounts.c.id == cards.c.account_id).outerjoin(
                    pending, pending.c.card_id == cards.c.id
                )
            )
            .where(issued)
            .order_by(cards.c.id)
        )
        if not full:
            query = query.where(cards.c.version > since)
        rows = conn.execute(query, {"except_terminal": terminal_id}).all()
        # as in the authorise answer: a purse that till wrote at that counter may hold one
        pending_by_card: dict[str, list[dict[str, int | None]]] = {}
        for row in conn.execute(PENDING_WRITES, {"except_terminal": terminal_id}):
            pending_by_card.setdefault(row.number, []).append(pending_write(row))
        active = conn.execute(
            sa.select(terminals.c.id, terminals.c.public_key).where(
                terminals.c.status == TerminalStatus.ACTIVE
            )
        ).all()
    denied = [row.number for row in rows if row.blocked or row.flagged]
    terminal_keys = {str(row.id): row.public_key for row in active}
    digest = keys_digest(terminal_keys)
    keys_known = not full and keys_sha256 == digest
    return {
        "version": version,
        "full": full,
        "deny_add": denied,
        "deny_remove": [] if full else [r.number for r in rows if not (r.blocked or r.flagged)],
        "balances": {
            row.number: {
                "balance_cents": row.balance_cents,
                "counter": row.counter,
                "trusted_counter": row.trusted_counter,
                **(
                    {"pending_topups": pending_by_card[row.number]}
                    if row.number in pending_by_card
                    else {}
                ),
            }
            for row in rows
        },
        "limits": ctx.settings.limits.as_json(),
        **({} if keys_known else {"terminal_keys": terminal_keys}),
        "terminal_keys_sha256": digest,
        "issuer_public_key": ctx.issuer_public_hex,
        "server_time_s": int(ctx.now()),
    }


def answer(ctx: Context, since: int, keys_sha256: str | None = None, terminal_id: int = 0) -> bytes:
    """The answer's JSON body `{"sig", "snapshot"}`, canonical, the snapshot encoded once.

    The same bytes as `canonical_bytes({"sig": signed.sign_document(...), "snapshot": ...})`
    (its keys sorted, no white space), without encoding 20,000 cards twice.
    """
    body = canonical_bytes(document(ctx, since, keys_sha256, terminal_id))
    sig = keys.sign(ctx.issuer_key, signed.DOMAIN_SNAPSHOT + body).hex()
    return b'{"sig":"' + sig.encode("ascii") + b'","snapshot":' + body + b"}"


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an `Accept-Encoding` header allows gzip (`requests` sends `gzip, deflate`):
    named, or `*`, with a weight above 0 (`gzip;q=0` refuses it)."""
    weights: dict[str, float] = {}
    for part in (accept_encoding or "").lower().split(","):
        coding, *params = (item.strip() for item in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding] = weight
    return weights.get("gzip", weights.get("*", 0.0)) > 0


def encode(body: bytes, accept_encoding: str | None) -> tuple[bytes, dict[str, str]]:
    """The bytes to send and their headers: gzipped when the client accepts it and the body
    is worth it. Compression is HTTP's (`Content-Encoding`): the client's HTTP library
    undoes it, and the till checks the signature over the bytes the server signed."""
    headers = {"Vary": "Accept-Encoding"}
    if len(body) < GZIP_MIN_BYTES or not accepts_gzip(accept_encoding):
        return body, headers
    # mtime=0: the same answer gives the same bytes
    return gzip.compress(body, GZIP_LEVEL, mtime=0), {**headers, "Content-Encoding": "gzip"}
