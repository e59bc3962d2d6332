"""kill -9 of the till process at random points during 100 payments, online and offline.

Checked against the server's ledger after sync:
- no approved payment is lost: every "APPROVED <seq>" the till printed is booked;
- none is booked twice: each payment seq appears once in the card's history;
- none is booked that the till never showed as approved: booked (net of the
  terminal's own voids) equals the journal's `final` payments, and a final
  payment without its printed line can only be the one a kill hit between
  `pay` returning and the print (at most one per kill);
- receipt numbers: each printed number is the one the journal keeps for that
  payment after every later kill, and the final payments are numbered 1..n
  without a gap (cancelled and unanswered tries take none).
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fixtures.card import CARD_KINDS
from fixtures.terminal import server_card

from hcard.terminal import journal as jr

pytestmark = pytest.mark.slow  # minutes on one worker: started first (conftest.py)

DRIVER = Path(__file__).with_name("kill_driver.py")
APPROVED_MIN = 100
KILLS_MIN = 20
INITIAL_CENTS = 500_000
LIMITS = {
    "HCARD_LIMIT_PER_PAYMENT_CENTS": "100000",
    "HCARD_LIMIT_PER_CARD_DAY_CENTS": "1000000",
    "HCARD_LIMIT_CONSECUTIVE_OFFLINE": "100000",
}


def _start(terminal, *extra):
    process = subprocess.Popen(
        [sys.executable, str(DRIVER), str(terminal.state_dir), terminal.reader_path, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []

    def read():
        with process.stdout:
            for line in process.stdout:
                lines.append(line.strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return process, lines, reader


def _wait_for(lines, prefix, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(line.startswith(prefix) for line in lines):
            return
        time.sleep(0.01)
    raise AssertionError(f"driver never printed {prefix!r}: {lines[-5:]}")


#: every card type, every stack; not an NTAG215 on PC/SC: a kill there is the 424's PC/SC
#: case (the till's reader dies with the card held) and the NTAG215's udp one
KILL_KINDS = [kind for kind in CARD_KINDS if kind.id != "NTAG215-pcsc"]


@pytest.mark.parametrize(("card_type", "card_stack"), KILL_KINDS)
def test_kill9_during_100_payments_loses_nothing_and_books_nothing_unshown(
    server_factory, card_emulator, terminal_factory, net_proxy, card_type
):
    rng = random.Random(os.environ.get("HCARD_KILL_SEED", "kill9"))
    server = server_factory(env=LIMITS)
    proxy = net_proxy(server.url)
    terminal = terminal_factory(server, card_emulator.reader_path, proxy=proxy)
    number, image = server_card(server, INITIAL_CENTS, chip=card_type)
    card_emulator.present(image)

    printed: set[int] = set()
    receipts: dict[int, int] = {}  # seq -> receipt number printed
    kills = 0
    started = time.monotonic()
    while len(printed) < APPROVED_MIN or kills < KILLS_MIN:
        assert time.monotonic() - started < 120, "kill test too slow"
        # online, offline, and answers lost after the server acted (authorise, sync)
        proxy.mode = ("pass", "down", "pass", "lose_answer")[kills % 4]
        process, lines, reader = _start(terminal)
        _wait_for(lines, "READY")
        time.sleep(rng.uniform(0.02, 0.4))
        if rng.random() < 0.3:
            proxy.mode = rng.choice(["pass", "down", "lose_answer"])
            time.sleep(rng.uniform(0.0, 0.2))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        reader.join(timeout=30)
        kills += 1
        for line in lines:
            if line.startswith("APPROVED "):
                seq, receipt = map(int, line.split()[1:3])
                assert seq not in printed, f"seq {seq} approved twice"
                assert receipt not in receipts.values(), f"receipt {receipt} shown twice"
                printed.add(seq)
                receipts[seq] = receipt

    proxy.mode = "pass"
    process, lines, reader = _start(terminal, "--settle")
    assert process.wait(timeout=90) == 0, lines
    reader.join(timeout=30)
    assert "SETTLED" in lines

    journal = jr.Journal(
        terminal.state_dir / "journal.sqlite", terminal.terminal_id, _key(terminal)
    )
    try:
        assert journal.verify() is None
        entries = journal.entries()
    finally:
        journal.close()
    payments = {e.record.seq: e for e in entries if e.record.kind == "payment"}
    voids_of = {
        e.record.seq: e.record.body["voids_seq"] for e in entries if e.record.kind == "void"
    }
    final = {seq for seq, e in payments.items() if e.state == jr.State.FINAL}
    assert not any(
        e.state in (jr.State.INTENT, jr.State.UNSHOWN, jr.State.APPROVED) for e in payments.values()
    )

    assert printed <= final, sorted(printed - final)
    assert len(final - printed) <= kills
    assert {seq: payments[seq].receipt_no for seq in printed} == receipts
    assert sorted(payments[seq].receipt_no for seq in final) == list(range(1, len(final) + 1))
    assert all(e.receipt_no is None for seq, e in payments.items() if seq not in final)

    history = server.staff.call("GET", f"/v1/cards/{number}/history?limit=1000")["history"]
    mine = [h for h in history if h["terminal_id"] == terminal.terminal_id]
    paid = [h["seq"] for h in mine if h["kind"] == "payment"]
    voided = [h["seq"] for h in mine if h["kind"] == "void"]
    assert len(paid) == len(set(paid)), "a payment booked twice"
    booked = set(paid) - {voids_of[seq] for seq in voided}
    assert booked == final, (sorted(booked - final), sorted(final - booked))
    spent = sum(payments[seq].record.body["amount_cents"] for seq in final)
    card = server.staff.card(number)
    assert card["balance_cents"] == INITIAL_CENTS - spent
    assert not card.get("denied"), card
    assert not card.get("flagged"), card
    assert server.staff.ledger_check()["ok"]
    purse = _card_purse(card_emulator, terminal)
    assert purse <= card["balance_cents"], "the card may only err low"
    offline = sum(1 for seq in final if payments[seq].record.body["mode"] == "offline")
    cancelled = sum(1 for e in payments.values() if e.state == jr.State.CANCELLED)
    print(
        f"kills {kills}, final {len(final)} ({offline} offline), printed {len(printed)},"
        f" cancelled {cancelled}, declined/unanswered"
        f" {sum(1 for e in payments.values() if e.state == jr.State.DECLINED)}"
    )
    assert 0 < offline < len(final), "both online and offline payments must be exercised"


def _key(terminal):
    from hcard import keys

    return keys.load_private(terminal.state_dir / "terminal.key")


def _card_purse(card_emulator, terminal):
    from hcard.terminal.core import TerminalTill

    till = TerminalTill(terminal.state_dir, start_sync=False)
    try:
        session = till.reader.wait_for_card(10)
        try:
            return session.read(till.card_keys()).purse.balance_cents
        finally:
            session.close()
    finally:
        till.close()
