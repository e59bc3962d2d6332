"""The password hash's cost (`HCARD_PASSWORD_HASH_COST`): a login with a hash made at another
cost than the server's makes it anew at the server's, so no cheap hash outlives a login."""

from __future__ import annotations

import dataclasses

import argon2
import sqlalchemy as sa

from hcard.server.context import Context
from hcard.server.db.tables import users
from hcard.server.services import users as staff_users
from hcard.server.settings import Settings
from hcard.server.vocabulary import PasswordHashCost

PASSWORD = "Untermarkt-Schreibtisch"


def _stored(ctx: Context) -> argon2.Parameters:
    with ctx.engine.connect() as conn:
        stored = conn.execute(sa.select(users.c.password_hash)).scalar_one()
    return argon2.extract_parameters(stored)


def test_a_hash_of_another_cost_is_made_anew_at_login(tmp_path):
    settings = Settings.build(tmp_path, f"sqlite:///{tmp_path / 'hcard.db'}")
    cheap = Context.open(
        dataclasses.replace(settings, password_hash_cost=PasswordHashCost.TEST_ONLY),
        create_key=True,
    )
    staff_users.create_user(cheap, None, "buero", PASSWORD, "admin")
    assert _stored(cheap) == argon2.profiles.CHEAPEST
    cheap.engine.dispose()

    standard = Context.open(
        dataclasses.replace(settings, password_hash_cost=PasswordHashCost.STANDARD)
    )
    try:
        assert staff_users.login(standard, "buero", PASSWORD, "192.0.2.1")["username"] == "buero"
        assert _stored(standard) == argon2.profiles.RFC_9106_LOW_MEMORY
        # the new hash is the same password's: the next login takes it as it is
        staff_users.login(standard, "buero", PASSWORD, "192.0.2.1")
        assert _stored(standard) == argon2.profiles.RFC_9106_LOW_MEMORY
    finally:
        standard.engine.dispose()
