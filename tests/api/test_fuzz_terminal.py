"""Schemathesis as a till: every signed operation, each request signed as the till signs."""

from __future__ import annotations

import schemathesis
from api.fuzzing import (
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
    signature = signature_for(case, town.terminal)
    response = town.call(case, auth=signature)
    if signature is not None and response.status_code == 401:
        # signed as the till signs: never refused at the door (a record's own signature
        # inside an authorise body is another matter: 401 bad_signature, "record signature")
        reason = response.json().get("details", {}).get("reason")
        assert reason == "record signature", response.text


def test_the_run_got_past_the_signature(town: Town) -> None:
    town.got_past(401)


def test_no_money_changed(town: Town) -> None:
    assert_money_unchanged(town)
