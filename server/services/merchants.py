"""Merchants (Akzeptanzstellen): who they are, where their money goes, their fee.

The IBAN is checked with schwifty (checksum, country format) when it is
entered, because a typo found at settlement time costs the marketing office a
phone call and the merchant a late payout.
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
from hcard.server.db.tables import accounts, merchants
from hcard.server.services import ledger
from hcard.server.services.users import Staff
from hcard.server.vocabulary import OFFICE, AccountKind, Role

NAME_MAX_CHARS = 200
#: an address or a contact line: one line, a little longer than a name
TEXT_MAX_CHARS = 500

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
    accounts.c.balance_cents.label("payable_cents"),
)


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
    if "iban" in values or "bic" in values:
        clean["iban"], clean["bic"] = _validated_bank(
            str(values.get("iban", "")), str(values.get("bic", ""))
        )
    return clean


def _validated_bank(iban: str, bic: str) -> tuple[str, str]:
    try:
        parsed = IBAN(iban)
        checked_bic = BIC(bic) if bic else parsed.bic
    except SchwiftyException as exc:
        raise HCardError(Code.MALFORMED_REQUEST, field="iban/bic", reason=str(exc)) from None
    return parsed.compact, str(checked_bic or "")


def create_merchant(
    ctx: Context,
    actor: Staff,
    *,
    name: str,
    iban: str,
    bic: str = "",
    fee_bp: int = 0,
    **details: str,
) -> dict[str, object]:
    """A new merchant with its payable account; `details` are the other `TEXT_FIELDS` and
    `country`."""
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
        _get(conn, merchant_id)
        if values:
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
    query = (
        sa.select(*_COLUMNS)
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
