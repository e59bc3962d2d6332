"""What the server promised survives a restart: stored answers, applied records, seen nonces."""

from __future__ import annotations

import pytest
from fixtures.server import start_server


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_answers_records_and_nonces_survive_a_restart(server_factory, engine):
    server = server_factory(engine=engine)
    card, uid = server.new_card(1_000)
    till = server.terminal()
    pay = till.payment(card, uid, 250)
    first = till.authorise(pay)
    assert first.json()["outcome"] == "approved"
    offline = till.payment(card, uid, 100, mode="offline", counter=2)
    assert till.sync([pay, offline]).json()["results"][1]["status"] == "applied"
    nonce = "r" * 32
    assert till.signed("GET", "/v1/terminal/snapshot?since=0", nonce=nonce).status_code == 200

    server.stop()
    again = start_server(server.data_dir, server.database_url)
    try:
        till.url = again.url
        assert again.issuer_public_key == server.issuer_public_key
        assert till.authorise(pay).content == first.content
        results = till.sync([pay, offline]).json()["results"]
        assert [r["status"] for r in results] == ["already_applied", "already_applied"]
        replay = till.signed("GET", "/v1/terminal/snapshot?since=0", nonce=nonce)
        assert (replay.status_code, replay.json()["code"]) == (401, "nonce_reused")
        assert again.staff.card(card)["balance_cents"] == 650
        assert again.staff.ledger_check()["ok"]
    finally:
        again.stop()
