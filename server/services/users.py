"""Staff users: argon2 passwords, roles, bearer tokens; and the permission checks.

Roles: `admin` (everything, including users and corrections), `marketing`
(merchants, terminals, cards, top-ups), `merchant` (reads only their own
merchant's data). Tokens are random; only their SHA-256 is stored, so a
leaked database does not leak a usable session.

Passwords (`check_password`): at least 12 characters besides the user name, not one of the
passwords people pick first. Length is what makes a password hard to guess; the short list
catches the few long ones every guesser tries first. Whenever a password changes, or a
user is deactivated, the sessions that knew the old state end (a stolen session does not
outlive the password it came from).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass

import argon2
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hcard.errors import Code, HCardError
from hcard.server import names
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import AnyRow, merchants, sessions, users
from hcard.server.throttle import Guard, Key
from hcard.server.vocabulary import PasswordHashCost, Role

#: argon2id hashers by cost (`Settings.password_hash_cost`); a hash names its own
#: parameters, so any of them verifies any hash
_HASHERS = {
    PasswordHashCost.STANDARD: PasswordHasher(),
    PasswordHashCost.TEST_ONLY: PasswordHasher.from_parameters(argon2.profiles.CHEAPEST),
}
MIN_PASSWORD_LENGTH = 12
#: argon2 hashes any length; a megabyte of password is an attack on the CPU, not a password
MAX_PASSWORD_LENGTH = 1024
USERNAME_MAX_CHARS = 80
#: fewer different characters than this is a pattern (`111111111111`, `abababababab`)
_MIN_DISTINCT_CHARS = 4
#: a user name at least this long does not count towards a password's length
_MIN_NAME_IN_PASSWORD = 3
#: long passwords guessers try first (lists of leaked passwords, the town's own words);
#: compared case-insensitively. Shorter ones are refused by their length already.
COMMON_PASSWORDS = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123456789000",
        "098765432109",
        "1q2w3e4r5t6z",
        "1q2w3e4r5t6y",
        "1qay2wsx3edc",
        "qwertz123456",
        "qwerty123456",
        "qwertzuiop12",
        "asdfghjkl123",
        "abc123456789",
        "abcdefghijkl",
        "passwort1234",
        "passwort12345",
        "passwort123!",
        "passwortpasswort",
        "password1234",
        "password12345",
        "password123!",
        "passwordpassword",
        "passwort2024",
        "passwort2025",
        "passwort2026",
        "password2025",
        "password2026",
        "willkommen123",
        "willkommen1234",
        "welcome12345",
        "hallo1234567",
        "geheim123456",
        "geheimgeheim",
        "changeme1234",
        "letmein12345",
        "iloveyou1234",
        "ichliebedich1",
        "administrator",
        "administrator1",
        "adminadmin123",
        "hattingen123",
        "hattingen1234",
        "hattingen2025",
        "hattingen2026",
        "hattingencard",
        "hattingen-card",
        "hattingenkarte",
        "stadtmarketing",
        "stadtmarketing1",
        "gutscheinkarte",
        "gutschein1234",
        "ruhrgebiet123",
        "schalke04schalke",
        "borussia1909",
    }
)


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


def _hasher(ctx: Context) -> PasswordHasher:
    return _HASHERS[ctx.settings.password_hash_cost]


@functools.cache
def dummy_hash(cost: PasswordHashCost) -> str:
    """Checked when the user name is unknown, so the answer takes as long as for a wrong
    password. Made once per process when first needed (the server makes it before it
    serves: its first unknown name would take a hash longer), not at import, which every
    command of the CLI would pay for with a whole argon2 hash."""
    return _HASHERS[cost].hash("not a password of anyone")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_password(username: str, password: str) -> None:
    """PASSWORD_TOO_WEAK unless the password is long enough without the user name in it,
    is not a pattern and not a common password; MALFORMED_REQUEST when absurdly long."""
    if len(password) > MAX_PASSWORD_LENGTH:
        raise HCardError(Code.MALFORMED_REQUEST, field="password", max_length=MAX_PASSWORD_LENGTH)
    folded = password.casefold()
    name = username.strip().casefold()
    # the user name adds nothing a guesser does not know (a name of one or two letters
    # is no word of the password)
    rest = folded.replace(name, "") if len(name) >= _MIN_NAME_IN_PASSWORD else folded
    if (
        len(rest) < MIN_PASSWORD_LENGTH
        or len(set(folded)) < _MIN_DISTINCT_CHARS
        or folded in COMMON_PASSWORDS
    ):
        raise HCardError(Code.PASSWORD_TOO_WEAK, min_length=MIN_PASSWORD_LENGTH)


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
    role = _checked_role(role, merchant_id)
    username = names.printable(username, field="username", max_chars=USERNAME_MAX_CHARS)
    check_password(username, password)
    with db_engine.write(ctx.engine) as conn:
        _check_merchant(conn, merchant_id)
        if conn.execute(sa.select(users.c.id).where(users.c.username == username)).first():
            raise HCardError(Code.USERNAME_TAKEN, field="username")
        user_id = conn.execute(
            sa.insert(users)
            .values(
                username=username,
                password_hash=_hasher(ctx).hash(password),
                role=role,
                merchant_id=merchant_id,
                created_s=ctx.now(),
            )
            .returning(users.c.id)
        ).scalar_one()
    return {"id": user_id, "username": username, "role": role, "merchant_id": merchant_id}


def _check_merchant(conn: sa.Connection, merchant_id: int | None) -> None:
    """NOT_FOUND for a merchant id that names no merchant (None: no merchant asked for)."""
    if (
        merchant_id is not None
        and not conn.execute(sa.select(merchants.c.id).where(merchants.c.id == merchant_id)).first()
    ):
        raise HCardError(Code.NOT_FOUND, what="merchant")


def _checked_role(role: Role | str, merchant_id: int | None) -> Role:
    """A role that exists, with a merchant exactly when it is the merchant role."""
    if role not in tuple(Role) or (role == Role.MERCHANT) != (merchant_id is not None):
        raise HCardError(Code.MALFORMED_REQUEST, field="role")
    return Role(role)


_USER_QUERY = sa.select(
    users.c.id,
    users.c.username,
    users.c.role,
    users.c.merchant_id,
    users.c.active,
    users.c.created_s,
    merchants.c.name.label("merchant_name"),
).select_from(users.outerjoin(merchants, merchants.c.id == users.c.merchant_id))


def list_users(ctx: Context, actor: Staff) -> list[dict[str, object]]:
    """Every user with their merchant's name (merchant logins), active ones first."""
    actor.require(Role.ADMIN)
    with db_engine.read(ctx.engine) as conn:
        rows = conn.execute(_USER_QUERY.order_by(users.c.active.desc(), users.c.id)).mappings()
        return [dict(row) for row in rows]


