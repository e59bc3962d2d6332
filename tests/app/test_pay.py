"""The till app end to end: real window (Xvfb), real TerminalTill, emulated card over
nfcpy udp:, real server on loopback. Everything is pressed through touch events."""

import re
from types import SimpleNamespace

import pytest
from fixtures.terminal import server_card

pytestmark = [pytest.mark.gui, pytest.mark.slow]  # slow: started first (conftest.py)


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
    app.stop()  # SIGTERM, as systemd sends it: the app closes the till and exits cleanly
    assert app.process.returncode == 0, app.log()


def test_cancel_on_the_tap_prompt_returns_to_the_amount(enrolled_terminal, till_app):
    app = till_app(enrolled_terminal)
    app.type_amount("500")
    app.press("pay")
    app.wait_screen("tap")
    app.press("cancel")
    state = app.wait_screen("amount")
    assert state["texts"]["notice"] == "Abgebrochen: keine Karte."
    assert state["texts"]["amount"] == "5,00\u00a0€"  # kept for the next try


RESULT_TEXTS = ["title", "amount", "details", "reason", "still_to_pay"]  # top to bottom


def receipt_no(details: str) -> int:
    for line in details.splitlines():
        if line.startswith("Beleg-Nr. "):
            return int(line.removeprefix("Beleg-Nr. "))
    raise AssertionError(f"no receipt number in {details!r}")


def test_offline_payment_then_sync_from_the_status_bar(
    live_server, card_emulator, terminal_factory, net_proxy, till_app
):
    proxy = net_proxy(live_server.url)
    terminal = terminal_factory(live_server, card_emulator.reader_path, proxy=proxy)
    number, image = server_card(live_server, 5_000)
    card_emulator.present(image)
    app = till_app(terminal)
    # The sync agent fetches the snapshot (offline limits, keys) when the till starts.
    app.wait(lambda _s: (terminal.state_dir / "snapshot.json").exists(), "a first sync")
    state = app.state()
    assert state["texts"]["status.online"] == "● Online"
    assert state["texts"]["status.unsynced"] == "✓ Alles übertragen"
    assert "last_sync" not in state["texts"]  # no "Sync 12:52": the time goes with OFFLINE

    proxy.mode = "down"
    app.type_amount("800")
    app.press("pay")
    state = app.wait_screen("result")
    assert state["texts"]["title"] == "Bezahlt", state["texts"]
    assert "Offline: wird später übertragen" in state["texts"]["details"]
    # the failed online try before it used up a journal seq, not a receipt number
    assert receipt_no(state["texts"]["details"]) == 1
    # 800x480: the amount, the three lines under it and the button do not touch
    app.assert_texts_apart(RESULT_TEXTS, below="done", min_gap=6)
    assert live_server.staff.card(number)["balance_cents"] == 5_000  # not there yet
    state = app.wait(
        lambda s: (
            "OFFLINE" in s["texts"]["status.online"]
            and s["texts"]["status.unsynced"] != "✓ Alles übertragen"
        ),
        "the status bar to show offline with records waiting",
    )
    # the failed online try and the offline payment: two records, in the cashier's words
    assert state["texts"]["status.unsynced"] == "2 Buchungen warten auf Übertragung"
    assert re.fullmatch(r"✗ OFFLINE seit \d\d:\d\d", state["texts"]["status.online"])

    proxy.mode = "pass"
    app.press("status")  # tap the bar: sync now
    app.wait(
        lambda s: (
            s["texts"]["status.unsynced"] == "✓ Alles übertragen"
            and s["texts"]["status.online"] == "● Online"
        ),
        "the status bar to show everything sent",
    )
    assert live_server.staff.card(number)["balance_cents"] == 4_200


