"""What a card holds, checked the same way on every card type.

`TagSession` (NTAG21x) and `Ntag424Session` (NTAG 424 DNA) fetch the bytes their own way
(pages, or files in an AES session) and hand them here: the issuer record bound to the UID,
the two signed purse slots, the counter a purse write must carry. One place, so the two
card types can never disagree on what a genuine card with a valid purse is.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hcard import signed
from hcard.errors import Code, HCardError
from hcard.terminal.card import layout
from hcard.terminal.card.model import CardView, Purse, TagIOError

NdefParser = Callable[[bytes], tuple[str | None, layout.IssuerRecord | None]]


def issued(
    parse: NdefParser, data: bytes, uid: bytes, issuer_public: Ed25519PublicKey
) -> tuple[str | None, layout.IssuerRecord]:
    """URL and issuer record of the card's NDEF bytes, the record checked for this UID.

    CARD_UNREADABLE when the bytes are not our layout (torn, foreign), CARD_NOT_ISSUED without
    a record or with one we did not sign for this UID, CARD_COPIED when it is ours but for
    another UID (a card's content copied onto another chip).
    """
    try:
        url, record = parse(data)
    except layout.LayoutError as error:
        raise HCardError(Code.CARD_UNREADABLE, reason=str(error)) from error
    if record is None:
        raise HCardError(Code.CARD_NOT_ISSUED, reason="no issuer record")
    if not signed.card_signature_ok(issuer_public, record.card_number, uid, record.signature):
        copied = record.uid != uid and signed.card_signature_ok(
            issuer_public, record.card_number, record.uid, record.signature
        )
        raise HCardError(Code.CARD_COPIED if copied else Code.CARD_NOT_ISSUED)
    return url, record


def purse_choice(
    raw_slots: Sequence[bytes],
    uid: bytes,
    card_number: str,
    terminal_keys: Mapping[int, Ed25519PublicKey],
) -> layout.PurseChoice:
    """The two 80-byte slots (`layout.encode_slot`) decoded and weighed (`layout.choose`)."""
    if len(raw_slots) != 2:
        raise ValueError("a card has two purse slots")
    known = dict(terminal_keys)
    first, second = (layout.decode_slot(raw, uid, card_number, known) for raw in raw_slots)
    return layout.choose((first, second))


def card_view(
    record: layout.IssuerRecord,
    uid: bytes,
    chip: str,
    url: str | None,
    choice: layout.PurseChoice,
    tap_counter: int | None = None,
) -> CardView:
    """The view of a card that passed every check."""
    return CardView(
        card_number=record.card_number,
        uid=uid,
        chip=chip,
        url=url,
        purse=choice.purse,
        counter=choice.counter,
        purse_code=None if choice.trusted else Code.PURSE_INVALID,
        tap_counter=tap_counter,
    )


def require_next_counter(view: CardView, purse: Purse) -> None:
    """A purse write must carry at least `view.next_counter` (ValueError otherwise).

    Above is allowed: the terminal skips counters its declined or unanswered online records
    already used, so the server never sees one counter twice for an honest card (it would
    flag a rollback).
    """
    if purse.counter < view.next_counter:
        raise ValueError(f"purse counter must be >= {view.next_counter}, not {purse.counter}")


def after_write(view: CardView, purse: Purse) -> CardView:
    """The view once `purse` is on the card: the newest purse, trusted."""
    return dataclasses.replace(view, purse=purse, counter=purse.counter, purse_code=None)


REMOVAL_POLL_S = 0.05


def wait_removed(is_present: Callable[[], bool], timeout_s: float) -> bool:
    """`CardSession.wait_removed` for any backend: poll presence until the card has left
    (True) or `timeout_s` passed (False); a presence check that fails is a card gone."""
    deadline_s = time.monotonic() + timeout_s
    while True:
        try:
            present = is_present()
        except TagIOError:
            present = False
        if not present:
            return True
        if time.monotonic() >= deadline_s:
            return False
        time.sleep(REMOVAL_POLL_S)
