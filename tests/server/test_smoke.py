"""End to end over HTTP: enrol, authorise, sync, snapshot, card balance, ledger check."""

from hcard import keys, reqsign, signed
from hcard.records import GENESIS_HASH


def test_enrol_authorise_sync_snapshot(live_server):
    server = live_server
    terminal = server.terminal()
    assert terminal.issuer_public_key == server.issuer_public_key
    card, uid = server.new_card(1_000)

    pay = terminal.payment(card, uid, 300, counter=1, purse_cents=700)
    first = terminal.authorise(pay)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer == {
        "seq": 1,
        "outcome": "approved",
        "code": None,
        "balance_cents": 700,
        "available_cents": 700,
    }
    again = terminal.authorise(pay)
    assert again.content == first.content
    # the till's chain head on the server beside the answer: nothing synced yet
    assert (again.headers[reqsign.HEADER_CHAIN_SEQ], again.headers[reqsign.HEADER_CHAIN_HASH]) == (
        "0",
        GENESIS_HASH,
    )
    assert server.staff.card(card)["balance_cents"] == 700

    offline = terminal.payment(card, uid, 200, mode="offline", counter=2, purse_cents=500)
    synced = terminal.sync([pay, offline], shown=[pay.seq, offline.seq])
    assert synced.status_code == 200, synced.text
    results = synced.json()["results"]
    assert [r["status"] for r in results] == ["applied", "applied"]
    assert results[0]["outcome"] == answer
    assert server.staff.card(card)["balance_cents"] == 500

    resent = terminal.sync([pay, offline]).json()["results"]
    assert [r["status"] for r in resent] == ["already_applied", "already_applied"]
    assert server.staff.card(card)["balance_cents"] == 500

    snap = terminal.snapshot(0)
    assert snap.status_code == 200, snap.text
    document = snap.json()
    issuer = keys.public_from_hex(server.issuer_public_key)
    assert signed.verify_document(
        issuer, signed.DOMAIN_SNAPSHOT, document["snapshot"], document["sig"]
    )
    assert document["snapshot"]["balances"][card] == {
        "balance_cents": 500,
        "counter": 2,
        "trusted_counter": 2,
    }
    assert document["snapshot"]["limits"] == {
        "per_payment_cents": 2500,
        "per_card_day_cents": 5000,
        "consecutive_offline": 3,
    }

    balance = terminal.card(card).json()
    assert balance["balance_cents"] == 500
    assert not balance["blocked"]
    assert server.staff.ledger_check()["ok"]
