"""Cards: issue (number + issuer signature bound to the tag UID), top up, block, transfer.

Issuing is idempotent per tag UID: the provisioning tool may lose the answer
(reader pulled, network blip) and ask again for the same tag; it gets the same
card back instead of a second card. Numbers come from a serial counter
(`hcard.cardnumber.from_serial`); a batch can be reserved first so the print
file can be made before the tags are written.

A card is *denied* (on the terminals' deny-list) while it is blocked by staff
or flagged by the server (overdrawn offline, memory rolled back).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hcard import cardnumber, signed
from hcard.errors import Code, HCardError
from hcard.money import MAX_AMOUNT_CENTS, is_valid_amount
from hcard.server import check_code, names
from hcard.server.context import Context
from hcard.server.db import counters, locking
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import AnyRow, accounts, cards, form_submissions, pending_topups
from hcard.server.services import alerts, booking, ledger, snapshot
from hcard.server.services.users import Staff
from hcard.server.throttle import Guard, Key
from hcard.server.vocabulary import (
    OFFICE,
    AccountKind,
    AlertKind,
    CounterName,
    FlagReason,
    Role,
    TopupSource,
)

TOPUP_SOURCES = tuple(TopupSource)
REASON_MAX_CHARS = 500
MAX_RESERVE = 1000
_UID = re.compile(r"^[0-9a-f]{14}$")
#: a money form's id as `new_form_id` makes it (URL-safe base64, 32 characters)
_FORM_ID = re.compile(r"^[A-Za-z0-9_-]{32}$")
_FORM_ID_BYTES = 24

_CARD_COLUMNS = (
    cards.c.id,
    cards.c.number,
    cards.c.uid,
    cards.c.issuer_sig,
    cards.c.account_id,
    cards.c.blocked,
    cards.c.flagged,
    cards.c.flag_reason,
    cards.c.counter,
    cards.c.replaced_by,
    accounts.c.balance_cents,
)
#: a card with its balance by number (built once: every online payment looks its card up)
_FIND = (
    sa.select(*_CARD_COLUMNS)
    .select_from(cards.join(accounts, accounts.c.id == cards.c.account_id))
    .where(cards.c.number == sa.bindparam("number"))
)
#: a card's pending or voided-but-maybe-written till top-ups but one terminal's
_PENDING_WRITES = snapshot.PENDING_WRITES.add_columns(pending_topups.c.voided).where(
    pending_topups.c.card_id == sa.bindparam("card_id")
)


def normalize_number(text: str) -> str:
    try:
        return cardnumber.normalize(str(text))
    except ValueError:
        raise HCardError(Code.UNKNOWN_CARD, reason="not a card number") from None


def find(conn: sa.Connection, number: str) -> AnyRow | None:
    """The card row with its balance, or None."""
    return conn.execute(_FIND, {"number": number}).first()


def pending_writes(conn: sa.Connection, card_id: int, except_terminal: int = 0) -> list[AnyRow]:
    """The card's till top-ups but those of terminal `except_terminal` whose card write a
    purse may hold (`snapshot.PENDING_WRITES`, with `voided`): nearly always none. One not
    voided is approved and not yet confirmed: not spendable, and not in a balance given to
    a till (a torn card write may still void it)."""
    return list(conn.execute(*pending_writes_step(card_id, except_terminal)))


def pending_writes_step(card_id: int, except_terminal: int = 0) -> db_engine.Bound:
    """`pending_writes`' statement, to run beside others (`db_engine.pipelined`)."""
    return _PENDING_WRITES, {"card_id": card_id, "except_terminal": except_terminal}


def unconfirmed_cents(writes: list[AnyRow]) -> int:
    """What of `pending_writes` the card's balance holds but may lose: the top-ups not voided."""
    return sum(row.amount_cents for row in writes if not row.voided)


def _get(conn: sa.Connection, number: str) -> AnyRow:
    row = find(conn, number)
    if row is None:
        raise HCardError(Code.UNKNOWN_CARD)
    return row


def as_json(row: AnyRow) -> dict[str, object]:
    return {
        "card_number": row.number,
        "uid": row.uid,
        "issuer_signature": row.issuer_sig,
        "balance_cents": row.balance_cents,
        "blocked": bool(row.blocked),
        "flagged": bool(row.flagged),
        "flag_reason": row.flag_reason,
        "denied": bool(row.blocked or row.flagged),
        "counter": row.counter,
        "issued": row.uid is not None,
    }


