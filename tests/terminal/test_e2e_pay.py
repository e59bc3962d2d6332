"""End to end: real server (uvicorn), terminal core, emulated cards of both types over nfcpy's
udp: driver and over PC/SC (pcscd + vpcd)."""

import pytest
from fixtures.card import CARD_KINDS
from fixtures.terminal import server_card

from hcard.errors import Code
from hcard.terminal.till import Outcome


@pytest.mark.parametrize(("card_type", "card_stack"), CARD_KINDS)
def test_online_pay_offline_pay_then_sync_balances_equal(
    live_server, card_emulator, terminal_factory, net_proxy, card_type
):
    proxy = net_proxy(live_server.url)
    terminal = terminal_factory(live_server, card_emulator.reader_path, proxy=proxy)
    number, image = server_card(live_server, 5_000, chip=card_type)
    card_emulator.present(image)
    till = terminal.till()
    till.sync_now()  # first snapshot: limits, keys

    online = till.pay(1_250, card_timeout_s=10)
    assert online.outcome == Outcome.APPROVED, online
    assert not online.offline
    assert online.balance_cents == 3_750
    assert live_server.staff.card(number)["balance_cents"] == 3_750

    proxy.mode = "down"
    offline = till.pay(1_000, 100, card_timeout_s=10)
    assert offline.outcome == Outcome.APPROVED, offline
    assert offline.offline
    assert offline.balance_cents == 2_750
    assert offline.seq == online.seq + 2  # the unanswered online try holds one seq...
    assert offline.receipt_no == online.receipt_no + 1  # ...but no receipt number
    assert live_server.staff.card(number)["balance_cents"] == 3_750  # server does not know yet

    fast = till.pay(500, card_timeout_s=10)  # link known down: no timeout waited
    assert fast.outcome == Outcome.APPROVED
    assert fast.offline

    proxy.mode = "pass"
    till.sync_now()
    assert till.journal.unsent_count() == 0
    server_card_state = live_server.staff.card(number)
    assert server_card_state["balance_cents"] == 2_250
    assert card_emulator_balance(till) == 2_250
    assert not server_card_state.get("denied")
    assert live_server.staff.ledger_check()["ok"]
    rollbacks = [a for a in live_server.staff.alerts() if a.get("card") == number]
    assert rollbacks == []


def card_emulator_balance(till):
    """The purse on the card in the field, read through the till's own reader (a second
    reader on PC/SC would join the till's tap instead of making one of its own)."""
    session = till.reader.wait_for_card(10)
    try:
        return session.read(till.card_keys()).purse.balance_cents
    finally:
        session.close()


def test_insufficient_balance_offers_exactly_what_is_there(
    live_server, enrolled_terminal, card_emulator
):
    number, image = server_card(live_server, 700)
    card_emulator.present(image)
    till = enrolled_terminal.till()
    till.sync_now()
    short = till.pay(1_000, card_timeout_s=10)
    assert (short.outcome, short.code, short.available_cents) == (
        Outcome.DECLINED,
        Code.INSUFFICIENT_FUNDS,
        700,
    )
    partial = till.pay(short.available_cents, card_timeout_s=10)
    assert partial.outcome == Outcome.APPROVED
    assert partial.balance_cents == 0
    assert live_server.staff.card(number)["balance_cents"] == 0