def test_blocked_card_is_declined_with_the_reason_in_german(
    live_server, enrolled_terminal, card_emulator, till_app
):
    number, image = server_card(live_server, 5_000)
    live_server.staff.block(number)
    card_emulator.present(image)
    app = till_app(enrolled_terminal)
    app.type_amount("1000")
    app.press("pay")
    state = app.wait_screen("result")
    assert state["texts"]["title"] == "Abgelehnt"
    assert state["texts"]["reason"] == "Karte gesperrt."
    assert state["sound"] == "declined"
    with pytest.raises(AssertionError, match="disabled or hidden"):
        app.press("partial")  # nothing to offer on a blocked card
    app.press("done")
    assert app.wait_screen("amount")["texts"]["amount"] == "10,00\u00a0€"  # kept to retry
    assert live_server.staff.card(number)["balance_cents"] == 5_000


def test_short_balance_offers_partial_payment_and_shows_the_rest(
    live_server, enrolled_terminal, card_emulator, till_app
):
    number, image = server_card(live_server, 700)
    card_emulator.present(image)
    app = till_app(enrolled_terminal)
    app.type_amount("1000")
    app.press("pay")
    state = app.wait_screen("result")
    texts = state["texts"]
    assert (texts["title"], texts["reason"]) == ("Abgelehnt", "Guthaben reicht nicht.")
    assert texts["still_to_pay"] == "7,00\u00a0€ jetzt abbuchen, 3,00\u00a0€ anders bezahlen"
    app.assert_texts_apart(RESULT_TEXTS, below="done", min_gap=6)

    app.press("partial")
    state = app.wait(
        lambda s: s["screen"] == "result" and s["texts"]["title"] == "Teilzahlung bezahlt",
        "the partial payment",
    )
    assert state["texts"]["amount"] == "7,00\u00a0€"
    assert state["texts"]["still_to_pay"] == "Noch anders zu bezahlen: 3,00\u00a0€"
    app.assert_texts_apart(RESULT_TEXTS, below="done", min_gap=6)
    assert live_server.staff.card(number)["balance_cents"] == 0


def test_void_needs_the_manager_pin(live_server, enrolled_terminal, card_emulator, till_app):
    number, image = server_card(live_server, 5_000)
    card_emulator.present(image)
    app = till_app(enrolled_terminal, manager_pin="4711")
    app.type_amount("1250")
    app.press("pay")
    receipt = receipt_no(app.wait_screen("result")["texts"]["details"])
    app.press("done")
    app.wait_screen("amount")

    app.press("today")
    app.wait(lambda s: s["screen"] == "today" and not s["busy"], "today's list")
    app.press("void", within={"receipt_no": receipt, "voidable": True})
    assert app.wait_screen("pin")["texts"]["message"] == "Manager-PIN"
    app.type_amount("1234", keypad="keypad")
    app.press("ok")
    assert app.wait_screen("pin")["texts"]["message"] == "PIN falsch."
    app.type_amount("4711")
    app.press("ok")
    state = app.wait(
        lambda s: s["screen"] == "result" and s["texts"]["title"] == "Storniert", "the void"
    )
    assert state["texts"]["amount"] == "12,50\u00a0€"

    app.press("status")  # sync now: the server books the void
    app.wait(lambda s: s["texts"]["status.unsynced"] == "✓ Alles übertragen", "the void to be sent")
    assert live_server.staff.card(number)["balance_cents"] == 5_000
    app.press("done")
    app.press("today")
    app.wait(lambda s: s["screen"] == "today" and not s["busy"], "today's list")
    with pytest.raises(AssertionError, match="disabled or hidden"):  # already voided
        app.press("void", within={"receipt_no": receipt, "voidable": False})