def bump(conn: sa.Connection, card_id: int, **values: object) -> None:
    """Change a card so that terminals learn it from the next snapshot."""
    snapshot.cards_changed(conn, cards.c.id == card_id, values)


def flag(conn: sa.Connection, card_id: int, reason: FlagReason) -> None:
    """Deny-list a card on the server's own initiative (overdraw, rollback)."""
    flag_many(conn, [card_id], reason)


def flag_many(conn: sa.Connection, card_ids: Sequence[int], reason: FlagReason) -> None:
    """`flag` for several cards in one statement and one snapshot version (a sync batch)."""
    snapshot.cards_changed(conn, cards.c.id.in_(card_ids), {"flagged": True, "flag_reason": reason})


def _new_card(conn: sa.Connection, now: float) -> tuple[int, str]:
    serial = counters.next_value(conn, CounterName.CARD_SERIAL)
    number = cardnumber.from_serial(serial)
    account_id = ledger.create_account(conn, f"card:{number}", AccountKind.CARD)
    card_id = conn.execute(
        sa.insert(cards)
        .values(serial=serial, number=number, account_id=account_id, created_s=now)
        .returning(cards.c.id)
    ).scalar_one()
    return card_id, number


def issue(ctx: Context, actor: Staff, uid_hex: str, number: str | None = None) -> dict[str, object]:
    """Register the tag `uid_hex`; with `number`, bind that reserved number to it.

    Returns the card with `created` False when this tag was registered before.
    """
    actor.require(*OFFICE)
    uid_hex = str(uid_hex).lower()
    if not _UID.match(uid_hex):
        raise HCardError(Code.MALFORMED_REQUEST, field="uid", reason="14 hex characters")
    if number is not None:
        number = normalize_number(number)
    for _attempt in range(3):
        try:
            card = _issue_once(ctx, uid_hex, number)
            number = str(card["card_number"])
            return {
                **card,
                "balance_url": balance_url(ctx, number),
                "check_code": check_code.check_code(ctx.check_code_key, number),
            }
        except sa.exc.IntegrityError:
            continue  # a concurrent issue of the same tag won; read what it made
    raise HCardError(Code.CARD_ALREADY_EXISTS)


def _issue_once(ctx: Context, uid_hex: str, number: str | None) -> dict[str, object]:
    with db_engine.write(ctx.engine) as conn:
        existing = conn.execute(sa.select(cards.c.number).where(cards.c.uid == uid_hex)).first()
        if existing is not None:
            if number is not None and existing.number != number:
                raise HCardError(Code.CARD_ALREADY_EXISTS, card_number=existing.number)
            return {**as_json(_get(conn, existing.number)), "created": False}
        if number is None:
            card_id, number = _new_card(conn, ctx.now())
        else:
            row = _get(conn, number)
            if row.uid is not None:
                raise HCardError(Code.CARD_ALREADY_EXISTS, card_number=number)
            card_id = row.id
        signature = signed.sign_card(ctx.issuer_key, number, bytes.fromhex(uid_hex)).hex()
        bump(conn, card_id, uid=uid_hex, issuer_sig=signature)
        return {**as_json(_get(conn, number)), "created": True}


def balance_url(ctx: Context, number: str) -> str:
    """The URL written on the card: a phone that taps it opens the balance page."""
    return f"{ctx.settings.balance_page_url.rstrip('/')}/c/{number}"


def reserve(ctx: Context, actor: Staff, count: int) -> list[str]:
    """Reserve `count` card numbers for tags not yet written (print file first)."""
    actor.require(*OFFICE)
    if not 1 <= count <= MAX_RESERVE:
        raise HCardError(Code.MALFORMED_REQUEST, field="count", maximum=MAX_RESERVE)
    with db_engine.write(ctx.engine) as conn:
        now = ctx.now()
        return [_new_card(conn, now)[1] for _ in range(count)]


def get(ctx: Context, actor: Staff, number: str) -> dict[str, object]:
    actor.require(*OFFICE)
    with db_engine.read(ctx.engine) as conn:
        return as_json(_get(conn, normalize_number(number)))


def renew_check_code(ctx: Context, actor: Staff, number: str) -> dict[str, object]:
    """The card's check code to print again; for a card issued before the server's secret,
    this also ends its old code (derived from the chip's signature): print it right away."""
    actor.require(*OFFICE)
    with db_engine.write(ctx.engine) as conn:
        card = _get(conn, normalize_number(number))
        if card.uid is None:
            raise HCardError(Code.CARD_NOT_ISSUED)
        conn.execute(sa.update(cards).where(cards.c.id == card.id).values(legacy_check_code=False))
    return {
        "card_number": card.number,
        "check_code": check_code.check_code(ctx.check_code_key, card.number),
        "balance_url": balance_url(ctx, card.number),
    }


