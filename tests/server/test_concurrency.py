"""Concurrency over real HTTP, on SQLite and PostgreSQL: no overdraw, exactly-once sync."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

THREADS = 50


def _all_at_once(count, work):
    barrier = threading.Barrier(count)

    def run(index):
        barrier.wait(timeout=60)
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_fifty_terminals_paying_from_one_card_never_overdraw(server):
    card, uid = server.new_card(1_000)  # 10 € pays exactly ten 1 € payments
    merchant_id = server.staff.create_merchant("Gleichzeitig GmbH")
    tills = [server.terminal(merchant_id, f"Kasse {i}") for i in range(THREADS)]
    records = [till.payment(card, uid, 100, counter=i + 1) for i, till in enumerate(tills)]

    answers = _all_at_once(THREADS, lambda i: tills[i].authorise(records[i]))

    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    outcomes = [a.json() for a in answers]
    approved = [o for o in outcomes if o["outcome"] == "approved"]
    declined = [o for o in outcomes if o["outcome"] == "declined"]
    assert len(approved) == 10
    assert {o["code"] for o in declined} == {"insufficient_funds"}
    assert all(o["available_cents"] == 0 for o in declined)
    assert sorted(o["balance_cents"] for o in approved) == list(range(0, 1_000, 100))
    assert server.staff.card(card)["balance_cents"] == 0
    assert server.staff.ledger_check()["ok"]


def test_same_batch_three_times_interleaved_books_once(server):
    card, uid = server.new_card(5_000)
    till = server.terminal()
    batch = [till.payment(card, uid, 100 + i, mode="offline", counter=i + 1) for i in range(30)]
    answers = _all_at_once(3, lambda _i: till.sync(batch))

    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    statuses = sorted(tuple({r["status"] for r in a.json()["results"]}) for a in answers)
    assert statuses == [("already_applied",), ("already_applied",), ("applied",)]
    assert server.staff.card(card)["balance_cents"] == 5_000 - sum(100 + i for i in range(30))
    assert len(server.staff.history(card)) == 31  # the top-up and 30 payments, once each
    assert server.staff.ledger_check()["ok"]


def test_concurrent_retries_of_one_authorisation_book_once(server):
    card, uid = server.new_card(1_000)
    till = server.terminal()
    record = till.payment(card, uid, 250)
    answers = _all_at_once(10, lambda _i: till.authorise(record))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert server.staff.card(card)["balance_cents"] == 750


def test_payments_and_syncs_on_one_card_and_merchant_at_once(server):
    """Authorisations and syncs lock the same card and merchant rows: no deadlock, no 500."""
    merchant_id = server.staff.create_merchant("Kreuzung KG")  # account id below the card's
    card, uid = server.new_card(100_000)
    tills = [server.terminal(merchant_id, f"Kasse {i}") for i in range(20)]
    counter = iter(range(1, 1_000))
    expected = 100_000
    for _round in range(3):
        work = []
        for index, till in enumerate(tills):
            if index % 2:
                record = till.payment(card, uid, 100, counter=next(counter))
                work.append(lambda till=till, record=record: till.authorise(record))
            else:
                record = till.payment(card, uid, 50, mode="offline", counter=next(counter))
                work.append(lambda till=till, record=record: till.sync([record]))
            expected -= 100 if index % 2 else 50
        answers = _all_at_once(len(work), lambda i, work=work: work[i]())
        assert [a.status_code for a in answers] == [200] * len(work), [a.text for a in answers]
    assert server.staff.card(card)["balance_cents"] == expected
    assert server.staff.ledger_check()["ok"]