def test_day_close_shows_totals_and_prints_them(
    live_server, enrolled_terminal, card_emulator, till_app, tmp_path
):
    _, image = server_card(live_server, 5_000)
    card_emulator.present(image)
    printer_file = tmp_path / "printer.bin"
    app = till_app(enrolled_terminal, printer=f"file:{printer_file}")
    for digits in ("1250", "480"):
        app.type_amount(digits)
        app.press("pay")
        app.wait_screen("result")
        app.press("done")
        app.wait_screen("amount")
    app.press("topup")  # cash for the operator, apart from the sales
    app.wait_screen("topup")
    app.type_amount("2000")
    app.press("load")
    app.wait(lambda s: s["texts"].get("title") == "Aufgeladen", "the top-up")
    app.press("done")
    app.wait_screen("amount")

    app.press("dayclose")
    app.wait_screen("dayclose")
    app.press("run")
    state = app.wait(
        lambda s: s["texts"]["printed"] == "Beleg gedruckt.", "the receipt to be printed"
    )
    texts = state["texts"]
    assert (texts["count"], texts["sum"], texts["offline"]) == ("2", "17,30\u00a0€", "0")
    assert texts["receipts"] == "1 – 3"
    assert (texts["topups"], texts["topup_voids"]) == ("1  (20,00\u00a0€)", "0  (0,00\u00a0€)")
    assert texts["operator_cash"] == "20,00\u00a0€"
    # 800x480: the top-up block's figures inside their places, apart, above the message
    app.assert_texts_apart(["topups", "topup_voids", "operator_cash"], below="printed", min_gap=4)
    receipt = printer_file.read_bytes()
    assert b"Tagesabschluss" in receipt
    assert b"1-3" in receipt
    assert b"17,30" in receipt
    assert b"Aufladungen" in receipt
    assert b"Bargeld f" in receipt  # the printer's code page spells the "ü"
    assert receipt.endswith(b"\x1dV\x00")  # ESC/POS full cut


def test_day_close_without_printer_is_skipped_cleanly(enrolled_terminal, till_app):
    app = till_app(enrolled_terminal)
    app.press("dayclose")
    app.wait_screen("dayclose")
    app.press("run")
    state = app.wait(lambda s: s["texts"]["count"] == "0", "the totals")
    assert state["texts"]["printed"] == "Kein Drucker eingerichtet: nicht gedruckt."


def test_gastronomy_tip_is_added_before_paying(
    live_server, enrolled_terminal, card_emulator, till_app
):
    number, image = server_card(live_server, 10_000)
    card_emulator.present(image)
    app = till_app(enrolled_terminal, mode="gastronomy", size=(800, 1280))
    app.type_amount("4280")
    app.press("pay")
    state = app.wait_screen("tip")
    assert state["texts"]["total"] == "42,80\u00a0€"
    app.press("tip_2")  # keypad.TIP_PERCENTS[1]: 10 %
    assert app.text("tip") == "4,28\u00a0€"
    app.type_amount("500")  # a free tip replaces the percentage
    state = app.state()
    assert (state["texts"]["tip"], state["texts"]["total"]) == ("5,00\u00a0€", "47,80\u00a0€")
    app.press("pay")
    state = app.wait_screen("result")
    assert (state["texts"]["title"], state["texts"]["amount"]) == ("Bezahlt", "47,80\u00a0€")
    assert live_server.staff.card(number)["balance_cents"] == 10_000 - 4_780


def test_settings_behind_the_pin_switch_the_language(enrolled_terminal, till_app):
    app = till_app(enrolled_terminal, size=(1280, 800))
    app.press("settings")
    app.wait_screen("pin")
    app.type_amount("4711")
    app.press("ok")
    state = app.wait_screen("settings")
    assert state["texts"]["enrolment"].startswith("Angemeldet als Terminal")
    app.press("lang_en")
    app.press("back")
    state = app.wait_screen("amount")
    assert state["texts"]["pay"] == "Pay"
    assert state["texts"]["amount"] == "€0.00"
    assert state["texts"]["status.unsynced"] == "✓ All sent"
    assert state["texts"]["status.reader"] == "✓ Card reader"


