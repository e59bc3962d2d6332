"""The sync agent in its own thread: syncs by itself once the network is back, never blocks."""

import time

from fixtures.terminal import server_card

from hcard.terminal.till import Outcome


def _wait_until(condition, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_agent_syncs_by_itself_and_never_blocks_the_till(
    live_server, card_emulator, terminal_factory, net_proxy
):
    number, image = server_card(live_server, 5_000)
    proxy = net_proxy(live_server.url)
    terminal = terminal_factory(live_server, card_emulator.reader_path, proxy=proxy)
    card_emulator.present(image)
    till = terminal.till(start_sync=True, sync_interval_s=0.5)
    _wait_until(lambda: till.status().last_sync_s is not None)  # first snapshot pulled

    proxy.mode = "hang"  # the agent's next requests hang for their long timeout
    till.agent.wake()
    time.sleep(0.2)
    timings = []
    for amount in (300, 200):
        started = time.monotonic()
        result = till.pay(amount, card_timeout_s=10)
        timings.append(time.monotonic() - started)
        assert result.outcome == Outcome.APPROVED
        assert result.offline
    assert timings[1] < 1.0, f"the till waited for the agent: {timings}"
    assert till.status().unsynced_count >= 2

    proxy.mode = "pass"  # cuts the hanging connections, as a cable plugged back would
    _wait_until(lambda: till.status().unsynced_count == 0 and till.status().online)
    assert live_server.staff.card(number)["balance_cents"] == 4_500
