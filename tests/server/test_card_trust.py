"""What a till may take from the server's balance of a card (`services/trust.py`), on SQLite
and PostgreSQL: the snapshot carries the card's trusted counter (every purse write up to it
known) beside the highest seen, and other tills' unconfirmed top-ups are left out of the
balances they get (the simulation's finding `purse_above_ledger`)."""

from __future__ import annotations

from typing import Any

import pytest
from fixtures.server import ApiError

from hcard.encoding import canonical_bytes
from hcard.server.services.trust import CardTrust


def _card(till: Any, number: str) -> tuple[int, int, int]:
    """The card's snapshot entry as (balance, highest counter seen, trusted counter)."""
    known = till.snapshot(0).json()["snapshot"]["balances"][number]
    return (known["balance_cents"], known["counter"], known["trusted_counter"])


def _sync(till: Any, records: list[Any], shown: list[Any]) -> None:
    answer = till.sync(records, shown=[record.seq for record in shown])
    assert answer.status_code == 200, answer.text
    assert [r["status"] for r in answer.json()["results"]] == ["applied"] * len(records)


def test_an_online_payment_past_an_unsynced_offline_one_is_not_trusted(server):
    """Till A pays offline with counter 1 and does not sync; till B pays online with counter 2.
    The server's balance lacks A's payment, so its counter must not cover the card's 2."""
    number, uid = server.new_card(1_000)
    a, b = server.terminal(name="A"), server.terminal(name="B")
    offline = a.payment(number, uid, 300, mode="offline", counter=1, purse_cents=700)
    online = b.payment(number, uid, 100, counter=2, purse_cents=600)
    answer = b.authorise(online).json()
    # the server does not know A's payment: its balance is 900, the purse 600
    assert (answer["outcome"], answer["balance_cents"]) == ("approved", 900)
    _sync(b, [online], [online])
    assert _card(b, number) == (900, 2, 0)
    _sync(a, [offline], [offline])
    assert _card(a, number) == (600, 2, 2)


def test_only_writes_the_till_showed_count(server):
    """A payment the till cancelled (its write may not be on the card) leaves a gap."""
    number, uid = server.new_card(1_000)
    till = server.terminal()
    first = till.payment(number, uid, 100, mode="offline", counter=1, purse_cents=900)
    second = till.payment(number, uid, 100, mode="offline", counter=2, purse_cents=800)
    void = till.record("void", {"card": number, "voids_seq": second.seq, "amount_cents": 100})
    _sync(till, [first, second, void], [first])
    assert _card(till, number) == (900, 2, 1)
    third = till.payment(number, uid, 100, mode="offline", counter=3, purse_cents=800)
    _sync(till, [third], [third])
    assert _card(till, number) == (800, 3, 1)  # counter 2 may be on the card: unknown


def test_a_batch_that_closes_a_gap_follows_the_writes_stored_above_it(server):
    """Till B's writes 2 and 3 wait behind till A's unsynced 1; A's sync closes the gap."""
    number, uid = server.new_card(1_000)
    a, b = server.terminal(name="A"), server.terminal(name="B")
    first = a.payment(number, uid, 100, mode="offline", counter=1, purse_cents=900)
    later = [
        b.payment(number, uid, 100, mode="offline", counter=c, purse_cents=900 - 100 * (c - 1))
        for c in (2, 3)
    ]
    _sync(b, later, later)
    assert _card(b, number) == (800, 3, 0)
    _sync(a, [first], [first])
    assert _card(a, number) == (700, 3, 3)


def test_a_closed_gap_is_followed_through_shown_writes_only(server):
    """Till X cancelled its write 2 (it may or may not be on the card) and showed 3; till A's
    1 closes the gap below 2, not the one at 2."""
    number, uid = server.new_card(1_000)
    x, a = server.terminal(name="X"), server.terminal(name="A")
    cancelled = x.payment(number, uid, 100, mode="offline", counter=2, purse_cents=800)
    void = x.record("void", {"card": number, "voids_seq": cancelled.seq, "amount_cents": 100})
    third = x.payment(number, uid, 100, mode="offline", counter=3, purse_cents=800)
    _sync(x, [cancelled, void, third], [third])
    first = a.payment(number, uid, 100, mode="offline", counter=1, purse_cents=900)
    _sync(a, [first], [first])
    assert _card(a, number) == (800, 3, 1)


def test_an_online_payment_the_till_did_not_show_moves_nothing(server):
    number, uid = server.new_card(1_000)
    till = server.terminal()
    unshown = till.payment(number, uid, 100, counter=1, purse_cents=900)
    assert till.authorise(unshown).json()["outcome"] == "approved"
    _sync(till, [unshown], [])
    assert _card(till, number) == (900, 1, 0)


