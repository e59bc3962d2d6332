"""End to end: two offline terminals, copied and forged cards, offline limits, rollback."""

import shutil

import pytest
from fixtures.card import CARD_KINDS, CardStack, CardType, copied_to, issued_card
from fixtures.terminal import server_card

from hcard import keys
from hcard.errors import Code
from hcard.terminal.card import image as images
from hcard.terminal.till import Outcome


@pytest.fixture
def offline_pair(live_server, card_emulator, terminal_factory, net_proxy):
    """Two terminals of one merchant, each behind its own proxy, both with a snapshot."""
    first = terminal_factory(
        live_server, card_emulator.reader_path, proxy=net_proxy(live_server.url)
    )
    second = terminal_factory(
        live_server,
        card_emulator.reader_path,
        proxy=net_proxy(live_server.url),
        merchant_id=first.merchant_id,
    )
    return first, second


def _pay(till, amount_cents):
    return till.pay(amount_cents, card_timeout_s=10)


def test_two_offline_terminals_see_each_others_spending_through_the_purse(
    live_server, card_emulator, offline_pair
):
    first, second = offline_pair
    number, image = server_card(live_server, 3_000)
    card_emulator.present(image)
    till_a, till_b = first.till(), second.till()
    till_a.sync_now()
    till_b.sync_now()  # knows A's key from the snapshot: can check A's purse
    first.proxy.mode = second.proxy.mode = "down"
    till_a.link.down()  # as the sync agent would have noticed
    till_b.link.down()

    paid_a = _pay(till_a, 1_000)
    assert (paid_a.outcome, paid_a.offline, paid_a.balance_cents) == (Outcome.APPROVED, True, 2_000)
    paid_b = _pay(till_b, 1_500)
    assert (paid_b.outcome, paid_b.offline, paid_b.balance_cents) == (Outcome.APPROVED, True, 500)
    short = _pay(till_a, 1_000)  # A's snapshot still says 3000: the purse says 500
    assert (short.outcome, short.code, short.available_cents) == (
        Outcome.DECLINED,
        Code.INSUFFICIENT_FUNDS,
        500,
    )

    first.proxy.mode = second.proxy.mode = "pass"
    till_a.sync_now()
    till_b.sync_now()
    card = live_server.staff.card(number)
    assert card["balance_cents"] == 500
    assert not card["denied"]


#: what a till says to a copy of a card onto another chip: an NTAG215's issuer record names
#: another UID; a 424 copy lacks the card's AES key for its own UID
COPY_REFUSED = {CardType.NTAG215: Code.CARD_COPIED, CardType.NTAG424DNA: Code.CARD_AUTH_FAILED}


@pytest.mark.parametrize(
    ("card_type", "card_stack", "online"),
    [pytest.param(*kind.values, False, id=f"{kind.id}-offline") for kind in CARD_KINDS]
    + [
        pytest.param(card_type, CardStack.UDP, True, id=f"{card_type}-udp-online")
        for card_type in CardType
    ],
)
def test_copied_card_and_forged_issuer_signature_are_refused(
    live_server, card_emulator, enrolled_terminal, online, card_type
):
    number, image = server_card(live_server, 3_000, chip=card_type)
    till = enrolled_terminal.till()
    till.sync_now()
    if not online:
        till.link.down()
    card_emulator.present(copied_to(image, images.random_uid()), name="copy")
    copied = _pay(till, 100)
    assert (copied.outcome, copied.code) == (Outcome.DECLINED, COPY_REFUSED[card_type])

    forged = issued_card(keys.generate(), number, chip=card_type)
    card_emulator.present(forged, name="forged")
    refused = _pay(till, 100)
    assert (refused.outcome, refused.code) == (Outcome.DECLINED, Code.CARD_NOT_ISSUED)
    assert live_server.staff.card(number)["balance_cents"] == 3_000
    assert till.journal.last_seq() == 0  # a refused card leaves nothing to book

    card_emulator.present(image, name="real")
    assert _pay(till, 100).outcome == Outcome.APPROVED


