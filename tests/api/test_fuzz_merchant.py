"""Schemathesis as the merchant role: every staff and accounting operation, quickly (the
handlers are the admin run's, which has the coverage phase; here each must answer this
role as described: its own data, or 403)."""

from __future__ import annotations

import schemathesis
from api.fuzzing import QUICK, Town, assert_money_unchanged, bearer, staff_schema

from hcard.server.vocabulary import Role

schema = staff_schema(coverage=False)


@schema.parametrize()
@QUICK
def test_every_staff_operation_as_merchant(case: schemathesis.Case, town: Town) -> None:
    town.call(case, headers=bearer(town, Role.MERCHANT))


def test_the_run_got_past_the_login(town: Town) -> None:
    town.got_past(401)


def test_no_money_changed(town: Town) -> None:
    assert_money_unchanged(town)
