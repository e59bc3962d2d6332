"""Schemathesis as nobody: the public operations in full, every other one without (or
with generated) credentials, which it must refuse as described."""

from __future__ import annotations

import schemathesis
from api.fuzzing import (
    HYPOTHESIS,
    QUICK,
    Town,
    assert_money_unchanged,
    protected_schema,
    public_schema,
)

public = public_schema()
protected = protected_schema()


@public.parametrize()
@HYPOTHESIS
def test_public_operations(case: schemathesis.Case, town: Town) -> None:
    town.call(case)


@protected.parametrize()
@QUICK
def test_protected_operations_refuse_nobody(case: schemathesis.Case, town: Town) -> None:
    response = town.call(case)
    assert response.status_code in (400, 401, 405), response.text


def test_no_money_changed(town: Town) -> None:
    assert_money_unchanged(town)
