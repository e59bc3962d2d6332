"""Staff users: argon2 passwords, roles, bearer tokens; and the permission checks.

Roles: `admin` (everything, including users and corrections), `marketing`
(merchants, terminals, cards, top-ups), `merchant` (reads only their own
merchant's data). Tokens are random; only their SHA-256 is stored, so a
leaked database does not leak a usable session.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hcard.errors import Code, HCardError
from hcard.server import names
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import AnyRow, merchants, sessions, users
from hcard.server.throttle import Guard, Key
from hcard.server.vocabulary import Role

_HASHER = PasswordHasher()
MIN_PASSWORD_LENGTH = 8
#: argon2 hashes any length; a megabyte of password is an attack on the CPU, not a password
MAX_PASSWORD_LENGTH = 1024
USERNAME_MAX_CHARS = 80
#: checked when the user name is unknown, so the answer takes as long as for a wrong password
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


@dataclass(frozen=True)
class Staff:
    """The logged-in person a service acts for."""

    user_id: int
    username: str
    role: Role
    merchant_id: int | None

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            raise HCardError(Code.FORBIDDEN)

    def require_merchant_access(self, merchant_id: int) -> None:
        """Admin and marketing see every merchant; a merchant only their own."""
        if self.role == Role.MERCHANT and self.merchant_id != merchant_id:
            raise HCardError(Code.FORBIDDEN)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_user(
    ctx: Context,
    actor: Staff | None,
    username: str,
    password: str,
    role: Role | str,
    merchant_id: int | None = None,
) -> dict[str, object]:
    """Create a staff user; `actor` None only for `hcard-server init` (the first admin)."""
    if actor is not None:
        actor.require(Role.ADMIN)
    if role not in tuple(Role) or (role == Role.MERCHANT) != (merchant_id is not None):
        raise HCardError(Code.MALFORMED_REQUEST, field="role")
    role = Role(role)
    username = names.printable(username, field="username", max_chars=USERNAME_MAX_CHARS)
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise HCardError(Code.MALFORMED_REQUEST, field="password", min_length=MIN_PASSWORD_LENGTH)
    with db_engine.write(ctx.engine) as conn:
        if (
            merchant_id is not None
            and not conn.execute(
                sa.select(merchants.c.id).where(merchants.c.id == merchant_id)
            ).first()
        ):
            raise HCardError(Code.NOT_FOUND, what="merchant")
        if conn.execute(sa.select(users.c.id).where(users.c.username == username)).first():
            raise HCardError(Code.MALFORMED_REQUEST, field="username", reason="taken")
        user_id = conn.execute(
            sa.insert(users)
            .values(
                username=username,
                password_hash=_HASHER.hash(password),
                role=role,
                merchant_id=merchant_id,
                created_s=ctx.now(),
            )
            .returning(users.c.id)
        ).scalar_one()
    return {"id": user_id, "username": username, "role": role, "merchant_id": merchant_id}


def list_users(ctx: Context, actor: Staff) -> list[dict[str, object]]:
    actor.require(Role.ADMIN)
    with db_engine.read(ctx.engine) as conn:
        rows = conn.execute(
            sa.select(users.c.id, users.c.username, users.c.role, users.c.merchant_id).order_by(
                users.c.id
            )
        ).mappings()
        return [dict(row) for row in rows]


def _check_password(ctx: Context, username: str, password: str) -> AnyRow:
    """The active user with this name and password, else BAD_CREDENTIALS (in the same time
    whether the name exists or not; a name no user can have never reaches the database)."""
    row = None
    if len(username) <= USERNAME_MAX_CHARS and names.is_printable(username):
        with db_engine.read(ctx.engine) as conn:
            row = conn.execute(
                sa.select(users).where(users.c.username == username, users.c.active)
            ).first()
    try:
        _HASHER.verify(_DUMMY_HASH if row is None else row.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise HCardError(Code.BAD_CREDENTIALS) from None
    if row is None:
        raise HCardError(Code.BAD_CREDENTIALS)
    return row


def login(ctx: Context, username: str, password: str, address: str) -> dict[str, object]:
    """Check the password; return a new bearer token and who it belongs to.

    Wrong passwords are throttled per user name and per client `address`
    (`server/throttle.py`): past the limit the answer is TOO_MANY_ATTEMPTS, before
    argon2 runs, even for the right password, until the window has passed.
    """
    keys = (Key(Guard.LOGIN_USER, username.casefold()), Key(Guard.LOGIN_ADDRESS, address))
    with ctx.throttle.attempt(*keys, failed=lambda e: e.code is Code.BAD_CREDENTIALS):
        row = _check_password(ctx, username, password)
    token = secrets.token_urlsafe(32)
    with db_engine.write(ctx.engine) as conn:
        now = ctx.now()
        conn.execute(sa.delete(sessions).where(sessions.c.expires_s < now))
        conn.execute(
            sa.insert(sessions).values(
                token_sha256=_token_hash(token),
                user_id=row.id,
                expires_s=now + ctx.settings.session_ttl_s,
            )
        )
    return {
        "token": token,
        "user_id": row.id,
        "username": row.username,
        "role": row.role,
        "merchant_id": row.merchant_id,
        "expires_in_s": ctx.settings.session_ttl_s,
    }


def authenticate(ctx: Context, token: str) -> Staff:
    with db_engine.read(ctx.engine) as conn:
        row = conn.execute(
            sa.select(users.c.id, users.c.username, users.c.role, users.c.merchant_id)
            .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
            .where(
                sessions.c.token_sha256 == _token_hash(token),
                sessions.c.expires_s > ctx.now(),
                users.c.active,
            )
        ).first()
    if row is None:
        raise HCardError(Code.NOT_AUTHENTICATED)
    return Staff(
        user_id=row.id, username=row.username, role=Role(row.role), merchant_id=row.merchant_id
    )


def logout(ctx: Context, token: str) -> None:
    with db_engine.write(ctx.engine) as conn:
        conn.execute(sa.delete(sessions).where(sessions.c.token_sha256 == _token_hash(token)))
