"""Schemathesis as the marketing and the merchant role: every staff and accounting
operation, quickly (the handlers are the admin run's, which has the coverage phase; here
each must answer the role as described: what it may see, or 403)."""

from __future__ import annotations

import pytest
import schemathesis
from api.fuzzing import QUICK, Town, assert_money_unchanged, bearer, staff_schema

from hcard.server.vocabulary import Role

schema = staff_schema(coverage=False)


@schema.parametrize()
@QUICK
def test_every_staff_operation_as_marketing(case: schemathesis.Case, town: Town) -> None:
    town.call(case, Role.MARKETING, headers=bearer(town, Role.MARKETING))


@schema.parametrize()
@QUICK
def test_every_staff_operation_as_merchant(case: schemathesis.Case, town: Town) -> None:
    town.call(case, Role.MERCHANT, headers=bearer(town, Role.MERCHANT))


@pytest.mark.parametrize("role", [Role.MARKETING, Role.MERCHANT])
def test_the_run_got_past_the_login(town: Town, role: Role) -> None:
    town.got_past(role)


def test_no_money_changed(town: Town) -> None:
    assert_money_unchanged(town)