def get_user(ctx: Context, actor: Staff, user_id: int) -> dict[str, object]:
    """One user as `list_users` shows them."""
    actor.require(Role.ADMIN)
    with db_engine.read(ctx.engine) as conn:
        row = conn.execute(_USER_QUERY.where(users.c.id == user_id)).mappings().first()
    if row is None:
        raise HCardError(Code.NOT_FOUND, what="user")
    return dict(row)


def _user_row(conn: sa.Connection, user_id: int) -> AnyRow:
    row = conn.execute(sa.select(users.c.id, users.c.username).where(users.c.id == user_id)).first()
    if row is None:
        raise HCardError(Code.NOT_FOUND, what="user")
    return row


def _end_sessions(conn: sa.Connection, user_id: int, keep_token: str = "") -> int:
    """End the user's sessions but the one of `keep_token` (none kept when empty)."""
    query = sa.delete(sessions).where(sessions.c.user_id == user_id)
    if keep_token:
        query = query.where(sessions.c.token_sha256 != _token_hash(keep_token))
    return int(conn.execute(query).rowcount)


def _not_self(actor: Staff, user_id: int) -> None:
    """An admin who locked themself out (or took away their own admin role) might leave
    the scheme without one: another admin does that. Their own password they change with
    the current one (`change_own_password`)."""
    if actor.user_id == user_id:
        raise HCardError(Code.OWN_ACCOUNT)


def change_role(
    ctx: Context, actor: Staff, user_id: int, role: Role | str, merchant_id: int | None = None
) -> dict[str, object]:
    """Give another user a new role (and their merchant, for the merchant role). It holds
    from their next request: every request reads the role afresh."""
    actor.require(Role.ADMIN)
    role = _checked_role(role, merchant_id)
    _not_self(actor, user_id)
    with db_engine.write(ctx.engine) as conn:
        row = _user_row(conn, user_id)
        _check_merchant(conn, merchant_id)
        conn.execute(
            sa.update(users).where(users.c.id == user_id).values(role=role, merchant_id=merchant_id)
        )
    return {"id": user_id, "username": row.username, "role": role, "merchant_id": merchant_id}


