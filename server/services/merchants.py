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

_COLUMNS = (
    merchants.c.id,
    merchants.c.name,
    merchants.c.address,
    merchants.c.iban,
    merchants.c.bic,
    merchants.c.contact,
    merchants.c.fee_bp,
    accounts.c.balance_cents.label("payable_cents"),
)


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
    address: str = "",
    contact: str = "",
    fee_bp: int = 0,
) -> dict[str, object]:
    actor.require(*OFFICE)
    name = names.printable(name, field="name", max_chars=NAME_MAX_CHARS)
    address = names.printable(address, field="address", max_chars=TEXT_MAX_CHARS, required=False)
    contact = names.printable(contact, field="contact", max_chars=TEXT_MAX_CHARS, required=False)
    iban, bic = _validated_bank(iban, bic)
    with db_engine.write(ctx.engine) as conn:
        account_id = ledger.create_account(
            conn, f"merchant:new:{secrets.token_hex(8)}", AccountKind.MERCHANT
        )
        merchant_id = conn.execute(
            sa.insert(merchants)
            .values(
                name=name,
                address=address,
                iban=iban,
                bic=bic,
                contact=contact,
                fee_bp=fee_bp,
                account_id=account_id,
                created_s=ctx.now(),
            )
            .returning(merchants.c.id)
        ).scalar_one()
        conn.execute(
            sa.update(accounts)
            .where(accounts.c.id == account_id)
            .values(key=f"merchant:{merchant_id}")
        )
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
