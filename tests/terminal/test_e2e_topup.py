"""Cash top-up at the till, end to end: real server, terminal core, emulated card.

Online only: approved top-ups reach the server and the purse; without the server's
answer nothing stays booked, whatever was lost (request, answer, the till itself).
"""

import pytest
from fixtures.terminal import server_card, tear_at_every_point

from hcard.errors import Code
from hcard.terminal import journal as jr
from hcard.terminal.till import Outcome, PaymentResult


@pytest.fixture
def proxied(live_server, card_emulator, terminal_factory, net_proxy):
    """(terminal behind a proxy, its till with a first snapshot, card number, card path).

    The card holds 500 on the server and in its purse (one online payment wrote it).
    """
    number, image = server_card(live_server, 600)
    terminal = terminal_factory(
        live_server, card_emulator.reader_path, proxy=net_proxy(live_server.url)
    )
    till = terminal.till()
    till.sync_now()
    path = card_emulator.present(image)
    assert till.pay(100, card_timeout_s=10).balance_cents == 500
    return terminal, till, number, path


def purse_cents(till) -> int:
    """The balance in the card's purse, read through the till's own reader."""
    with till._card_operation():
        session, view = till._tap(10)
        session.close()
    return view.purse.balance_cents


def test_topup_reaches_server_and_purse_then_pays_offline(live_server, proxied):
    terminal, till, number, _path = proxied
    result = till.topup(2_000, card_timeout_s=10)
    assert (result.outcome, result.amount_cents, result.balance_cents) == (
        Outcome.APPROVED,
        2_000,
        2_500,
    )
    assert not result.offline
    assert live_server.staff.card(number)["balance_cents"] == 2_500
    assert purse_cents(till) == 2_500
    assert till.journal.entry(result.seq).state == jr.State.FINAL
    till.sync_now()  # the snapshot now knows the top-up too

    terminal.proxy.mode = "down"
    till.link.down()  # known down: straight offline, no unanswered online try
    paid = till.pay(2_200, card_timeout_s=10)  # more than the card had before the top-up
    assert (paid.outcome, paid.offline, paid.balance_cents) == (Outcome.APPROVED, True, 300)
    terminal.proxy.mode = "pass"
    till.sync_now()
    assert till.journal.unsent_count() == 0
    state = live_server.staff.card(number)
    assert (state["balance_cents"], state["flagged"]) == (300, False), (
        state,
        live_server.staff.alerts(),
    )
    assert purse_cents(till) == 300
    assert live_server.staff.ledger_check()["ok"]


def test_topup_with_server_down_is_declined_and_books_nothing(live_server, proxied):
    terminal, till, number, _path = proxied
    terminal.proxy.mode = "down"
    result = till.topup(1_000, card_timeout_s=10)
    assert (result.outcome, result.code, result.amount_cents) == (
        Outcome.DECLINED,
        Code.SERVER_UNREACHABLE,
        0,
    )
    assert result.receipt_no is None
    assert live_server.staff.card(number)["balance_cents"] == 500
    assert purse_cents(till) == 500
    (entry,) = till.journal.entries(states=(jr.State.UNSHOWN,))
    assert entry.record.kind == "topup_request"
    terminal.proxy.mode = "pass"
    till.sync_now()  # asked again: whatever the server says now, it is not kept
    assert till.journal.entry(entry.record.seq).state in (jr.State.CANCELLED, jr.State.DECLINED)
    assert till.journal.unsent_count() == 0
    assert live_server.staff.card(number)["balance_cents"] == 500
    assert live_server.staff.ledger_check()["ok"]


def test_topup_answer_lost_is_voided_later(live_server, proxied):
    terminal, till, number, _path = proxied
    terminal.proxy.mode = "lose_answer"
    result = till.topup(1_000, card_timeout_s=10)
    assert (result.outcome, result.code) == (Outcome.DECLINED, Code.SERVER_UNREACHABLE)
    assert live_server.staff.card(number)["balance_cents"] == 1_500  # booked, not shown
    (entry,) = till.journal.entries(states=(jr.State.UNSHOWN,))
    terminal.proxy.mode = "pass"
    # before the sync agent settles it: the server still counts the lost one, the purse not
    second = till.topup(200, card_timeout_s=10)
    assert (second.outcome, second.balance_cents) == (Outcome.APPROVED, 700)
    assert live_server.staff.card(number)["balance_cents"] == 1_700
    assert purse_cents(till) == 700
    till.sync_now()
    assert till.journal.entry(entry.record.seq).state == jr.State.CANCELLED
    assert till.journal.unsent_count() == 0
    state = live_server.staff.card(number)
    assert (state["balance_cents"], state["flagged"]) == (700, False)
    assert purse_cents(till) == 700
    assert live_server.staff.ledger_check()["ok"]


class _PowerCut(BaseException):
    """Stops the till where it stands, like a crash (nothing catches it)."""


@pytest.mark.parametrize("left", [jr.State.INTENT, jr.State.APPROVED])
def test_topup_approved_but_never_shown_is_voided_after_restart(
    live_server, proxied, monkeypatch, left
):
    """The server approved; the till died before the card write and the display."""
    terminal, till, number, _path = proxied

    def crash(session, record, *args, **kwargs):
        if left == jr.State.APPROVED:
            till.journal.set_state(record.seq, jr.State.APPROVED)
        raise _PowerCut

    monkeypatch.setattr(till.payments, "_write_and_finish", crash)
    with pytest.raises(_PowerCut):
        till.topup(1_000, card_timeout_s=10)
    assert live_server.staff.card(number)["balance_cents"] == 1_500
    (seq,) = [e.record.seq for e in till.journal.entries(states=(left,))]
    till.close()

    again = terminal.till()
    assert again.recovered == ([seq] if left == jr.State.APPROVED else [])
    again.sync_now()
    assert again.journal.entry(seq).state == jr.State.CANCELLED
    assert again.journal.unsent_count() == 0
    assert live_server.staff.card(number)["balance_cents"] == 500
    assert purse_cents(again) == 500
    assert live_server.staff.ledger_check()["ok"]


def test_topup_of_an_invalid_amount_never_asks(proxied):
    _terminal, till, _number, _path = proxied
    result = till.topup(0, card_timeout_s=10)
    assert (result.outcome, result.code) == (Outcome.DECLINED, Code.INVALID_AMOUNT)
    assert till.journal.last_seq() == 1  # the fixture's payment only


def test_card_pulled_away_at_every_point_of_a_topup(live_server, proxied, card_emulator):
    """Tear the card after 0, 4, 8, ... frames of a top-up; tap again.

    Whatever the till showed is what the server books; the card always reads, and the
    next approved top-up writes the server's balance to it.
    """
    _terminal, till, number, path = proxied
    results = []

    def topup(timeout_s: float) -> PaymentResult:
        results.append(till.topup(10, card_timeout_s=timeout_s))
        return results[-1]

    shown_cents = 500 + tear_at_every_point(card_emulator, path, topup, step=4)
    last = results[-1]
    till.sync_now()
    assert till.journal.unsent_count() == 0
    card = live_server.staff.card(number)
    assert card["balance_cents"] == shown_cents == last.balance_cents
    assert not card["denied"], card
    assert purse_cents(till) == shown_cents
    assert live_server.staff.ledger_check()["ok"]