def set_active(ctx: Context, actor: Staff, user_id: int, active: bool) -> dict[str, object]:
    """Deactivate another user (their sessions end at once, their login is refused) or
    let them in again. The user stays, with their name in the audit log and the ledger."""
    actor.require(Role.ADMIN)
    _not_self(actor, user_id)
    with db_engine.write(ctx.engine) as conn:
        row = _user_row(conn, user_id)
        conn.execute(sa.update(users).where(users.c.id == user_id).values(active=active))
        ended = 0 if active else _end_sessions(conn, user_id)
    return {"id": user_id, "username": row.username, "active": active, "sessions_ended": ended}


def set_password(ctx: Context, actor: Staff, user_id: int, password: str) -> dict[str, object]:
    """An admin sets another user's new password (forgotten, or given away); the user's
    sessions end. Their own password an admin changes with the current one
    (`change_own_password`): a session left open must not be enough to take the account
    (OWN_ACCOUNT)."""
    actor.require(Role.ADMIN)
    _not_self(actor, user_id)
    with db_engine.read(ctx.engine) as conn:
        row = _user_row(conn, user_id)
    check_password(row.username, password)
    new_hash = _hasher(ctx).hash(password)
    with db_engine.write(ctx.engine) as conn:
        conn.execute(sa.update(users).where(users.c.id == user_id).values(password_hash=new_hash))
        ended = _end_sessions(conn, user_id)
    return {"id": user_id, "username": row.username, "sessions_ended": ended}


def change_own_password(
    ctx: Context, actor: Staff, token: str, old_password: str, new_password: str
) -> dict[str, object]:
    """Anyone changes their own password with the old one; every other session of theirs
    ends (this one stays). Wrong old passwords count against the user like wrong logins."""
    key = Key(Guard.LOGIN_USER, actor.username.casefold())
    with ctx.throttle.attempt(key, failed=lambda e: e.code is Code.BAD_CREDENTIALS):
        _check_password(ctx, actor.username, old_password)
    check_password(actor.username, new_password)
    new_hash = _hasher(ctx).hash(new_password)
    with db_engine.write(ctx.engine) as conn:
        conn.execute(
            sa.update(users).where(users.c.id == actor.user_id).values(password_hash=new_hash)
        )
        ended = _end_sessions(conn, actor.user_id, keep_token=token)
    return {"sessions_ended": ended}


def logout_everywhere(ctx: Context, actor: Staff) -> int:
    """End every session of the user, this one too (a phone left logged in somewhere)."""
    with db_engine.write(ctx.engine) as conn:
        return _end_sessions(conn, actor.user_id)


def session_info(ctx: Context, actor: Staff, token: str) -> dict[str, object]:
    """When this session ends, and how many sessions the user has open (this one too)."""
    now = ctx.now()
    with db_engine.read(ctx.engine) as conn:
        expires_s = conn.execute(
            sa.select(sessions.c.expires_s).where(sessions.c.token_sha256 == _token_hash(token))
        ).scalar_one_or_none()
        count = conn.execute(
            sa.select(sa.func.count())
            .select_from(sessions)
            .where(sessions.c.user_id == actor.user_id, sessions.c.expires_s > now)
        ).scalar_one()
    return {"expires_s": expires_s, "sessions": int(count), "ttl_s": ctx.settings.session_ttl_s}


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
        hasher = _hasher(ctx)
        hasher.verify(
            dummy_hash(ctx.settings.password_hash_cost) if row is None else row.password_hash,
            password,
        )
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
    # a hash made at another cost (an older server's, or a test-only one) is made anew at
    # this server's, with the password now at hand: no weak hash outlives a login
    rehashed = (
        _hasher(ctx).hash(password) if _hasher(ctx).check_needs_rehash(row.password_hash) else None
    )
    with db_engine.write(ctx.engine) as conn:
        now = ctx.now()
        if rehashed is not None:
            conn.execute(
                sa.update(users)
                .where(users.c.id == row.id, users.c.password_hash == row.password_hash)
                .values(password_hash=rehashed)
            )
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
    with db_engine.read_statement(ctx.engine) as conn:
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
