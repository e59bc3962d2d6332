"""Schemathesis as a till: every signed operation, each request signed as the till signs."""

from __future__ import annotations

import schemathesis
from api.fuzzing import (
    CHECKS,
    HYPOTHESIS,
    Town,
    assert_money_unchanged,
    signature_for,
    terminal_schema,
)

schema = terminal_schema()


@schema.parametrize()
@HYPOTHESIS
def test_every_signed_operation_as_a_till(case: schemathesis.Case, town: Town) -> None:
    case.call_and_validate(
        base_url=town.server.url, checks=CHECKS, auth=signature_for(case, town.terminal)
    )


def test_no_money_changed(town: Town) -> None:
    assert_money_unchanged(town)
