"""What the server promised survives a restart: stored answers, applied records, seen nonces."""

from __future__ import annotations

import pytest
import requests


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

    issuer = server.issuer_public_key
    server.restart()
    till.url = server.url
    assert requests.get(f"{server.url}/v1/health", timeout=30).json()["issuer_public_key"] == issuer
    assert till.authorise(pay).content == first.content
    results = till.sync([pay, offline]).json()["results"]
    assert [r["status"] for r in results] == ["already_applied", "already_applied"]
    replay = till.signed("GET", "/v1/terminal/snapshot?since=0", nonce=nonce)
    assert (replay.status_code, replay.json()["code"]) == (401, "nonce_reused")
    assert server.staff.card(card)["balance_cents"] == 650
    assert server.staff.ledger_check()["ok"]