def test_another_tills_unconfirmed_topup_is_left_out(server):
    """Till T's top-up is approved; until T's sync shows it, the other tills get the card's
    balance without it and may not spend it (its card write may have been torn, and T
    voids it then)."""
    number, uid = server.new_card(1_000)
    t, other = server.terminal(name="T"), server.terminal(name="other")
    topup = t.record("topup_request", {"card": number, "amount_cents": 500})
    assert t.authorise(topup).json() == {
        "seq": topup.seq,
        "outcome": "approved",
        "code": None,
        "balance_cents": 1_500,  # T's own: T knows whether it showed it
        "available_cents": 1_500,
    }
    assert _card(other, number)[0] == 1_000
    assert _card(t, number)[0] == 1_500
    # the snapshot names it by till for the others (an offline purse T wrote), not for T
    assert other.snapshot(0).json()["snapshot"]["balances"][number]["pending_topups"] == [
        {"terminal_id": t.terminal_id, "counter": None, "amount_cents": 500}
    ]
    assert "pending_topups" not in t.snapshot(0).json()["snapshot"]["balances"][number]
    too_much = other.payment(number, uid, 1_200, counter=1, purse_cents=-200)
    answer = other.authorise(too_much).json()
    assert (answer["code"], answer["available_cents"]) == ("insufficient_funds", 1_000)
    pay = other.payment(number, uid, 200, counter=1, purse_cents=800)
    answer = other.authorise(pay).json()
    assert (answer["outcome"], answer["balance_cents"], answer["available_cents"]) == (
        "approved",
        800,
        800,
    )
    # ... and names it by till: a purse T wrote may hold it, and the other till leaves it
    # out of that purse too (`pending_in_purse_cents`)
    assert answer["pending_topups"] == [
        {"terminal_id": t.terminal_id, "counter": None, "amount_cents": 500}
    ]
    version = other.snapshot(0).json()["snapshot"]["version"]
    _sync(t, [topup], [topup])
    confirmed = other.payment(number, uid, 100, counter=2, purse_cents=1_200)
    assert "pending_topups" not in other.authorise(confirmed).json()
    assert _card(other, number)[0] == 1_200
    # confirming the top-up changed what the other tills get: it is in their next delta
    delta = other.snapshot(version).json()["snapshot"]
    assert delta["balances"][number]["balance_cents"] == 1_200
    assert "pending_topups" not in delta["balances"][number]


def test_a_voided_topup_is_no_longer_pending(server):
    number, _uid = server.new_card(1_000)
    t, other = server.terminal(name="T"), server.terminal(name="other")
    topup = t.record("topup_request", {"card": number, "amount_cents": 500})
    assert t.authorise(topup).json()["outcome"] == "approved"
    void = t.record("void", {"card": number, "voids_seq": topup.seq, "amount_cents": 500})
    _sync(t, [topup, void], [])
    assert _card(other, number)[0] == 1_000
    assert _card(t, number)[0] == 1_000
    assert server.staff.card(number)["balance_cents"] == 1_000


def test_a_voided_topups_write_is_still_named_after_the_void(server):
    """T's top-up write (counter 3) may have landed although T voided the top-up (the card
    pulled away as it finished): the other tills still get it in `pending_topups`, with its
    counter, after the void, so a purse T wrote there is taken without it. It stays named
    after the card moved on: it matches only T's purse at 3, which T never writes again."""
    number, uid = server.new_card(1_000)
    t, other = server.terminal(name="T"), server.terminal(name="other")
    topup = t.record("topup_request", {"card": number, "amount_cents": 500})
    assert t.authorise(topup, write_counter=3).json()["outcome"] == "approved"
    void = t.record("void", {"card": number, "voids_seq": topup.seq, "amount_cents": 500})
    _sync(t, [topup, void], [])
    named = [{"terminal_id": t.terminal_id, "counter": 3, "amount_cents": 500}]
    assert _card(other, number)[0] == 1_000  # out of the balance: voided
    assert other.snapshot(0).json()["snapshot"]["balances"][number]["pending_topups"] == named
    pay = other.payment(number, uid, 100, counter=2, purse_cents=900)
    assert other.authorise(pay).json()["pending_topups"] == named  # 2: still below 3
    after = other.payment(number, uid, 100, counter=4, purse_cents=800)
    assert other.authorise(after).json()["pending_topups"] == named
    _sync(other, [pay, after], [pay, after])  # the card holds the write at 4 now
    assert other.snapshot(0).json()["snapshot"]["balances"][number]["pending_topups"] == named
    assert _card(other, number)[0] == 800  # the balance never counted it again
    assert (
        t.authorise(
            t.record("topup_request", {"card": number, "amount_cents": 100}), write_counter=1
        ).json()["outcome"]
        == "approved"
    )
    # the authorise request's counter: a top-up's only, a counter a purse can carry
    for bad in ({"counter": 0}, {"counter": "3"}, {"counter": True}):
        record = t.record("topup_request", {"card": number, "amount_cents": 100})
        body = canonical_bytes({"record": record.to_wire(), **bad})
        refused = t.signed("POST", "/v1/terminal/authorise", body)
        assert (refused.status_code, refused.json()["code"]) == (400, "malformed_request")
    payment = other.payment(number, uid, 100, counter=5, purse_cents=600)
    body = canonical_bytes({"record": payment.to_wire(), "counter": 5})
    refused = other.signed("POST", "/v1/terminal/authorise", body)
    assert (refused.status_code, refused.json()["code"]) == (400, "malformed_request")


def test_the_trusted_counter_walks_the_writes_without_a_gap():
    trust = CardTrust(trusted=3)
    trust.wrote(4)
    trust.wrote(6)
    assert trust.advance() == 4
    assert trust.advance(stored=[5, 7]) == 7
    assert CardTrust(trusted=9).advance(stored=[3, 4]) == 9  # never down


def test_a_card_with_a_pending_topup_is_not_replaced_until_it_is_confirmed(server):
    """Its till may still void the top-up: the new card would keep money never paid."""
    number, _uid = server.new_card(1_000)
    new_number, _new_uid = server.new_card(0)
    t = server.terminal(name="T")
    topup = t.record("topup_request", {"card": number, "amount_cents": 500})
    assert t.authorise(topup).json()["outcome"] == "approved"
    with pytest.raises(ApiError) as refused:
        server.staff.transfer(number, new_number)
    assert (refused.value.status, refused.value.code) == (409, "topup_pending")
    assert server.staff.card(number)["blocked"] is False
    _sync(t, [topup], [topup])
    assert server.staff.transfer(number, new_number)["amount_cents"] == 1_500
