"""Schemathesis as the admin role: every staff and accounting operation."""

from __future__ import annotations

import schemathesis
from api.fuzzing import HYPOTHESIS, Town, assert_money_unchanged, bearer, staff_schema

from hcard.server.vocabulary import Role

schema = staff_schema()


@schema.parametrize()
@HYPOTHESIS
def test_every_staff_operation_as_admin(case: schemathesis.Case, town: Town) -> None:
    town.call(case, Role.ADMIN, headers=bearer(town, Role.ADMIN))


def test_the_run_got_past_the_login(town: Town) -> None:
    town.got_past(Role.ADMIN)


def test_no_money_changed(town: Town) -> None:
    assert_money_unchanged(town)