def new_form_id() -> str:
    """A fresh id for a money form of the office's pages, made when the page is shown and
    sent back in a hidden field: the booking records it (`topup`, `correct`), so the same
    form sent twice (a double click, a reload of the answer) books once."""
    return secrets.token_urlsafe(_FORM_ID_BYTES)


def _check_form_id(form_id: str | None) -> None:
    """FORM_INVALID unless `form_id` is None (the JSON API) or one `new_form_id` made."""
    if form_id is not None and not _FORM_ID.match(form_id):
        raise HCardError(Code.FORM_INVALID)


def _claim_form(conn: sa.Connection, form_id: str | None, now_s: float) -> int | None:
    """Record `form_id` in this write transaction; None when it is new (book now), else the
    transaction the form booked before. Two sends at the same moment meet at the primary
    key: on PostgreSQL the second waits for the first to commit, then finds its row (or
    claims the id itself when the first was rolled back); on SQLite they are one after the
    other anyway."""
    if form_id is None:
        return None
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    claimed = conn.execute(
        dialect.insert(form_submissions)
        .values(form_id=form_id, created_s=now_s)
        .on_conflict_do_nothing()
        .returning(form_submissions.c.form_id)
    ).first()
    if claimed is not None:
        return None
    return int(
        conn.execute(
            sa.select(form_submissions.c.txn_id).where(form_submissions.c.form_id == form_id)
        ).scalar_one()
    )


def _form_booked(conn: sa.Connection, form_id: str | None, txn_id: int) -> None:
    if form_id is not None:
        conn.execute(
            sa.update(form_submissions)
            .where(form_submissions.c.form_id == form_id)
            .values(txn_id=txn_id)
        )


def topup(
    ctx: Context,
    actor: Staff,
    number: str,
    amount_cents: int,
    source: TopupSource | str,
    *,
    form_id: str | None = None,
) -> dict[str, object]:
    """Money paid in at the office (cash) or online → the card.

    A bank transfer is never booked here: the bank account moves only with the bank's own
    statement (`services/bank.py`: a transfer naming the card tops it up; one that does not
    is assigned to the card there). Booked here as well, it would top the card up twice
    and the float check could never agree with the bank again.

    With `form_id` (`new_form_id`), a form sent again books nothing and answers like the
    first time, `repeated` True and the first booking's `txn_id`.
    """
    actor.require(*OFFICE)
    if not is_valid_amount(amount_cents):
        raise HCardError(Code.INVALID_AMOUNT)
    if source == TopupSource.BANK:
        raise HCardError(Code.TOPUP_BY_STATEMENT)
    if source not in TOPUP_SOURCES:
        raise HCardError(Code.MALFORMED_REQUEST, field="source", allowed=list(TOPUP_SOURCES))
    _check_form_id(form_id)
    source = TopupSource(source)
    with db_engine.write(ctx.engine) as conn:
        card = _get(conn, normalize_number(number))
        booked_before = _claim_form(conn, form_id, ctx.now())
        if booked_before is not None:
            return {**as_json(card), "txn_id": booked_before, "repeated": True}
        require_usable(card)
        source_account_id = ledger.system_account(conn, source.account)
        txn = booking.topup(source, source_account_id, card.account_id, amount_cents, actor.user_id)
        txn_id = ledger.post(conn, txn, now_s=ctx.now())
        _form_booked(conn, form_id, txn_id)
        return {**as_json(_get(conn, card.number)), "txn_id": txn_id, "repeated": False}


def require_usable(card: AnyRow) -> None:
    """Money may be put on the card by a person (a top-up, a replacement, a bank line
    assigned by hand): it is written (issued) and not blocked by the office. A card the
    server flagged (overdrawn) may be topped up: that is how its debt is paid."""
    if card.uid is None:
        raise HCardError(Code.CARD_NOT_ISSUED)
    if card.blocked:
        raise HCardError(Code.CARD_BLOCKED)


def set_blocked(ctx: Context, actor: Staff, number: str, blocked: bool) -> dict[str, object]:
    """Block a lost card, or unblock it (which also clears a server flag, after review)."""
    actor.require(*OFFICE)
    with db_engine.write(ctx.engine) as conn:
        card = _get(conn, normalize_number(number))
        if blocked:
            bump(conn, card.id, blocked=True)
        else:
            bump(conn, card.id, blocked=False, flagged=False, flag_reason=None)
        return as_json(_get(conn, card.number))


