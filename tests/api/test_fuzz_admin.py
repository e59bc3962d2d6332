"""Schemathesis as the admin role: every staff and accounting operation."""

from __future__ import annotations

import schemathesis
from api.fuzzing import CHECKS, HYPOTHESIS, Town, assert_money_unchanged, bearer, staff_schema

from hcard.server.vocabulary import Role

schema = staff_schema()


@schema.parametrize()
@HYPOTHESIS
def test_every_staff_operation_as_admin(case: schemathesis.Case, town: Town) -> None:
    case.call_and_validate(
        base_url=town.server.url, checks=CHECKS, headers=bearer(town, Role.ADMIN)
    )


def test_no_money_changed(town: Town) -> None:
    assert_money_unchanged(town)