def test_offline_limits_hold(live_server, card_emulator, enrolled_terminal):
    """Server defaults: 25 € per payment, 50 € per card and day, 3 offline in a row."""
    _number, image = server_card(live_server, 20_000)
    _number, fresh = server_card(live_server, 20_000)
    till = enrolled_terminal.till()
    till.sync_now()
    limits = till.snapshot.state.limits
    assert (limits.per_payment_cents, limits.per_card_day_cents, limits.consecutive_offline) == (
        2_500,
        5_000,
        3,
    )
    till.link.down()
    card_emulator.present(image)
    too_big = _pay(till, 2_501)
    assert (too_big.code, too_big.available_cents) == (Code.OFFLINE_LIMIT_PAYMENT, 2_500)
    assert _pay(till, 2_500).outcome == Outcome.APPROVED
    assert _pay(till, 2_000).outcome == Outcome.APPROVED
    over_day = _pay(till, 600)
    assert (over_day.code, over_day.available_cents) == (Code.OFFLINE_LIMIT_DAY, 500)
    assert _pay(till, 500).outcome == Outcome.APPROVED
    day_spent = _pay(till, 1)
    assert day_spent.code in (Code.OFFLINE_LIMIT_DAY, Code.OFFLINE_LIMIT_COUNT)

    card_emulator.present(fresh, name="fresh")
    for _ in range(3):
        assert _pay(till, 10).outcome == Outcome.APPROVED
    fourth = _pay(till, 10)
    assert (fourth.outcome, fourth.code) == (Outcome.DECLINED, Code.OFFLINE_LIMIT_COUNT)
    till.sync_now()  # online again: the limit is about unsynced offline payments
    assert _pay(till, 10).outcome == Outcome.APPROVED


def test_rolled_back_card_is_caught_by_the_server_at_sync(
    live_server, card_emulator, enrolled_terminal
):
    number, image = server_card(live_server, 3_000)
    till = enrolled_terminal.till()
    till.sync_now()
    till.link.down()
    path = card_emulator.present(image)
    assert _pay(till, 500).outcome == Outcome.APPROVED
    saved = path.with_name("saved.json")
    card_emulator.remove()
    shutil.copy(path, saved)  # the card's memory as it is now: 2500
    card_emulator.present(path)
    assert _pay(till, 1_000).outcome == Outcome.APPROVED  # card: 1500
    card_emulator.remove()
    shutil.copy(saved, path)  # restored to 2500: the same counter will be written again
    card_emulator.present(path)
    again = _pay(till, 1_000)
    assert again.outcome == Outcome.APPROVED  # offline nobody can tell
    assert again.balance_cents == 1_500

    till.sync_now()
    card = live_server.staff.card(number)
    assert card["denied"]
    assert card["flagged"]
    alerts = [a for a in live_server.staff.alerts() if a.get("card") == number]
    assert any(a["kind"] == "card_rollback" for a in alerts), alerts
    assert number in till.snapshot.state.deny
    till.link.down()
    blocked = _pay(till, 10)
    assert (blocked.outcome, blocked.code) == (Outcome.DECLINED, Code.CARD_BLOCKED)


@pytest.mark.parametrize("card_stack", list(CardStack))
def test_restored_424_is_refused_by_its_tap_counter_before_any_payment(
    live_server, card_emulator, enrolled_terminal
):
    """An NTAG 424 DNA's memory put back (only an emulator holding the card's keys could): its
    tap counter is behind what the till saw, so the till refuses it offline too."""
    number, card = server_card(live_server, 3_000, chip=CardType.NTAG424DNA)
    till = enrolled_terminal.till()
    till.sync_now()
    till.link.down()
    path = card_emulator.present(card)
    assert _pay(till, 500).outcome == Outcome.APPROVED
    card_emulator.remove()
    saved = path.with_name("saved.json")
    shutil.copy(path, saved)  # 2500 and its tap counter
    card_emulator.present(path)
    assert _pay(till, 1_000).outcome == Outcome.APPROVED  # card: 1500
    card_emulator.remove()
    shutil.copy(saved, path)
    card_emulator.present(path)
    again = _pay(till, 1_000)
    assert (again.outcome, again.code) == (Outcome.DECLINED, Code.CARD_COUNTER_BACKWARDS)
    till.sync_now()
    assert live_server.staff.card(number)["balance_cents"] == 1_500