def _require_replaceable(old: AnyRow, new: AnyRow) -> None:
    """A card is replaced once (a second replacement would lose where the first went: a
    bank transfer naming it follows `replaced_by`), by a card that can pay and is on no
    deny-list: neither blocked nor flagged by the server (a copied or overdrawn card), nor
    itself replaced."""
    if old.replaced_by is not None or new.replaced_by is not None:
        raise HCardError(Code.CARD_ALREADY_REPLACED)
    require_usable(new)
    if new.flagged:
        raise HCardError(Code.CARD_BLOCKED)


def transfer(ctx: Context, actor: Staff, number: str, to_number: str) -> dict[str, object]:
    """Move the whole balance of a (lost) card to its replacement; the old card is blocked.

    Refused while a till top-up of the old card is pending (`topup_pending`): its till may
    still void it (its card write was torn), and the new card would keep money never paid.
    Both accounts are locked before the balance is read, so no payment or top-up of the old
    card slips in between."""
    actor.require(*OFFICE)
    number, to_number = normalize_number(number), normalize_number(to_number)
    if number == to_number:
        raise HCardError(Code.SAME_CARD)
    with db_engine.write(ctx.engine) as conn:
        locking.accounts(conn, (), [number, to_number])
        old, new = _get(conn, number), _get(conn, to_number)
        _require_replaceable(old, new)
        if unconfirmed_cents(pending_writes(conn, old.id)):
            raise HCardError(Code.TOPUP_PENDING)
        amount = old.balance_cents
        if amount < 0:
            raise HCardError(Code.INSUFFICIENT_FUNDS, available_cents=amount)
        txn_id = None
        if amount > 0:
            txn = booking.transfer(
                old.account_id, new.account_id, amount, old.number, new.number, actor.user_id
            )
            txn_id = ledger.post(conn, txn, now_s=ctx.now())
        bump(conn, old.id, blocked=True, replaced_by=new.id)
        return {
            "from": as_json(_get(conn, number)),
            "to": as_json(_get(conn, to_number)),
            "amount_cents": amount,
            "txn_id": txn_id,
        }


def history(ctx: Context, actor: Staff, number: str, limit: int = 100) -> dict[str, object]:
    actor.require(*OFFICE)
    with db_engine.read(ctx.engine) as conn:
        card = _get(conn, normalize_number(number))
        return {
            **as_json(card),
            "history": ledger.account_history(conn, card.account_id, limit),
        }


def office_view(ctx: Context, actor: Staff, number: str, limit: int = 100) -> dict[str, object]:
    """The office's card page: the card, its last `limit` movements, the card that replaced
    it (`replaced_by`) and the ones it replaced (`replaces`), by number."""
    actor.require(*OFFICE)
    with db_engine.read(ctx.engine) as conn:
        card = _get(conn, normalize_number(number))
        replaced_by = None
        if card.replaced_by is not None:
            replaced_by = conn.execute(
                sa.select(cards.c.number).where(cards.c.id == card.replaced_by)
            ).scalar_one()
        replaces = list(
            conn.execute(
                sa.select(cards.c.number).where(cards.c.replaced_by == card.id).order_by(cards.c.id)
            ).scalars()
        )
        return {
            **as_json(card),
            "replaced_by": replaced_by,
            "replaces": replaces,
            "history": ledger.account_history(conn, card.account_id, limit),
        }


def for_terminal(ctx: Context, number: str) -> dict[str, object]:
    """The balance check on the till: balance, denied or not, the last few movements."""
    with db_engine.read(ctx.engine) as conn:
        card = _get(conn, normalize_number(number))
        recent = ledger.account_history(conn, card.account_id, 5)
    return {
        "card_number": card.number,
        "balance_cents": card.balance_cents,
        "blocked": bool(card.blocked or card.flagged),
        "recent": [{"amount_cents": r["amount_cents"], "label": r["label"]} for r in recent],
    }


#: how many movements the cardholder's balance page shows
PUBLIC_RECENT = 5


def _code_opens(ctx: Context, card: AnyRow, typed: str) -> bool:
    """The card's check code (`server/check_code.py`), or its old one while it has one."""
    if check_code.matches(check_code.check_code(ctx.check_code_key, card.number), typed):
        return True
    legacy = check_code.legacy_check_code(bytes.fromhex(card.issuer_sig))
    return bool(card.legacy_check_code) and check_code.matches(legacy, typed)


