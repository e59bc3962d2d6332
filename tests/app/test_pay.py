"""The till app end to end: real window (Xvfb), real TerminalTill, emulated card over
nfcpy udp:, real server on loopback. Everything is pressed through touch events."""

import pytest
from fixtures.terminal import server_card

pytestmark = pytest.mark.gui


def test_type_amount_pay_and_see_approved_while_the_ui_keeps_running(
    live_server, enrolled_terminal, card_emulator, till_app
):
    number, image = server_card(live_server, 5_000)
    app = till_app(enrolled_terminal)
    app.wait_screen("amount")

    app.type_amount("1250")
    assert app.text("amount") == "12,50\u00a0€"
    app.press("keypad.kback")
    assert app.text("amount") == "1,25\u00a0€"
    app.press("keypad.k0")
    app.press("pay")
    state = app.wait_screen("tap")
    assert state["texts"]["title"] == "Karte auflegen"
    assert state["texts"]["amount"] == "12,50\u00a0€"

    # No card yet: the till waits on its own thread and the UI still answers at once.
    for _ in range(5):
        assert app.state()["screen"] == "tap"

    card_emulator.present(image)
    state = app.wait_screen("result")
    texts = state["texts"]
    assert texts["title"] == "Bezahlt", texts
    assert texts["amount"] == "12,50\u00a0€"
    assert "Restguthaben: 37,50\u00a0€" in texts["details"]
    assert "Beleg-Nr." in texts["details"]
    assert state["sound"] == "approved"
    assert live_server.staff.card(number)["balance_cents"] == 3_750

    app.press("done")
    state = app.wait_screen("amount")
    assert state["texts"]["amount"] == "0,00\u00a0€"


def test_cancel_on_the_tap_prompt_returns_to_the_amount(enrolled_terminal, till_app):
    app = till_app(enrolled_terminal)
    app.type_amount("500")
    app.press("pay")
    app.wait_screen("tap")
    app.press("cancel")
    state = app.wait_screen("amount")
    assert state["texts"]["notice"] == "Abgebrochen: keine Karte."
    assert state["texts"]["amount"] == "5,00\u00a0€"  # kept for the next try