def test_balance_check_shows_balance_and_recent_payments(
    live_server, enrolled_terminal, card_emulator, till_app
):
    number, image = server_card(live_server, 5_000)
    card_emulator.present(image)
    app = till_app(enrolled_terminal, size=(1280, 800))
    app.type_amount("1250")
    app.press("pay")
    app.wait_screen("result")
    app.press("done")

    app.press("balance")
    state = app.wait(
        lambda s: s["screen"] == "balance" and s["texts"]["amount"], "the balance to be shown"
    )
    assert state["texts"]["amount"] == "37,50\u00a0€"
    assert state["texts"]["title"] == "•••• " + number.replace(" ", "")[-4:]
    assert "12,50" in state["texts"]["recent"]
    app.press("back")
    app.wait_screen("amount")


def test_a_till_that_is_not_enrolled_says_so(tmp_path, till_app):
    app = till_app(SimpleNamespace(state_dir=tmp_path / "fresh"))
    state = app.state()
    assert state["texts"]["notice"] == "Diese Kasse ist noch nicht angemeldet."
    app.type_amount("100")
    app.press("pay")
    state = app.state()
    assert state["screen"] == "amount"
    assert state["texts"]["notice"] == "Diese Kasse ist noch nicht angemeldet."


def test_no_card_within_the_timeout_goes_back_to_the_amount(enrolled_terminal, till_app):
    app = till_app(enrolled_terminal, card_timeout_s=5)
    app.type_amount("500")
    app.press("pay")
    app.wait_screen("tap")
    state = app.wait(lambda s: s["screen"] == "amount", "the tap prompt to time out", timeout_s=60)
    assert state["texts"]["notice"] == "Abgebrochen: keine Karte."


def test_topup_button_loads_cash_onto_the_card_without_the_pin(
    live_server, enrolled_terminal, card_emulator, till_app
):
    """Aufladen: the cashier's everyday top-up, no manager PIN (docs/app.md)."""
    number, image = server_card(live_server, 500)
    card_emulator.present(image)
    app = till_app(enrolled_terminal)
    app.type_amount("999")  # a sale being typed is kept apart from the top-up
    app.press("topup")
    state = app.wait_screen("topup")
    assert state["texts"]["amount"] == "0,00\u00a0€"
    assert state["texts"]["title"] == "Aufladen (Bargeld)"
    app.type_amount("2000")
    assert app.text("amount") == "20,00\u00a0€"
    app.press("load")
    state = app.wait(
        lambda s: s["screen"] == "result" and s["texts"]["title"] == "Aufgeladen", "the top-up"
    )
    texts = state["texts"]
    assert texts["amount"] == "20,00\u00a0€"
    assert "Neues Guthaben: 25,00\u00a0€" in texts["details"]
    assert receipt_no(texts["details"]) == 1
    assert state["sound"] == "approved"
    app.assert_texts_apart(RESULT_TEXTS, below="done", min_gap=6)
    assert live_server.staff.card(number)["balance_cents"] == 2_500

    app.press("done")
    state = app.wait_screen("amount")
    assert state["texts"]["amount"] == "9,99\u00a0€"  # the sale's amount is still there
    app.press("topup")
    assert app.wait_screen("topup")["texts"]["amount"] == "0,00\u00a0€"  # a new top-up
    app.press("back")
    app.wait_screen("amount")


def test_topup_without_the_server_is_declined_in_the_cashiers_words(
    live_server, card_emulator, terminal_factory, net_proxy, till_app
):
    proxy = net_proxy(live_server.url)
    terminal = terminal_factory(live_server, card_emulator.reader_path, proxy=proxy)
    number, image = server_card(live_server, 500)
    card_emulator.present(image)
    proxy.mode = "down"
    app = till_app(terminal)
    app.press("topup")
    app.wait_screen("topup")
    # the status bar knows it is offline: the top-up screen says so before the tap
    state = app.wait(
        lambda s: s["texts"]["notice"] == "Aufladen geht nur mit Verbindung zum Server.",
        "the offline warning on the top-up screen",
    )
    app.type_amount("1000")
    app.press("load")
    state = app.wait(
        lambda s: s["screen"] == "result" and s["texts"]["title"] == "Nicht aufgeladen",
        "the declined top-up",
    )
    assert state["texts"]["reason"] == "Aufladen geht nur mit Verbindung zum Server."
    assert state["texts"]["amount"] == "10,00\u00a0€"
    assert state["sound"] == "declined"
    with pytest.raises(AssertionError, match="disabled or hidden"):
        app.press("partial")  # never a partial top-up
    app.press("done")
    state = app.wait_screen("topup")  # back to the top-up, its amount kept to try again
    assert state["texts"]["amount"] == "10,00\u00a0€"
    assert live_server.staff.card(number)["balance_cents"] == 500


