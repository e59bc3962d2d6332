"""`Status.reader_connected` is current without a tap: the core opens the reader at
start and looks at it in the background, never in a card operation's way."""

import subprocess
import sys
import threading
import time

from fixtures.terminal import server_card

from hcard.terminal.till import Outcome

WAIT_S = 30.0


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_reader_shows_as_connected_before_the_first_tap(
    live_server, card_emulator, terminal_factory
):
    terminal = terminal_factory(live_server, card_emulator.reader_path)
    till = terminal.till()
    _until(lambda: till.status().reader_connected, "the reader to be opened at start")


def test_looking_at_a_udp_reader_sends_nothing_to_the_card(
    live_server, card_emulator, terminal_factory
):
    """A look on udp: only opens the socket: no frame reaches the emulator (a sense
    there would wait 1 s for an absent card and use up the frames of tear tests)."""
    _number, image = server_card(live_server, 1_000)
    card_emulator.present(image)
    till = terminal_factory(live_server, card_emulator.reader_path).till(
        reader_check_interval_s=None
    )
    for _ in range(5):
        assert till.look_at_reader() is True
    assert card_emulator.status()["frames"] == 0
    assert till.pay(100, card_timeout_s=10).outcome == Outcome.APPROVED


def test_payments_while_the_reader_is_looked_at_all_the_time(
    live_server, card_emulator, terminal_factory
):
    """Looks every millisecond never share nfcpy's frontend with a tap, and the card
    is never torn by them: every payment is approved and the balance adds up."""
    number, image = server_card(live_server, 5_000)
    card_emulator.present(image)
    till = terminal_factory(live_server, card_emulator.reader_path).till(
        reader_check_interval_s=0.001
    )
    results = [till.pay(100, card_timeout_s=10) for _ in range(15)]
    assert [r.outcome for r in results] == [Outcome.APPROVED] * 15
    assert till.status().reader_connected
    assert live_server.staff.card(number)["balance_cents"] == 3_500


def test_a_reader_that_cannot_be_opened_shows_as_missing(
    live_server, card_emulator, terminal_factory
):
    terminal = terminal_factory(live_server, "usb:ffff:ffff")  # no such USB device
    till = terminal.till(reader_check_interval_s=0.05)
    assert till.look_at_reader() is False
    assert till.status().reader_connected is False
    cancelled = threading.Timer(0.3, till.cancel)
    cancelled.start()
    assert till.pay(100, card_timeout_s=10).outcome == Outcome.CANCELLED
    cancelled.join()


def test_cli_commands_without_a_card_leave_the_reader_alone(
    live_server, card_emulator, terminal_factory
):
    """`status`, `sync`, `void` run while the app holds the reader: they must not try to
    open it (an absent reader path would be tried and warned about)."""
    terminal = terminal_factory(live_server, card_emulator.reader_path)
    cli = [sys.executable, "-m", "hcard.terminal.cli", "--state", str(terminal.state_dir)]
    for command in ("status", "sync", "day-close"):
        done = subprocess.run(
            [*cli, "--reader", "usb:ffff:ffff", command],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "usb:ffff:ffff" not in done.stderr, done.stderr
