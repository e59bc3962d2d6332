"""Several tills, one card: what one till writes must not undo what another recorded.

Real server, terminal cores behind cuttable proxies, the emulated card passed
from till to till (one reader file, as a customer walks from stall to stall).
"""

from fixtures.terminal import server_card

from hcard.terminal.till import Outcome


def purse_cents(till) -> int:
    """The balance in the card's purse, read through the till's own reader."""
    with till._card_operation():
        session, view = till._tap(10)
        session.close()
    return view.purse.balance_cents


def _three_tills(live_server, card_emulator, terminal_factory, net_proxy, balance_cents):
    """(stall A and C behind proxies that are down, shop B online, card number)."""
    pa, pc = net_proxy(live_server.url), net_proxy(live_server.url)
    a = terminal_factory(live_server, card_emulator.reader_path, proxy=pa).till()
    b = terminal_factory(live_server, card_emulator.reader_path).till()
    c = terminal_factory(live_server, card_emulator.reader_path, proxy=pc).till()
    number, image = server_card(live_server, balance_cents)
    card_emulator.present(image)
    for till in (a, b, c):
        till.sync_now()  # limits, keys and the card's balance
    pa.mode = pc.mode = "down"
    a.link.down()
    c.link.down()
    return (a, pa), b, (c, pc), number


def test_online_payment_keeps_unsynced_offline_debit_on_card(
    live_server, card_emulator, terminal_factory, net_proxy
):
    (a, pa), b, (c, pc), number = _three_tills(
        live_server, card_emulator, terminal_factory, net_proxy, 3_000
    )
    off = a.pay(2_500, card_timeout_s=10)
    assert (off.outcome, off.offline, off.balance_cents) == (Outcome.APPROVED, True, 500)
    on = b.pay(100, card_timeout_s=10)  # the server still thinks 3000
    assert (on.outcome, on.offline) == (Outcome.APPROVED, False)
    assert live_server.staff.card(number)["balance_cents"] == 2_900
    assert on.balance_cents == 400
    assert purse_cents(b) == 400
    again = c.pay(2_500, card_timeout_s=10)
    assert again.outcome == Outcome.DECLINED
    assert again.available_cents == 400
    pa.mode = pc.mode = "pass"
    a.sync_now()
    c.sync_now()
    state = live_server.staff.card(number)
    assert state["balance_cents"] == 400
    assert not state["flag_reason"]


def test_topup_keeps_unsynced_offline_debit_on_card(
    live_server, card_emulator, terminal_factory, net_proxy
):
    (a, pa), b, (c, _pc), number = _three_tills(
        live_server, card_emulator, terminal_factory, net_proxy, 3_000
    )
    assert a.pay(2_500, card_timeout_s=10).balance_cents == 500
    top = b.topup(1_000, card_timeout_s=10)  # the server: 3000 + 1000
    assert top.outcome == Outcome.APPROVED
    assert live_server.staff.card(number)["balance_cents"] == 4_000
    assert top.balance_cents == 1_500
    assert purse_cents(b) == 1_500
    assert c.pay(2_000, card_timeout_s=10).outcome == Outcome.DECLINED
    pa.mode = "pass"
    a.sync_now()
    assert live_server.staff.card(number)["balance_cents"] == 1_500