def _top_up(app, digits: str) -> int:
    """Top the card on the reader up with `digits` cents; the receipt number shown."""
    app.press("topup")
    app.wait_screen("topup")
    app.type_amount(digits)
    app.press("load")
    state = app.wait(lambda s: s["texts"].get("title") == "Aufgeladen", "the top-up")
    receipt = receipt_no(state["texts"]["details"])
    app.press("done")
    return receipt


def _void_behind_the_pin(app, receipt: int) -> None:
    """Today's list → void `receipt` → the manager PIN."""
    app.press("today")
    app.wait(lambda s: s["screen"] == "today" and not s["busy"], "today's list")
    app.press("void", within={"receipt_no": receipt, "voidable": True})
    app.wait_screen("pin")
    app.type_amount("4711")
    app.press("ok")


def test_topup_is_voided_with_its_card_after_the_pin(
    live_server, enrolled_terminal, card_emulator, till_app
):
    """Cash back for a top-up: manager PIN, then the card, which is written down."""
    number, image = server_card(live_server, 500)
    path = card_emulator.present(image)
    app = till_app(enrolled_terminal)
    receipt = _top_up(app, "2000")
    app.wait_screen("amount")
    card_emulator.remove()  # the customer took the card; it comes back for the void

    _void_behind_the_pin(app, receipt)
    state = app.wait_screen("tap")
    assert state["texts"]["title"] == f"Storno Aufladung {receipt}: Karte auflegen"
    assert state["texts"]["amount"] == "20,00\u00a0€"
    card_emulator.present(path)
    state = app.wait(
        lambda s: s["screen"] == "result" and s["texts"]["title"] == "Storniert", "the void"
    )
    texts = state["texts"]
    assert texts["amount"] == "20,00\u00a0€"
    assert "Neues Guthaben: 5,00\u00a0€" in texts["details"]
    assert texts["still_to_pay"] == "Bargeld zurückgeben: 20,00\u00a0€"
    app.assert_texts_apart(RESULT_TEXTS, below="done", min_gap=6)

    app.press("status")  # sync now: the server takes the top-up back
    app.wait(lambda s: s["texts"]["status.unsynced"] == "✓ Alles übertragen", "the void to be sent")
    assert live_server.staff.card(number)["balance_cents"] == 500
    assert live_server.staff.ledger_check()["ok"]
    app.press("done")
    app.press("today")
    app.wait(lambda s: s["screen"] == "today" and not s["busy"], "today's list")
    with pytest.raises(AssertionError, match="disabled or hidden"):  # already voided
        app.press("void", within={"receipt_no": receipt, "voidable": False})


def test_topup_void_with_another_card_says_so(
    live_server, enrolled_terminal, card_emulator, till_app
):
    _number, image = server_card(live_server, 500)
    card_emulator.present(image)
    app = till_app(enrolled_terminal)
    receipt = _top_up(app, "1000")
    _other_number, other = server_card(live_server, 500)
    card_emulator.present(other, name="other")
    _void_behind_the_pin(app, receipt)
    state = app.wait(
        lambda s: s["screen"] == "result" and s["texts"]["title"] == "Nicht storniert",
        "the refused void",
    )
    assert state["texts"]["reason"] == "Das ist nicht die Karte dieser Aufladung."
    assert state["texts"]["amount"] == "10,00\u00a0€"  # the top-up's amount, not voided
    assert state["texts"]["still_to_pay"] == ""  # no cash back