def cardholder_view(conn: sa.Connection, card: AnyRow) -> dict[str, object]:
    """What the cardholder's balance page shows of `card` (a row with `_CARD_COLUMNS`): its
    balance, whether it is blocked, its last movements. One answer for both ways of opening
    the page: the printed check code (`for_cardholder`) and an NTAG 424 DNA's link
    (`services/sun.py`)."""
    recent = ledger.account_history(conn, card.account_id, PUBLIC_RECENT)
    return {
        "card_number": card.number,
        "balance_cents": card.balance_cents,
        "blocked": bool(card.blocked or card.flagged),
        "recent": [
            {"amount_cents": r["amount_cents"], "label": r["label"], "created_s": r["created_s"]}
            for r in recent
        ],
    }


def _cardholder_view(ctx: Context, number: str, code: str) -> dict[str, object]:
    """The card's page; UNKNOWN_CARD for every way of not opening it."""
    with db_engine.read(ctx.engine) as conn:
        card = conn.execute(
            sa.select(*_CARD_COLUMNS, cards.c.legacy_check_code)
            .select_from(cards.join(accounts, accounts.c.id == cards.c.account_id))
            .where(cards.c.number == number)
        ).first()
        if card is None or card.issuer_sig is None or not _code_opens(ctx, card, code):
            raise HCardError(Code.UNKNOWN_CARD)
        return cardholder_view(conn, card)


def for_cardholder(ctx: Context, number: str, code: str, address: str) -> dict[str, object] | None:
    """The public balance page's data (`cardholder_view`), or None unless `number`
    (normalised) is a card AND `code` is its check code.

    One None for all of: no such card, a number only reserved, a wrong code. So a page
    without the right code says nothing about whether the card exists. Wrong codes are
    throttled per card number and per client `address` (TOO_MANY_ATTEMPTS).
    """
    keys = (Key(Guard.BALANCE_CARD, number), Key(Guard.BALANCE_ADDRESS, address))
    try:
        with ctx.throttle.attempt(*keys, failed=lambda e: e.code is Code.UNKNOWN_CARD):
            return _cardholder_view(ctx, number, code)
    except HCardError as error:
        if error.code is Code.UNKNOWN_CARD:
            return None
        raise


def correct(
    ctx: Context,
    actor: Staff,
    number: str,
    amount_cents: int,
    reason: str,
    *,
    allow_below_zero: bool = False,
    form_id: str | None = None,
) -> dict[str, object]:
    """A manual correction of a card's balance (admin only), against the correction account.

    Never an edit: a new transaction with the reason and the admin who made it. One that
    would take the card below zero is refused (BELOW_ZERO_NOT_CONFIRMED, checked in the
    debit's own statement) unless `allow_below_zero`; then it is booked and the card is
    flagged, deny-listed and alerted like an offline overdraw. With `form_id`, a form sent
    again books nothing (as in `topup`).
    """
    actor.require(Role.ADMIN)
    if amount_cents == 0 or abs(amount_cents) > MAX_AMOUNT_CENTS:
        raise HCardError(Code.INVALID_AMOUNT)
    reason = names.printable(reason, field="reason", max_chars=REASON_MAX_CHARS)
    _check_form_id(form_id)
    with db_engine.write(ctx.engine) as conn:
        card = _get(conn, normalize_number(number))
        booked_before = _claim_form(conn, form_id, ctx.now())
        if booked_before is not None:
            return {**as_json(card), "txn_id": booked_before, "repeated": True}
        txn = booking.correction(
            card.account_id,
            ledger.system_account(conn, AccountKind.CORRECTION),
            amount_cents,
            reason,
            actor.user_id,
            allow_below_zero=allow_below_zero,
        )
        try:
            txn_id = ledger.post(conn, txn, now_s=ctx.now())
        except HCardError as error:
            if error.code is Code.INSUFFICIENT_FUNDS:
                raise HCardError(
                    Code.BELOW_ZERO_NOT_CONFIRMED, balance_cents=card.balance_cents
                ) from None
            raise
        after = _get(conn, card.number)
        if amount_cents < 0 and after.balance_cents < 0:
            # a debit that took the card below zero, or deeper: flagged (keeping a reason it
            # was flagged for before, such as a copied card) and alerted
            if not card.flagged:
                flag(conn, card.id, FlagReason.OVERDRAW)
            alerts.record(
                conn,
                ctx,
                AlertKind.OVERDRAW,
                f"correction by {actor.username} took the card to {after.balance_cents} cents",
                card=card.number,
            )
        _form_booked(conn, form_id, txn_id)
        return {**as_json(_get(conn, card.number)), "txn_id": txn_id, "repeated": False}
