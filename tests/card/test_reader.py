"""The reader never hangs, can be cancelled, and comes back after an unplug."""

from __future__ import annotations

import threading
import time

from fixtures.card import card_keys, issued_card

from hcard import cardnumber, keys
from hcard.terminal.card import open_reader

ISSUER = keys.generate()
NUMBER = cardnumber.from_serial(99)


def test_no_card_returns_none_after_timeout(card_emulator):
    reader = open_reader(card_emulator.reader_path)
    try:
        started = time.monotonic()
        assert reader.wait_for_card(timeout_s=0.5) is None
        # nfcpy's udp driver waits up to 1 s for a SENS_RES; bounded, never forever.
        assert time.monotonic() - started < 5
        assert reader.connected
    finally:
        reader.close()


def test_cancel_from_another_thread(card_emulator):
    reader = open_reader(card_emulator.reader_path)
    cancel = threading.Event()
    try:
        threading.Timer(0.2, cancel.set).start()
        started = time.monotonic()
        assert reader.wait_for_card(timeout_s=60, cancel=cancel) is None
        assert time.monotonic() - started < 5
    finally:
        reader.close()


def test_card_put_down_while_waiting_is_found(card_emulator):
    reader = open_reader(card_emulator.reader_path)
    try:
        threading.Timer(0.3, card_emulator.present, [issued_card(ISSUER, NUMBER)]).start()
        session = reader.wait_for_card(timeout_s=30)
        assert session is not None
        assert session.read(card_keys(ISSUER)).card_number == NUMBER
    finally:
        reader.close()


def test_wait_removed(card_emulator):
    card_emulator.present(issued_card(ISSUER, NUMBER))
    reader = open_reader(card_emulator.reader_path)
    try:
        session = reader.wait_for_card(timeout_s=10)
        assert session is not None
        assert not session.wait_removed(timeout_s=0.2)  # still there
        card_emulator.remove()
        assert session.wait_removed(timeout_s=10)
    finally:
        reader.close()


def test_reader_unplugged_and_plugged_back_recovers(card_emulator):
    card = issued_card(ISSUER, NUMBER)
    card_emulator.present(card)
    reader = open_reader(card_emulator.reader_path)
    try:
        assert reader.wait_for_card(timeout_s=10) is not None
        card_emulator.stop()  # the emulator process is gone: the "reader" has no card, ever
        assert reader.wait_for_card(timeout_s=0.5) is None
        card_emulator.start()  # same ports
        card_emulator.present(card)
        session = reader.wait_for_card(timeout_s=30)
        assert session is not None
        assert session.read(card_keys(ISSUER)).card_number == NUMBER
    finally:
        reader.close()


def test_device_that_cannot_be_opened_is_reported_and_retried():
    reader = open_reader("udp:no-such-host.invalid:54321")
    try:
        started = time.monotonic()
        assert reader.wait_for_card(timeout_s=0.6) is None  # no exception, no hang
        assert time.monotonic() - started < 5
        assert not reader.connected
    finally:
        reader.close()


def test_device_lost_under_the_reader_is_reopened(card_emulator, caplog):
    """nfcpy raises IOError(ENODEV) once its device is gone (USB unplug closes it)."""
    card_emulator.present(issued_card(ISSUER, NUMBER))
    reader = open_reader(card_emulator.reader_path)
    try:
        assert reader.wait_for_card(timeout_s=10) is not None
        reader._clf.device.close()  # what a vanished USB device leaves behind
        reader._clf.device = None
        session = reader.wait_for_card(timeout_s=30)  # lost, backoff, reopened
        assert session is not None
        assert reader.connected
        assert "lost" in caplog.text
    finally:
        reader.close()
