"""Schemathesis as nobody and as a till, against one server.

As nobody: the public operations in full, every other one without (or with generated)
credentials, which it must refuse as described. As a till: every signed operation, each
request signed as the till signs it (`fuzzing.signature_for`)."""

from __future__ import annotations

import schemathesis
from api.fuzzing import (
    HYPOTHESIS,
    QUICK,
    Town,
    assert_money_unchanged,
    protected_schema,
    public_schema,
    signature_for,
    terminal_schema,
)

public = public_schema()
protected = protected_schema()
signed = terminal_schema()


@public.parametrize()
@HYPOTHESIS
def test_public_operations(case: schemathesis.Case, town: Town) -> None:
    town.call(case, "nobody")


@protected.parametrize()
@QUICK
def test_protected_operations_refuse_nobody(case: schemathesis.Case, town: Town) -> None:
    response = town.call(case, "nobody")
    assert response.status_code in (400, 401, 405), response.text


@signed.parametrize()
@HYPOTHESIS
def test_every_signed_operation_as_a_till(case: schemathesis.Case, town: Town) -> None:
    signature = signature_for(case, town.terminal)
    response = town.call(case, "till", auth=signature)
    if signature is not None and response.status_code == 401:
        # signed as the till signs: never refused at the door (a record's own signature
        # inside an authorise body is another matter: 401 bad_signature, "record signature")
        reason = response.json().get("details", {}).get("reason")
        assert reason == "record signature", response.text


def test_the_till_got_past_the_signature(town: Town) -> None:
    town.got_past("till")


def test_what_the_fuzzer_cannot_reach_answers_as_described(town: Town) -> None:
    """An approved payment, its repetition and its sync (twice): the fuzzer cannot sign a
    record (the records are the till's own), so these answers are checked here, and the
    payment is booked once (the money check below counts it in)."""
    assert_money_unchanged(town)  # the fuzzing before
    number, uid = town.server.new_card(1_000)
    payment = town.terminal.payment(number, uid, 250, counter=1, purse_cents=1_000)
    authorise = signed["/v1/terminal/authorise"]["POST"]
    for _ in range(2):
        answered = town.terminal.authorise(payment)
        assert answered.json()["outcome"] == "approved", answered.text
        authorise.validate_response(answered)
    booked = town.money()
    for status in ("applied", "already_applied"):
        synced = town.terminal.sync([*town.payments, payment])
        assert {result["status"] for result in synced.json()["results"]} == {status}
        signed["/v1/terminal/sync"]["POST"].validate_response(synced)
    assert town.money() == booked  # an online payment is booked at authorisation, once
    town.money_before = town.money()


def test_no_money_changed(town: Town) -> None:
    assert_money_unchanged(town)
