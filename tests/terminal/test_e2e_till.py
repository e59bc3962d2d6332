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


def test_receipt_numbers_have_no_gaps_when_an_online_try_falls_back_offline(
    live_server, card_emulator, terminal_factory, net_proxy
):
    """A failed online try, a decline and a cancelled card write use up journal seqs, never
    receipt numbers: the cashier sees 1, 2, 3, 4; a void by number hits the right payment."""
    proxy = net_proxy(live_server.url)
    terminal = terminal_factory(live_server, card_emulator.reader_path, proxy=proxy)
    number, image = server_card(live_server, 10_000)
    path = card_emulator.present(image)
    till = terminal.till()
    till.sync_now()

    proxy.mode = "down"  # the online try fails (its seq is used), the tap pays offline
    first = till.pay(1_000, card_timeout_s=10)
    assert (first.outcome, first.offline, first.receipt_no) == (Outcome.APPROVED, True, 1)
    assert first.seq == 2  # the journal keeps its own numbering
    proxy.mode = "hang"  # slow server: the next online try times out as well
    till.link.ok()
    second = till.pay(500, card_timeout_s=10)
    assert (second.outcome, second.offline, second.receipt_no) == (Outcome.APPROVED, True, 2)
    proxy.mode = "pass"
    till.sync_now()
    declined = till.pay(50_000, card_timeout_s=10)  # online, refused: no receipt
    assert (declined.outcome, declined.receipt_no) == (Outcome.DECLINED, None)
    frames = card_emulator.status()["frames"]
    third = till.pay(300, card_timeout_s=10)
    assert (third.outcome, third.offline, third.receipt_no) == (Outcome.APPROVED, False, 3)
    card_emulator.tear(card_emulator.status()["frames"] - frames - 3)  # pulled mid-write
    torn = till.pay(200, card_timeout_s=2)
    assert (torn.code, torn.receipt_no) == (Code.CARD_UNREADABLE, None)
    card_emulator.present(path)
    topup = till.topup(2_000, card_timeout_s=10)
    assert (topup.outcome, topup.receipt_no) == (Outcome.APPROVED, 4)

    voided = till.void(2)  # receipt 2, the 5,00 payment (journal seq 4)
    assert (voided.outcome, voided.amount_cents, voided.receipt_no) == (Outcome.APPROVED, 500, 2)
    assert till.void(2).code == Code.ALREADY_VOIDED
    assert till.needs_card_to_void(4)  # a top-up is voided with its card (test_e2e_topup.py)
    assert not till.needs_card_to_void(1)
    assert till.void(5).code == Code.PAYMENT_NOT_FOUND

    today = till.today()
    assert [entry.receipt_no for entry in today] == [1, 2, 3, 4]
    assert [entry.voided for entry in today] == [False, True, False, False]
    assert [entry.topup for entry in today] == [False, False, False, True]
    totals = till.day_close()
    assert (totals.count, totals.sum_cents, totals.void_count) == (3, 1_800, 1)
    assert (totals.first_receipt_no, totals.last_receipt_no) == (1, 4)

    till.close()
    reopened = terminal.till()  # the numbers survive a restart
    assert reopened.void(1).code == Code.VOID_TOO_LATE
    assert [e.receipt_no for e in reopened.journal.entries() if e.receipt_no] == [1, 2, 3, 4]
    reopened.sync_now()
    assert live_server.staff.card(number)["balance_cents"] == 10_000 - 1_000 - 300 + 2_000
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
    assert "Beleg / receipt 1 " in paid.stdout
    too_much = _cli(state, "pay", "99,00", "--timeout", "10")
    assert too_much.returncode == 1
    assert "insufficient_funds" in too_much.stdout
    assert "36,50" in too_much.stdout  # what is available
    balance = _cli(state, "balance", "--timeout", "10")
    assert balance.returncode == 0, balance.stdout + balance.stderr
    assert "36,50" in balance.stdout
    void = _cli(state, "void", "1")
    assert void.returncode == 0, void.stdout
    assert "Storno / void 13,50\u00a0€ — Beleg / receipt 1 " in void.stdout  # the voided one
    assert _cli(state, "sync").returncode == 0
    status = _cli(state, "status", "--json")
    assert json.loads(status.stdout)["unsent"] == 0
    topup = _cli(state, "topup", "10,00", "--timeout", "10")
    assert topup.returncode == 0, topup.stdout + topup.stderr
    assert "GENEHMIGT / APPROVED Aufladung / top-up 10,00" in topup.stdout
    assert "Beleg / receipt 2 " in topup.stdout  # the declined try and the void use none
    # written to the card: its purse + 10 (the void of 13,50 is not on the card; the server's
    # 60,00 is never written over the card's lower purse, which may hold unsynced payments)
    assert "46,50" in topup.stdout
    second = _cli(state, "topup", "5,00", "--timeout", "10")
    assert "Beleg / receipt 3 " in second.stdout, second.stdout + second.stderr
    back = _cli(state, "void", "3")  # a top-up: with its card, written down
    assert back.returncode == 0, back.stdout + back.stderr
    assert "Aufladung stornieren: Karte auflegen" in back.stderr
    assert "Storno Aufladung / top-up void 5,00\u00a0€ — Beleg / receipt 3 " in back.stdout
    assert "balance 46,50" in back.stdout  # the card's purse, 5,00 off again
    close = _cli(state, "day-close")
    assert close.returncode == 0
    assert "Tagesabschluss / day close" in close.stdout
    assert "Belege / receipts 1–3" in close.stdout
    # top-ups apart: two (15,00), one voided (5,00), the merchant holds 10,00 for the operator
    assert "2 Aufladungen / top-ups 15,00\u00a0€" in close.stdout, close.stdout
    assert "1 stornierte Aufladungen / voided top-ups 5,00\u00a0€" in close.stdout
    assert "Bargeld für den Betreiber / cash for the operator 10,00\u00a0€" in close.stdout
    assert _cli(state, "sync").returncode == 0
    assert live_server.staff.card(number)["balance_cents"] == 6_000
    assert live_server.staff.ledger_check()["ok"]
    bad = _cli(state, "pay", "zwölf")
    assert bad.returncode == 2
    assert "kein Betrag / not an amount" in bad.stderr

    # the acknowledged day is archived; a payment after the close stays in the live journal
    after = _cli(state, "pay", "1,00", "--timeout", "10")
    assert after.returncode == 0, after.stdout + after.stderr
    with sqlite3.connect(state / "journal.sqlite") as db:
        assert db.execute("SELECT count(*) FROM records WHERE seq = 2").fetchone()[0] == 0
        live_seq, wire = db.execute("SELECT seq, wire FROM records ORDER BY seq DESC").fetchone()
        flipped = bytearray(wire)  # one flipped byte in the live record
        flipped[40] ^= 0x01
        db.execute("UPDATE records SET wire = ? WHERE seq = ?", [bytes(flipped), live_seq])
    damaged = _cli(state, "status")
    assert damaged.returncode == 3
    assert f"'seq': {live_seq}" in damaged.stderr
    with sqlite3.connect(state / "journal.sqlite") as db:  # put it back, break the archive
        db.execute("UPDATE records SET wire = ? WHERE seq = ?", [wire, live_seq])
        first_seq, data = db.execute("SELECT first_seq, data FROM archive").fetchone()
        db.execute("UPDATE archive SET data = ? WHERE first_seq = ?", [data[:-8], first_seq])
    assert _cli(state, "status").returncode == 0  # the start checks only after the checkpoint
    archive = _cli(state, "verify-journal")
    assert archive.returncode == 3, archive.stdout + archive.stderr


