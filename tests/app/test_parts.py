"""The app's parts that need no window: keypad arithmetic, PIN, settings, printing,
and its texts in both languages (that every text is in the catalogues with its German and
English: tests/test_core_i18n.py, for every part at once)."""

import socket
import stat
import threading

import pytest

from hcard.money import MAX_AMOUNT_CENTS
from hcard.terminal import parse
from hcard.terminal.app import keypad, kivyconfig, pin, printer, settings
from hcard.terminal.till import DayTotals


def test_keypad_types_cents_right_to_left():
    amount = 0
    for digit in (1, 2, 5, 0):
        amount = keypad.push_digit(amount, digit)
    assert amount == 1250
    assert keypad.backspace(amount) == 125
    assert keypad.backspace(0) == 0
    assert keypad.push_digit(0, 0) == 0  # leading zeros stay invisible


def test_keypad_ignores_a_digit_that_passes_the_maximum():
    assert keypad.push_digit(MAX_AMOUNT_CENTS // 10, 0) == MAX_AMOUNT_CENTS
    assert keypad.push_digit(MAX_AMOUNT_CENTS, 1) == MAX_AMOUNT_CENTS
    with pytest.raises(ValueError, match="digit"):
        keypad.push_digit(0, 10)


@pytest.mark.parametrize(
    ("base", "percent", "tip"), [(4280, 10, 428), (4285, 10, 429), (999, 5, 50), (100, 0, 0)]
)
def test_tip_percent_rounds_half_up_to_a_cent(base, percent, tip):
    assert keypad.tip_for_percent(base, percent) == tip


def test_pin_is_stored_salted_and_checked():
    stored = pin.hash_pin("4711")
    assert "4711" not in stored
    assert stored != pin.hash_pin("4711")  # salted
    assert pin.check_pin("4711", stored)
    assert not pin.check_pin("4712", stored)
    assert not pin.check_pin("4711", None)
    assert not pin.check_pin("4711", "garbage$zz")


@pytest.mark.parametrize("bad", ["123", "123456789", "12a4", "١٢٣٤", ""])
def test_pin_must_be_four_to_eight_ascii_digits(bad):
    with pytest.raises(ValueError, match="PIN muss 4 bis 8 Ziffern haben"):
        pin.hash_pin(bad)


def test_settings_round_trip_with_mode_0600(tmp_path):
    assert settings.load(tmp_path) == settings.AppSettings()  # defaults before first save
    chosen = settings.AppSettings(language="en", mode="gastronomy", printer="net:10.0.0.5")
    settings.save(tmp_path, chosen)
    path = tmp_path / settings.FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.load(tmp_path) == chosen


@pytest.mark.parametrize(
    ("changes", "german"),
    [
        ({"language": "fr"}, "Sprache 'fr' unbekannt"),
        ({"mode": "bar"}, "Modus 'bar' unbekannt"),
        ({"printer": "usb:0x04b8"}, "Drucker 'usb:0x04b8' ungültig"),
        ({"printer": "net:host:99999"}, "Port ungültig"),
        ({"card_timeout_s": 1}, "Wartezeit auf die Karte"),
        ({"card_timeout_s": "30"}, "card_timeout_s: Wartezeit auf die Karte"),
        ({"card_timeout_s": True}, "card_timeout_s: Wartezeit auf die Karte"),
        ({"printer": 5}, "printer: ein Text erwartet"),
        ({"printer": "net:pos:²"}, "Port ungültig"),
        ({"manager_pin_hash": 4711}, "manager_pin_hash: ein Text erwartet"),
    ],
)
def test_bad_settings_are_refused_in_german_and_english(changes, german):
    with pytest.raises(ValueError, match=german) as refused:
        settings.AppSettings().with_changes(**changes)
    assert " / " in str(refused.value)  # English follows


def test_a_wrong_type_in_the_settings_file_names_the_field(tmp_path):
    (tmp_path / settings.FILE_NAME).write_text('{"card_timeout_s": "lang"}')
    with pytest.raises(ValueError, match="card_timeout_s: Wartezeit auf die Karte"):
        settings.load(tmp_path)


@pytest.mark.parametrize("bad", ["800", "800x", "x480", "0x480", "800x480x2", "８00x480", "²x1"])
def test_window_size_is_refused_by_name(bad):
    with pytest.raises(parse.SettingError, match=r"^--size: Größe .* ungültig, z. B. 800x480"):
        kivyconfig.parse_size(bad)
    assert kivyconfig.parse_size("800X480") == (800, 480)


def test_window_size_from_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("KIVY_NO_ARGS", "1")
    monkeypatch.setenv(kivyconfig.SIZE_ENV, "800x")
    with pytest.raises(parse.SettingError, match=r"^\$HCARD_APP_SIZE: Größe '800x' ungültig"):
        kivyconfig.configure()  # refused before Kivy is even imported


def test_unreadable_settings_file_says_so(tmp_path):
    (tmp_path / settings.FILE_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="nicht lesbar"):
        settings.load(tmp_path)


def test_printer_specs():
    assert printer.parse_printer_spec("") is None
    assert printer.parse_printer_spec("file:/dev/usb/lp0") == printer.PrinterSpec(
        "file", "/dev/usb/lp0"
    )
    assert printer.parse_printer_spec("net:192.168.1.50") == printer.PrinterSpec(
        "net", "192.168.1.50", 9100
    )
    assert printer.parse_printer_spec("net:pos:9101").port == 9101


TOTALS = DayTotals(
    count=38,
    sum_cents=61230,
    void_count=1,
    void_sum_cents=2390,
    offline_count=5,
    unsynced_count=4,
    first_receipt_no=1007,
    last_receipt_no=1045,
    topup_count=3,
    topup_sum_cents=600_000,
    topup_void_count=1,
    topup_void_sum_cents=2_000,
)


def test_day_close_receipt_fits_a_58mm_roll():
    lines = printer.day_close_lines(TOTALS, "Café am Untermarkt", lambda text: text, "de")
    assert all(len(line) <= printer.RECEIPT_WIDTH for line in lines)
    assert any(line.startswith("Total") and line.endswith("612,30 €") for line in lines)
    assert any(line.startswith("Receipts") and line.endswith(" 1007-1045") for line in lines)


@pytest.mark.parametrize("language", ["de", "en"])
def test_day_close_receipt_lists_topups_apart_with_the_operators_cash(language):
    from hcard.terminal.app.i18n import Translator

    lines = printer.day_close_lines(TOTALS, "Café", Translator(language)._, language)
    assert all(len(line) <= printer.RECEIPT_WIDTH for line in lines), lines
    expected = {
        "de": [
            "Aufladungen                    3",
            "Summe Aufladungen     6.000,00 €",
            "Stornierte Aufladungen         1",
            "Storno Aufladungen       20,00 €",
            "Bargeld für Betreiber 5.980,00 €",
        ],
        "en": [
            "Top-ups                        3",
            "Top-up total           €6,000.00",
            "Voided top-ups                 1",
            "Voided top-up amount      €20.00",
            "Cash for the operator  €5,980.00",
        ],
    }[language]
    start = lines.index(expected[0])
    assert lines[start : start + 5] == expected, lines
    # the payments' block comes first, apart
    assert lines.index(next(x for x in lines if x.startswith(("Zahlungen", "Payments")))) < start


def test_receipt_reaches_a_network_printer():
    received = bytearray()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve():
            conn, _ = listener.accept()
            with conn:
                while data := conn.recv(4096):
                    received.extend(data)

        thread = threading.Thread(target=serve)
        thread.start()
        spec = printer.parse_printer_spec(f"net:127.0.0.1:{port}")
        printer.print_lines(spec, ["Tagesabschluss", "Summe 612,30 €"])
        thread.join(10)
    assert b"Tagesabschluss" in received
    assert b"Summe 612,30 " in received
    assert received.endswith(b"\x1dV\x00")  # cut


def test_unreachable_printer_raises_printer_error():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    spec = printer.parse_printer_spec(f"net:127.0.0.1:{port}")  # nobody listens now
    with pytest.raises(printer.PrinterError):
        printer.print_lines(spec, ["x"], timeout_s=2)


@pytest.mark.parametrize(
    ("language", "count", "text"),
    [
        ("de", 1, "1 Buchung wartet auf Übertragung"),
        ("de", 3, "3 Buchungen warten auf Übertragung"),
        ("en", 1, "1 transaction waiting to be sent"),
        ("en", 3, "3 transactions waiting to be sent"),
    ],
)
def test_waiting_records_are_counted_in_singular_and_plural(language, count, text):
    from hcard.terminal.app.i18n import Translator

    tr = Translator(language)
    said = tr.ngettext(
        "{count} transaction waiting to be sent", "{count} transactions waiting to be sent", count
    )
    assert said.format(count=count) == text
    assert tr._("All sent") == {"de": "Alles übertragen", "en": "All sent"}[language]
