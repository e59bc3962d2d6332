"""The till's day: voids by receipt number, today's list, day close; and the CLI on it."""

import json
import sqlite3
import subprocess
import sys

from fixtures.card import TEST_WRITE_SECRET
from fixtures.terminal import server_card

from hcard.errors import Code
from hcard.terminal.card import TEST_PUBLIC_KEY_HEX
from hcard.terminal.till import Outcome


def test_void_today_and_day_close(live_server, card_emulator, enrolled_terminal):
    number, image = server_card(live_server, 10_000)
    card_emulator.present(image)
    till = enrolled_terminal.till()
    till.sync_now()
    online = till.pay(1_000, card_timeout_s=10)
    till.link.down()
    offline = till.pay(500, 50, card_timeout_s=10)
    assert online.outcome == offline.outcome == Outcome.APPROVED

    voided = till.void(online.receipt_no)  # no card needed
    assert voided.outcome == Outcome.APPROVED
    assert voided.amount_cents == 1_000
    again = till.void(online.receipt_no)
    assert (again.outcome, again.code) == (Outcome.DECLINED, Code.ALREADY_VOIDED)
    unknown = till.void(999)
    assert unknown.code == Code.PAYMENT_NOT_FOUND

    today = {entry.receipt_no: entry for entry in till.today()}
    assert set(today) == {online.receipt_no, offline.receipt_no}
    assert today[online.receipt_no].voided
    assert today[offline.receipt_no].offline
    assert today[offline.receipt_no].tip_cents == 50

    totals = till.day_close()
    assert (totals.count, totals.sum_cents, totals.void_count, totals.void_sum_cents) == (
        2,
        1_500,
        1,
        1_000,
    )
    assert totals.offline_count == 1
    assert totals.unsynced_count > 0
    assert till.today() == []
    late = till.void(offline.receipt_no)
    assert late.code == Code.VOID_TOO_LATE

    till.sync_now()
    assert till.status().unsynced_count == 0
    assert live_server.staff.card(number)["balance_cents"] == 10_000 - 500
    assert live_server.staff.ledger_check()["ok"]


def _cli(state, *args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "hcard.terminal.cli", "--state", str(state), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_enrol_pay_balance_void_sync_status_topup_day_close(
    live_server, card_emulator, tmp_path
):
    state = tmp_path / "till"
    merchant = live_server.staff.create_merchant("CLI-Laden")
    code = live_server.staff.create_terminal(merchant, "CLI")
    enrol = _cli(
        state,
        "--reader",
        card_emulator.reader_path,
        "enrol",
        "--server",
        live_server.url,
        "--code",
        code,
        "--originality-key",
        TEST_PUBLIC_KEY_HEX,
        "--card-secret",
        TEST_WRITE_SECRET.hex(),
    )
    assert enrol.returncode == 0, enrol.stderr
    assert "Angemeldet / enrolled" in enrol.stdout
    assert (state / "terminal.key").stat().st_mode & 0o777 == 0o600
    again = _cli(state, "enrol", "--server", live_server.url, "--code", code)
    assert again.returncode == 3

    number, image = server_card(live_server, 5_000)
    card_emulator.present(image)
    assert _cli(state, "sync").returncode == 0
    paid = _cli(state, "pay", "12,50", "--tip", "1,00", "--timeout", "10")
    assert paid.returncode == 0, paid.stdout + paid.stderr
    assert "GENEHMIGT / APPROVED" in paid.stdout
    assert "13,50" in paid.stdout
    too_much = _cli(state, "pay", "99,00", "--timeout", "10")
    assert too_much.returncode == 1
    assert "insufficient_funds" in too_much.stdout
    assert "36,50" in too_much.stdout  # what is available
    balance = _cli(state, "balance", "--timeout", "10")
    assert balance.returncode == 0, balance.stdout + balance.stderr
    assert "36,50" in balance.stdout
    void = _cli(state, "void", "1")
    assert void.returncode == 0, void.stdout
    assert _cli(state, "sync").returncode == 0
    status = _cli(state, "status", "--json")
    assert json.loads(status.stdout)["unsent"] == 0
    topup = _cli(state, "topup", "10,00", "--timeout", "10")
    assert topup.returncode == 0, topup.stdout + topup.stderr
    assert "GENEHMIGT / APPROVED Aufladung / top-up 10,00" in topup.stdout
    # written to the card: its purse + 10 (the void of 13,50 is not on the card; the server's
    # 60,00 is never written over the card's lower purse, which may hold unsynced payments)
    assert "46,50" in topup.stdout
    close = _cli(state, "day-close")
    assert close.returncode == 0
    assert "Tagesabschluss / day close" in close.stdout
    assert live_server.staff.card(number)["balance_cents"] == 6_000
    bad = _cli(state, "pay", "zwölf")
    assert bad.returncode == 2
    assert "kein Betrag / not an amount" in bad.stderr

    with sqlite3.connect(state / "journal.sqlite") as db:  # one flipped byte in record 2
        wire = bytearray(db.execute("SELECT wire FROM records WHERE seq = 2").fetchone()[0])
        wire[40] ^= 0x01
        db.execute("UPDATE records SET wire = ? WHERE seq = 2", [bytes(wire)])
    damaged = _cli(state, "status")
    assert damaged.returncode == 3
    assert "'seq': 2" in damaged.stderr