def test_day_close_lists_payments_voids_and_topups_with_the_operators_cash(
    live_server, card_emulator, enrolled_terminal
):
    """Payments, voids and top-ups apart; the cash the merchant holds for the operator is the
    top-ups' cash less voided top-ups. The signed record keeps its fixed body (payments)."""
    number, image = server_card(live_server, 5_000)
    card_emulator.present(image)
    till = enrolled_terminal.till()
    till.sync_now()
    paid = till.pay(1_000, card_timeout_s=10)
    small = till.pay(300, card_timeout_s=10)
    assert till.void(small.receipt_no).outcome == Outcome.APPROVED
    first = till.topup(2_000, card_timeout_s=10)
    second = till.topup(500, card_timeout_s=10)
    assert first.outcome == second.outcome == paid.outcome == Outcome.APPROVED
    assert till.void(second.receipt_no, card_timeout_s=10).outcome == Outcome.APPROVED

    totals = till.day_close()
    assert (totals.count, totals.sum_cents, totals.void_count, totals.void_sum_cents) == (
        2,
        1_300,
        1,
        300,
    )
    assert (totals.topup_count, totals.topup_sum_cents) == (2, 2_500)
    assert (totals.topup_void_count, totals.topup_void_sum_cents) == (1, 500)
    assert totals.operator_cash_cents == 2_000
    assert (totals.first_receipt_no, totals.last_receipt_no) == (1, 4)
    (close,) = [e for e in till.journal.entries() if e.record.kind == "day_close"]
    assert close.record.body == {
        "count": 2,
        "sum_cents": 1_300,
        "void_count": 1,
        "void_sum_cents": 300,
        "offline_count": 0,
    }
    empty = till.day_close()  # the next business day starts empty
    assert (empty.topup_count, empty.operator_cash_cents) == (0, 0)
    till.sync_now()
    assert live_server.staff.card(number)["balance_cents"] == 5_000 - 1_000 + 2_000
    assert live_server.staff.ledger_check()["ok"]
