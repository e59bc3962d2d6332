"""Schemathesis as nobody: every operation, with no credentials (or generated ones)."""

from __future__ import annotations

import schemathesis
from api.fuzzing import CHECKS, HYPOTHESIS, Town, assert_money_unchanged, load_schema

schema = load_schema()


@schema.parametrize()
@HYPOTHESIS
def test_every_operation_as_nobody(case: schemathesis.Case, town: Town) -> None:
    case.call_and_validate(base_url=town.server.url, checks=CHECKS)


def test_no_money_changed(town: Town) -> None:
    assert_money_unchanged(town)
