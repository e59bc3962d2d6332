"""Merchants (Akzeptanzstellen): who they are, where their money goes, their fee.

The IBAN is checked with schwifty (checksum, country format) when it is
entered, because a typo found at settlement time costs the marketing office a
phone call and the merchant a late payout.

A merchant that leaves the scheme is deactivated, not deleted (its payments, statements
and payouts stay): only once none of its terminals is active or waiting to be set up, so
no till keeps taking payments for a shop that is gone. A deactivated merchant gets no new
terminal and is taken off the public acceptance list.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from hcard.errors import Code, HCardError
from hcard.server import names
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import accounts, merchants, terminals
from hcard.server.services import ledger
from hcard.server.services.users import Staff
from hcard.server.vocabulary import OFFICE, AccountKind, MerchantCategory, Role, TerminalStatus

NAME_MAX_CHARS = 200
#: an address or a contact line: one line, a little longer than a name
TEXT_MAX_CHARS = 500
#: opening hours: a few lines of free text ("Mo–Fr 9–18 Uhr", "Sa 9–13 Uhr")
OPENING_HOURS_MAX_CHARS = 500

#: text fields and their longest value (SEPA's limits for the holder and the address parts)
TEXT_FIELDS: dict[str, int] = {
    "name": NAME_MAX_CHARS,
    "address": TEXT_MAX_CHARS,
    "contact": TEXT_MAX_CHARS,
    # the account holder exactly as the bank knows it (payee verification), else the name
    "holder_name": 70,
    "street": 70,
    "building_number": 16,
    "postcode": 16,
    "town": 35,
}

_COLUMNS = (
    merchants.c.id,
    merchants.c.name,
    merchants.c.address,
    merchants.c.iban,
    merchants.c.bic,
    merchants.c.contact,
    merchants.c.fee_bp,
    merchants.c.holder_name,
    merchants.c.street,
    merchants.c.building_number,
    merchants.c.postcode,
    merchants.c.town,
    merchants.c.country,
    merchants.c.active,
    merchants.c.listed,
    merchants.c.category,
    merchants.c.opening_hours,
    accounts.c.balance_cents.label("payable_cents"),
)
#: terminals that take (or will take) payments: a merchant with one stays active
_LIVE_TERMINALS = (TerminalStatus.ACTIVE, TerminalStatus.PENDING)


def _clean(values: dict[str, object]) -> dict[str, object]:
    """Each given field checked: printable text of its length, a bank account that exists,
    a country code; the name may not be empty."""
    clean: dict[str, object] = {}
    for field, value in values.items():
        if field in TEXT_FIELDS:
            clean[field] = names.printable(
                str(value), field=field, max_chars=TEXT_FIELDS[field], required=field == "name"
            )
        elif field == "country":
            code = str(value).upper()
            if len(code) != 2 or not code.isascii() or not code.isalpha():
                raise HCardError(Code.MALFORMED_REQUEST, field="country")
            clean[field] = code
        elif field == "fee_bp":
            clean[field] = value
        elif field == "listed":
            clean[field] = bool(value)
        elif field == "category":
            if value not in tuple(MerchantCategory):
                raise HCardError(Code.MALFORMED_REQUEST, field="category")
            clean[field] = MerchantCategory(str(value))
        elif field == "opening_hours":
            clean[field] = _opening_hours(str(value))
    if "iban" in values or "bic" in values:
        bank = check_bank(str(values.get("iban", "")), str(values.get("bic", "")))
        clean["iban"], clean["bic"] = bank["iban"], bank["bic"]
    return clean


def _opening_hours(text: str) -> str:
    """Free text of a few lines, each printable; empty lines dropped."""
    lines = [
        names.printable(
            line, field="opening_hours", max_chars=OPENING_HOURS_MAX_CHARS, required=False
        )
        for line in text.splitlines()
    ]
    joined = "\n".join(line for line in lines if line)
    if len(joined) > OPENING_HOURS_MAX_CHARS:
        raise HCardError(
            Code.INVALID_NAME, field="opening_hours", max_chars=OPENING_HOURS_MAX_CHARS
        )
    return joined


def check_bank(iban: str, bic: str = "") -> dict[str, str]:
    """The IBAN (compact) and BIC (given, else the bank's from the IBAN) and the bank's
    name, or INVALID_IBAN: the check of the form as it is typed, and of every save."""
    try:
        parsed = IBAN(iban)
        checked_bic = BIC(bic) if bic.strip() else parsed.bic
    except SchwiftyException as exc:
        raise HCardError(Code.INVALID_IBAN, field="iban/bic", reason=str(exc)) from None
    return {
        "iban": parsed.compact,
        "bic": str(checked_bic or ""),
        "bank_name": str(parsed.bank_name or ""),
    }


def create_merchant(
    ctx: Context,
    actor: Staff,
    *,
    name: str,
    iban: str,
    bic: str = "",
    fee_bp: int = 0,
    **details: object,
) -> dict[str, object]:
    """A new merchant with its payable account; `details` are the other `TEXT_FIELDS`,
    `country`, `listed`, `category` and `opening_hours`."""
    actor.require(*OFFICE)
    values = _clean({"name": name, "iban": iban, "bic": bic, "fee_bp": fee_bp, **details})
    with db_engine.write(ctx.engine) as conn:
        account_id = ledger.create_account(
            conn, f"merchant:new:{secrets.token_hex(8)}", AccountKind.MERCHANT
        )
        merchant_id = conn.execute(
            sa.insert(merchants)
            .values(**values, account_id=account_id, created_s=ctx.now())
            .returning(merchants.c.id)
        ).scalar_one()
        conn.execute(
            sa.update(accounts)
            .where(accounts.c.id == account_id)
            .values(key=f"merchant:{merchant_id}")
        )
        return _get(conn, merchant_id)


def update_merchant(
    ctx: Context, actor: Staff, merchant_id: int, changes: dict[str, object]
) -> dict[str, object]:
    """Change a merchant's master data (IBAN and BIC are checked together: a new IBAN with
    no BIC takes the bank's from the IBAN). A settlement run already made keeps the data it
    was made with."""
    actor.require(*OFFICE)
    if "bic" in changes and "iban" not in changes:
        raise HCardError(Code.MALFORMED_REQUEST, field="bic", reason="give the IBAN with it")
    values = _clean(changes)
    with db_engine.write(ctx.engine) as conn:
        current = _get(conn, merchant_id)
        # a deactivated merchant is never on the acceptance list
        if values.get("listed") and not current["active"]:
            raise HCardError(Code.MERCHANT_INACTIVE, field="listed")
        if values:
            conn.execute(sa.update(merchants).where(merchants.c.id == merchant_id).values(values))
        return _get(conn, merchant_id)


def set_active(ctx: Context, actor: Staff, merchant_id: int, active: bool) -> dict[str, object]:
    """Deactivate a merchant (MERCHANT_HAS_TERMINALS while a terminal of theirs is active or
    pending: revoke it first) or activate them again. Deactivating also takes them off the
    acceptance list; listing them again is a separate, deliberate choice."""
    actor.require(*OFFICE)
    values: dict[str, object] = {"active": active}
    with db_engine.write(ctx.engine) as conn:
        _get(conn, merchant_id)
        if not active:
            values["listed"] = False
            if conn.execute(
                sa.select(terminals.c.id).where(
                    terminals.c.merchant_id == merchant_id, terminals.c.status.in_(_LIVE_TERMINALS)
                )
            ).first():
                raise HCardError(Code.MERCHANT_HAS_TERMINALS)
        conn.execute(sa.update(merchants).where(merchants.c.id == merchant_id).values(values))
        return _get(conn, merchant_id)


def _get(conn: sa.Connection, merchant_id: int) -> dict[str, object]:
    row = (
        conn.execute(
            sa.select(*_COLUMNS)
            .select_from(merchants.join(accounts, accounts.c.id == merchants.c.account_id))
            .where(merchants.c.id == merchant_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise HCardError(Code.NOT_FOUND, what="merchant")
    return dict(row)


def get_merchant(ctx: Context, actor: Staff, merchant_id: int) -> dict[str, object]:
    actor.require_merchant_access(merchant_id)
    with db_engine.read(ctx.engine) as conn:
        return _get(conn, merchant_id)


def list_merchants(ctx: Context, actor: Staff) -> list[dict[str, object]]:
    """Every merchant (a merchant: only their own) with the number of their terminals that
    are active or pending (`terminal_count`)."""
    live = (
        sa.select(sa.func.count())
        .where(terminals.c.merchant_id == merchants.c.id, terminals.c.status.in_(_LIVE_TERMINALS))
        .scalar_subquery()
    )
    query = (
        sa.select(*_COLUMNS, live.label("terminal_count"))
        .select_from(merchants.join(accounts, accounts.c.id == merchants.c.account_id))
        .order_by(merchants.c.id)
    )
    if actor.role == Role.MERCHANT:
        query = query.where(merchants.c.id == actor.merchant_id)
    with db_engine.read(ctx.engine) as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def movements(
    ctx: Context, actor: Staff, merchant_id: int, limit: int = 200
) -> list[dict[str, object]]:
    """What was paid (and voided, and taken as cash for top-ups) in the merchant's shops."""
    actor.require_merchant_access(merchant_id)
    with db_engine.read(ctx.engine) as conn:
        account_id = conn.execute(
            sa.select(merchants.c.account_id).where(merchants.c.id == merchant_id)
        ).scalar_one_or_none()
        if account_id is None:
            raise HCardError(Code.NOT_FOUND, what="merchant")
        return ledger.account_history(conn, account_id, limit)
