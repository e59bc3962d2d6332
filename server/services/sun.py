"""The balance page of an NTAG 424 DNA card: its own link, checked, instead of a printed code.

On every tap the card writes a fresh link into the URL a phone opens (SUN, Secure Unique
NFC; docs/card-format.md, "NTAG 424 DNA"): `/k?p=<PICCData>&m=<SDMMAC>`, its UID and tap
counter (SDMReadCtr) encrypted with key 2 (the same on every card) and a MAC keyed by key 3
(per card). Both keys derive from the server's SUN secret (`card_secret.Secret.SUN`, held
as `ctx.sun_master`). So the link itself proves a recent tap of a genuine card of this
system, and the page shows the balance without a check code.

A link opens the page once: its counter must be above the last one this server accepted for
the card (`cards.sun_counter`), which it then becomes, in the same transaction. A copied,
bookmarked or reloaded link shows nothing (SUN_STALE); a link altered, forged, made with
another site's secret, or of a card this server never issued shows nothing either, and says
nothing about why (SUN_INVALID for all of them). The page shows what the check code's page
shows (`cards.cardholder_view`): a blocked or replaced card's balance with the note that it
is blocked.

Counting the counter up is one conditional UPDATE of the card's row (`sun_counter` below the
new one): on PostgreSQL two taps of the same link at once meet at the row lock, and the
second, re-checked after the first commits, changes nothing. It takes no other lock and
changes nothing the tills learn (no snapshot version: `snapshot.cards_changed` is for
the deny-list), so it stays outside `db/locking.py`'s order.

Invalid links are throttled per address like wrong check codes, on the same budget
(`Guard.BALANCE_ADDRESS`): their MAC cannot be guessed, but a flood of them should cost
little. A stale link does not count: it is a genuine card's, most often a reload.
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from hcard import ntag424
from hcard.errors import Code, HCardError
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import cards
from hcard.server.services import cards as card_service
from hcard.server.throttle import Guard, Key

#: the link's path on the balance page's host, and its two fields as the chip mirrors them
PATH = "/k"
PICC_HEX_CHARS = 2 * ntag424.BLOCK_BYTES
MAC_HEX_CHARS = 2 * ntag424.MAC_BYTES
_PICC = re.compile(rf"[0-9A-Fa-f]{{{PICC_HEX_CHARS}}}")
_MAC = re.compile(rf"[0-9A-Fa-f]{{{MAC_HEX_CHARS}}}")


def configured(ctx: Context) -> bool:
    """Does this server keep a SUN secret (can it check a link at all)?"""
    return ctx.sun_master is not None


def _verify(sun_master: bytes, picc_hex: str, mac_hex: str) -> ntag424.PiccData:
    """The tap a link tells of; SUN_INVALID unless it is well-formed and its MAC verifies."""
    if not (_PICC.fullmatch(picc_hex) and _MAC.fullmatch(mac_hex)):
        raise HCardError(Code.SUN_INVALID)

    def file_read_key(uid: bytes) -> bytes:
        return ntag424.card_key(sun_master, uid, ntag424.KeyNo.SUN_FILE_READ)

    meta_read_key = ntag424.site_key(sun_master, ntag424.KeyNo.SUN_META_READ)
    return ntag424.verify_sun(picc_hex, mac_hex, meta_read_key, file_read_key)


def _accept(conn: sa.Connection, tap: ntag424.PiccData) -> dict[str, object]:
    """Count the card's link counter up to the tap's and return its page; SUN_STALE when the
    tap's counter is not above the last one accepted, SUN_INVALID for a UID of no card."""
    uid_hex = tap.uid.hex()
    accepted = conn.execute(
        sa.update(cards)
        .where(
            cards.c.uid == uid_hex,
            sa.or_(cards.c.sun_counter.is_(None), cards.c.sun_counter < tap.read_counter),
        )
        .values(sun_counter=tap.read_counter)
        .returning(cards.c.number)
    ).first()
    if accepted is None:
        last_seen = conn.execute(sa.select(cards.c.sun_counter).where(cards.c.uid == uid_hex))
        row = last_seen.first()
        if row is None:
            # a genuine link of a card not on this server (issuance stopped before it
            # registered the card): nothing to show, and nothing to tell either
            raise HCardError(Code.SUN_INVALID)
        raise HCardError(Code.SUN_STALE, read_counter=tap.read_counter, last_seen=row.sun_counter)
    card = card_service.find(conn, accepted.number)
    assert card is not None  # just updated in this transaction
    return card_service.cardholder_view(conn, card)


def open_link(ctx: Context, picc_hex: str, mac_hex: str, address: str) -> dict[str, object]:
    """The balance page's data (`cards.cardholder_view`) for the link `/k?p=picc_hex&m=mac_hex`
    opened from the client `address`.

    SUN_INVALID for a link that does not verify or names no card, SUN_STALE for one whose
    counter is not above the last accepted, TOO_MANY_ATTEMPTS after too many invalid links
    from `address`. Only for a server that keeps a SUN secret (`configured`).
    """
    sun_master = ctx.sun_master
    if sun_master is None:
        raise RuntimeError("no SUN secret: ask `configured` first")
    key = Key(Guard.BALANCE_ADDRESS, address)
    with ctx.throttle.attempt(key, failed=lambda e: e.code is Code.SUN_INVALID):
        tap = _verify(sun_master, picc_hex, mac_hex)
        return db_engine.unit(ctx.engine, lambda conn: _accept(conn, tap))
