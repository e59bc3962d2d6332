"""What the server books for each kind of record and staff action, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fixtures.server import ApiError

from hcard import keys, signed


def statuses(response):
    assert response.status_code == 200, response.text
    return [(r["status"], r["code"]) for r in response.json()["results"]]


def test_issue_is_idempotent_per_uid_and_signed(server):
    uid = "04a1b2c3d4e5f6"
    number, sig = server.staff.issue_card(uid)
    assert server.staff.issue_card(uid) == (number, sig)
    issuer = keys.public_from_hex(server.issuer_public_key)
    assert signed.card_signature_ok(issuer, number, bytes.fromhex(uid), bytes.fromhex(sig))
    assert server.staff.card(number)["uid"] == uid
    issued = server.staff.call("POST", "/v1/cards", json={"uid": uid})
    assert (issued["created"], issued["balance_url"]) == (
        False,
        f"https://karte.hattingen.de/c/{number}",
    )


def test_reserved_numbers_are_bound_once(server):
    first, second = server.staff.reserve_cards(2)
    assert int(second[4:15]) == int(first[4:15]) + 1
    number, _sig = server.staff.issue_card("04000000000a01", first)
    assert number == first
    with pytest.raises(ApiError) as refused:
        server.staff.issue_card("04000000000a02", first)
    assert refused.value.code == "card_already_exists"
    with pytest.raises(ApiError) as refused:
        server.staff.topup(second, 100)  # reserved, not yet written
    assert refused.value.code == "card_not_issued"


def test_offline_overdraw_is_booked_flagged_and_deny_listed(server):
    card, uid = server.new_card(1_000)
    till = server.terminal()
    version = till.snapshot(0).json()["snapshot"]["version"]
    records = [till.payment(card, uid, 600, mode="offline", counter=c) for c in (1, 2)]
    shown = [record.seq for record in records]
    assert statuses(till.sync(records, shown=shown)) == [("applied", None), ("applied", None)]
    state = server.staff.card(card)
    assert (state["balance_cents"], state["flagged"], state["denied"]) == (-200, True, True)
    assert state["flag_reason"] == "overdraw"
    change = till.snapshot(version).json()["snapshot"]
    assert card in change["deny_add"]
    assert change["balances"][card] == {"balance_cents": -200, "counter": 2, "trusted_counter": 2}
    assert any(a["kind"] == "overdraw" and a["card"] == card for a in server.staff.alerts())
    # online payments are declined while flagged; a top-up and unblock clear it
    declined = till.authorise(till.payment(card, uid, 1, counter=3)).json()
    assert declined["code"] == "card_blocked"
    server.staff.unblock(card)
    server.staff.topup(card, 1_000)
    assert server.staff.card(card)["balance_cents"] == 800
    assert server.staff.ledger_check()["ok"]


def test_counter_rollback_is_alerted_and_deny_listed(server):
    card, uid = server.new_card(5_000)
    first, second = server.terminal(), server.terminal()
    a = first.payment(card, uid, 100, mode="offline", counter=7)
    b = second.payment(card, uid, 100, mode="offline", counter=7)  # restored memory
    assert statuses(first.sync([a])) == [("applied", None)]
    assert statuses(second.sync([b])) == [("applied", None)]  # the merchant was promised it
    state = server.staff.card(card)
    assert state["balance_cents"] == 4_800
    assert (state["flagged"], state["flag_reason"]) == (True, "card_rollback")
    assert any(a["kind"] == "card_rollback" and a["card"] == card for a in server.staff.alerts())


def test_offline_payment_from_a_foreign_tag_is_booked_flagged_and_alerted(server):
    card, uid = server.new_card(5_000)
    till = server.terminal()
    foreign = "04ffffffffffff" if uid != "04ffffffffffff" else "04fffffffffffe"
    online = till.payment(card, foreign, 100, counter=1)
    assert till.authorise(online).json()["code"] == "card_copied"
    offline = till.payment(card, foreign, 100, mode="offline", counter=1)
    assert statuses(till.sync([online, offline])) == [("applied", None), ("applied", None)]
    state = server.staff.card(card)
    assert state["balance_cents"] == 4_900  # the merchant was promised it
    assert (state["flagged"], state["flag_reason"], state["denied"]) == (True, "card_copied", True)
    alerts = [a for a in server.staff.alerts() if a["card"] == card]
    assert [(a["kind"], a["seq"]) for a in alerts] == [("card_copied", offline.seq)]
    assert server.staff.ledger_check()["ok"]


def test_declined_online_counter_is_no_rollback(server):
    card, uid = server.new_card(100)
    first, second = server.terminal(), server.terminal()
    declined = first.payment(card, uid, 500, counter=4)  # never written to the card
    assert first.authorise(declined).json()["code"] == "insufficient_funds"
    assert statuses(first.sync([declined])) == [("applied", None)]
    offline = second.payment(card, uid, 50, mode="offline", counter=4)  # the card's next write
    assert statuses(second.sync([offline])) == [("applied", None)]
    state = server.staff.card(card)
    assert (state["balance_cents"], state["flagged"], state["counter"]) == (50, False, 4)


@pytest.mark.parametrize("void_alone", [False, True], ids=["void-in-batch", "void-earlier"])
def test_voided_payment_counter_is_no_rollback(server, void_alone):
    """A till voids its approved payment when the card write failed: the card still holds the
    counter before it, so the next payment (at another till) honestly uses that counter."""
    card, uid = server.new_card(5_000)
    first, second = server.terminal(), server.terminal()
    pay = first.payment(card, uid, 300, counter=6)
    assert first.authorise(pay).json()["outcome"] == "approved"
    void = first.record("void", {"card": card, "voids_seq": pay.seq, "amount_cents": 300})
    if void_alone:
        assert statuses(first.sync([pay])) == [("applied", None)]
        assert statuses(first.sync([void])) == [("applied", None)]
    else:
        assert statuses(first.sync([pay, void])) == [("applied", None), ("applied", None)]
    # the counter moves on all the same: a void of a shown payment follows a write that landed
    assert server.staff.card(card)["counter"] == 6
    following = second.payment(card, uid, 100, mode="offline", counter=6)
    assert statuses(second.sync([following])) == [("applied", None)]
    # and a synced payment voided in the batch of the till's next payment
    again = first.payment(card, uid, 300, counter=7)
    assert first.authorise(again).json()["outcome"] == "approved"
    assert statuses(first.sync([again])) == [("applied", None)]
    void_again = first.record("void", {"card": card, "voids_seq": again.seq, "amount_cents": 300})
    retry = first.payment(card, uid, 200, mode="offline", counter=7)
    assert statuses(first.sync([void_again, retry])) == [("applied", None)] * 2
    state = server.staff.card(card)
    assert (state["flagged"], state["balance_cents"], state["counter"]) == (False, 4_700, 7)
    assert not [a for a in server.staff.alerts() if a["card"] == card]


def test_void_reverses_once(server):
    card, uid = server.new_card(1_000)
    till = server.terminal()
    pay = till.payment(card, uid, 400)
    assert till.authorise(pay).json()["outcome"] == "approved"
    void = till.record("void", {"card": card, "voids_seq": pay.seq, "amount_cents": 400})
    again = till.record("void", {"card": card, "voids_seq": pay.seq, "amount_cents": 400})
    unknown = till.record("void", {"card": card, "voids_seq": 999, "amount_cents": 400})
    assert statuses(till.sync([pay, void, again, unknown])) == [
        ("applied", None),
        ("applied", None),
        ("refused", "already_voided"),
        ("refused", "payment_not_found"),
    ]
    assert server.staff.card(card)["balance_cents"] == 1_000
    # the refused voids are part of the chain: resent, they answer as before
    assert statuses(till.sync([void, again])) == [
        ("already_applied", None),
        ("already_applied", "already_voided"),
    ]
    assert server.staff.ledger_check()["ok"]


def test_void_of_declined_payment_is_refused(server):
    card, uid = server.new_card(100)
    till = server.terminal()
    pay = till.payment(card, uid, 400)
    assert till.authorise(pay).json()["code"] == "insufficient_funds"
    void = till.record("void", {"card": card, "voids_seq": pay.seq, "amount_cents": 400})
    assert statuses(till.sync([pay, void])) == [
        ("applied", None),
        ("refused", "payment_not_found"),
    ]
    assert server.staff.card(card)["balance_cents"] == 100


def test_online_record_never_authorised_is_declined_at_sync(server):
    card, uid = server.new_card(1_000)
    till = server.terminal()
    lost = till.payment(card, uid, 300)  # the request never reached the server
    results = till.sync([lost]).json()["results"]
    assert results[0]["status"] == "applied"
    assert results[0]["outcome"]["outcome"] == "declined"
    assert server.staff.card(card)["balance_cents"] == 1_000
    late = till.authorise(lost).json()  # the delayed request arrives after all
    assert late["outcome"] == "declined"
    assert server.staff.card(card)["balance_cents"] == 1_000


def test_synced_record_must_be_the_authorised_one(server):
    card, uid = server.new_card(1_000)
    till = server.terminal()
    pay = till.payment(card, uid, 300)
    assert till.authorise(pay).json()["outcome"] == "approved"
    till.seq, till.prev = 0, pay.prev
    other = till.payment(card, uid, 1)
    assert statuses(till.sync([other])) == [("refused", "sequence_conflict")]
    assert any(a["kind"] == "chain_fork" for a in server.staff.alerts())
    assert statuses(till.sync([pay])) == [("applied", None)]


def test_till_topup_moves_cash_from_merchant_to_card(server):
    card, _uid = server.new_card(0)
    merchant_id = server.staff.create_merchant("Kiosk")
    till = server.terminal(merchant_id)
    request = till.record("topup_request", {"card": card, "amount_cents": 2_000})
    answer = till.authorise(request).json()
    assert (answer["outcome"], answer["balance_cents"]) == ("approved", 2_000)
    assert server.staff.call("GET", f"/v1/merchants/{merchant_id}")["payable_cents"] == -2_000
    moves = server.staff.call("GET", f"/v1/merchants/{merchant_id}/payments")
    # the same rows as a card's history (`ledger.account_history`), label included
    assert [(m["kind"], m["amount_cents"], m["seq"], m["label"]) for m in moves] == [
        ("till_topup", -2_000, request.seq, "Aufladung Kiosk")
    ]
    assert statuses(till.sync([request])) == [("applied", None)]
    assert server.staff.card(card)["balance_cents"] == 2_000


def test_void_of_till_topup_gives_the_cash_back_once(server):
    card, _uid = server.new_card(100)
    merchant_id = server.staff.create_merchant("Bude")
    till = server.terminal(merchant_id)
    request = till.record("topup_request", {"card": card, "amount_cents": 2_000})
    assert till.authorise(request).json()["outcome"] == "approved"
    wrong = till.record("void", {"card": card, "voids_seq": request.seq, "amount_cents": 1_999})
    void = till.record("void", {"card": card, "voids_seq": request.seq, "amount_cents": 2_000})
    again = till.record("void", {"card": card, "voids_seq": request.seq, "amount_cents": 2_000})
    assert statuses(till.sync([request, wrong, void, again])) == [
        ("applied", None),
        ("refused", "invalid_amount"),
        ("applied", None),
        ("refused", "already_voided"),
    ]
    state = server.staff.card(card)
    assert (state["balance_cents"], state["flagged"]) == (100, False)
    assert server.staff.call("GET", f"/v1/merchants/{merchant_id}")["payable_cents"] == 0
    moves = server.staff.call("GET", f"/v1/merchants/{merchant_id}/payments")
    assert [(m["kind"], m["amount_cents"], m["label"]) for m in moves] == [
        ("void", 2_000, "Storno Aufladung Bude"),
        ("till_topup", -2_000, "Aufladung Bude"),
    ]
    # another terminal cannot void it; a declined top-up cannot be voided
    other = server.terminal(merchant_id)
    foreign = other.record("void", {"card": card, "voids_seq": request.seq, "amount_cents": 2_000})
    assert statuses(other.sync([foreign])) == [("refused", "payment_not_found")]
    server.staff.block(card)
    declined = till.record("topup_request", {"card": card, "amount_cents": 500})
    assert till.authorise(declined).json()["code"] == "card_blocked"
    late = till.record("void", {"card": card, "voids_seq": declined.seq, "amount_cents": 500})
    assert statuses(till.sync([declined, late])) == [
        ("applied", None),
        ("refused", "payment_not_found"),
    ]
    assert server.staff.card(card)["balance_cents"] == 100
    assert server.staff.ledger_check()["ok"]


def test_void_of_spent_till_topup_overdraws_flags_and_deny_lists(server):
    card, uid = server.new_card(0)
    till, shop = server.terminal(), server.terminal()
    version = till.snapshot(0).json()["snapshot"]["version"]
    request = till.record("topup_request", {"card": card, "amount_cents": 1_000})
    assert till.authorise(request).json()["outcome"] == "approved"
    elsewhere = shop.payment(card, uid, 700)  # another till may not spend it yet
    assert shop.authorise(elsewhere).json()["code"] == "insufficient_funds"
    spent = till.payment(card, uid, 700)  # its own till may: spent before the void arrives
    assert till.authorise(spent).json()["outcome"] == "approved"
    void = till.record("void", {"card": card, "voids_seq": request.seq, "amount_cents": 1_000})
    assert statuses(till.sync([request, spent])) == [("applied", None)] * 2
    assert statuses(till.sync([void])) == [("applied", None)]  # a later batch
    state = server.staff.card(card)
    assert (state["balance_cents"], state["flagged"], state["denied"]) == (-700, True, True)
    assert state["flag_reason"] == "overdraw"
    assert card in till.snapshot(version).json()["snapshot"]["deny_add"]
    assert any(a["kind"] == "overdraw" and a["card"] == card for a in server.staff.alerts())
    assert server.staff.ledger_check()["ok"]


def test_transfer_moves_balance_to_replacement(server):
    lost, _ = server.new_card(3_300)
    new, _ = server.new_card(200)
    result = server.staff.transfer(lost, new)
    assert result["amount_cents"] == 3_300
    assert server.staff.card(lost)["balance_cents"] == 0
    assert server.staff.card(lost)["blocked"]
    assert server.staff.card(new)["balance_cents"] == 3_500
    with pytest.raises(ApiError) as refused:
        server.staff.transfer(new, new)
    assert refused.value.code == "same_card"
    labels = [h["kind"] for h in server.staff.history(new)]
    assert labels == ["transfer", "topup"]


def test_correction_needs_reason_and_admin(server):
    card, _ = server.new_card(500)
    done = server.staff.call(
        "POST",
        "/v1/ledger/corrections",
        json={"card_number": card, "amount_cents": -120, "reason": "Doppelt aufgeladen"},
    )
    assert done["balance_cents"] == 380
    response = server.staff.request(
        "POST", "/v1/ledger/corrections", json={"card_number": card, "amount_cents": 5}
    )
    assert response.status_code == 400
    assert server.staff.ledger_check()["ok"]


def test_snapshot_since_returns_only_changes(server):
    till = server.terminal()
    server.new_card(100)  # a change before the full snapshot: on a fresh database its
    # version would be 0, and `since=0` is always answered in full
    full = till.snapshot(0).json()["snapshot"]
    assert full["full"]
    assert str(till.terminal_id) in full["terminal_keys"]
    card, _ = server.new_card(700)
    delta = till.snapshot(full["version"]).json()["snapshot"]
    assert not delta["full"]
    assert list(delta["balances"]) == [card]
    assert delta["balances"][card]["balance_cents"] == 700
    assert till.snapshot(delta["version"]).json()["snapshot"]["balances"] == {}
    assert till.snapshot(10**12).json()["snapshot"]["full"]


def test_day_close_is_stored(server):
    till = server.terminal()
    close = till.record(
        "day_close",
        {"count": 0, "sum_cents": 0, "void_count": 0, "void_sum_cents": 0, "offline_count": 0},
    )
    assert statuses(till.sync([close])) == [("applied", None)]


def test_correction_below_zero_needs_confirmation_and_flags_the_card(server):
    card, _ = server.new_card(500)
    correction = {"card_number": card, "amount_cents": -100_000, "reason": "Fehlbuchung"}
    refused = server.staff.request("POST", "/v1/ledger/corrections", json=correction)
    assert refused.status_code == 400
    assert refused.json()["code"] == "below_zero_not_confirmed"
    assert refused.json()["details"] == {"balance_cents": 500}
    assert server.staff.card(card)["balance_cents"] == 500
    # to exactly zero needs no confirmation and flags nothing
    to_zero = {"card_number": card, "amount_cents": -500, "reason": "Auszahlung bar"}
    assert server.staff.call("POST", "/v1/ledger/corrections", json=to_zero)["flagged"] is False
    done = server.staff.call(
        "POST", "/v1/ledger/corrections", json={**correction, "allow_below_zero": True}
    )
    assert (done["balance_cents"], done["flagged"], done["denied"]) == (-100_000, True, True)
    assert done["flag_reason"] == "overdraw"
    (alert,) = [a for a in server.staff.alerts() if a["card"] == card]
    assert alert["kind"] == "overdraw"
    assert "correction by admin" in alert["detail"]
    till = server.terminal()
    snapshot = till.snapshot(0).json()["snapshot"]
    assert card in snapshot["deny_add"]
    assert server.staff.ledger_check()["ok"]


def test_a_later_batch_keeps_an_earlier_flag_reason(server):
    """A copied card overdrawn by a later sync batch is alerted again but keeps its flag
    reason `card_copied`, as a correction keeps it (a batch re-flagged every flagged card it
    named, with the newer reason)."""
    card, uid = server.new_card(100)
    till = server.terminal()
    foreign = "04ffffffffffff" if uid != "04ffffffffffff" else "04fffffffffffe"
    copied = till.payment(card, foreign, 50, mode="offline", counter=1)
    assert statuses(till.sync([copied])) == [("applied", None)]
    overdraw = till.payment(card, uid, 80, mode="offline", counter=2)
    assert statuses(till.sync([overdraw])) == [("applied", None)]
    state = server.staff.card(card)
    assert (state["balance_cents"], state["flagged"], state["flag_reason"]) == (
        -30,
        True,
        "card_copied",
    )
    kinds = sorted(a["kind"] for a in server.staff.alerts() if a["card"] == card)
    assert kinds == ["card_copied", "overdraw"]


def test_a_correction_keeps_an_earlier_flag_reason_and_a_credit_alerts_nothing(server):
    """A copied card taken below zero by an admin keeps its flag reason `card_copied`; a
    credit afterwards writes no "took the card to" alert; `allow_below_zero` must be true."""
    card, uid = server.new_card(100)
    till = server.terminal()
    foreign = "04ffffffffffff" if uid != "04ffffffffffff" else "04fffffffffffe"
    offline = till.payment(card, foreign, 50, mode="offline", counter=1)
    assert statuses(till.sync([offline])) == [("applied", None)]
    assert server.staff.card(card)["flag_reason"] == "card_copied"
    debit = {"card_number": card, "amount_cents": -2_050, "reason": "Rückbuchung"}
    for flag_value in ("yes", 1, "true"):
        response = server.staff.request(
            "POST", "/v1/ledger/corrections", json={**debit, "allow_below_zero": flag_value}
        )
        assert response.status_code == 400, flag_value  # an explicit true, nothing else
    state = server.staff.call(
        "POST", "/v1/ledger/corrections", json={**debit, "allow_below_zero": True}
    )
    assert (state["balance_cents"], state["flag_reason"]) == (-2_000, "card_copied")
    kinds = [a["kind"] for a in server.staff.alerts() if a["card"] == card]
    assert sorted(kinds) == ["card_copied", "overdraw"]
    credit = {"card_number": card, "amount_cents": 1_000, "reason": "Teilausgleich"}
    state = server.staff.call("POST", "/v1/ledger/corrections", json=credit)
    assert (state["balance_cents"], state["flag_reason"]) == (-1_000, "card_copied")
    assert len([a for a in server.staff.alerts() if a["card"] == card]) == 2
    assert server.staff.ledger_check()["ok"]


def test_merchant_master_data_for_the_bank_file(server):
    staff = server.staff
    merchant_id = staff.create_merchant("Metzgerei Özdemir")
    changed = staff.call(
        "PATCH",
        f"/v1/merchants/{merchant_id}",
        json={
            "holder_name": "Oezdemir Fleischwaren GmbH",
            "street": "Heggerstraße",
            "building_number": "3",
            "postcode": "45525",
            "town": "Hattingen",
            "fee_bp": 275,
        },
    )
    assert (changed["holder_name"], changed["street"], changed["fee_bp"]) == (
        "Oezdemir Fleischwaren GmbH",
        "Heggerstraße",
        275,
    )
    assert changed["country"] == "DE"
    assert changed["name"] == "Metzgerei Özdemir"  # what was not given stays
    for change, code in (
        ({"iban": "DE89370400440532013001"}, "invalid_iban"),  # a typo: checksum
        ({"bic": "COBADEFFXXX"}, "malformed_request"),  # a BIC only with its IBAN
        ({"street": "Heggerstr.\x00"}, "invalid_name"),
        ({"country": "Deutschland"}, "malformed_request"),
        ({"town": "x" * 36}, "malformed_request"),
    ):
        response = staff.request("PATCH", f"/v1/merchants/{merchant_id}", json=change)
        assert response.status_code == 400, change
        assert response.json()["code"] == code, change
    assert staff.call("GET", f"/v1/merchants/{merchant_id}")["street"] == "Heggerstraße"
    moved = staff.call(
        "PATCH", f"/v1/merchants/{merchant_id}", json={"iban": "DE75512108001245126199"}
    )
    assert (moved["iban"], moved["bic"]) == ("DE75512108001245126199", "SOGEDEFFXXX")
