"""The issue's acceptance run: `hcard-provision cards issue` (the real command, in its own
process) writes a batch of 20 emulated cards through nfcpy's udp driver against the real
server; one write is torn and retried on the same card; the print file is right; every card
then pays on an enrolled terminal. And a revoked terminal's upload is refused and alerted."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fixtures.card import TEST_WRITE_SECRET
from fixtures.provisioning import BALANCE_URL, Operator
from fixtures.terminal import server_card

from hcard import cardnumber
from hcard.errors import Code, HCardError
from hcard.provisioning import cli, issuance
from hcard.terminal.card import image as images
from hcard.terminal.card import layout
from hcard.terminal.till import Outcome

BATCH_SIZE = 20
TORN_TAG = 6
RUN_TIMEOUT_S = 240

# What the operator reads on the screen, mapped to what they do.
_LINES = {
    "Nächste Karte auflegen": issuance.EventKind.PLACE,
    "Karte abnehmen": issuance.EventKind.REMOVE,
}


def _run_issue(argv: list[str], operator: Operator) -> tuple[int, list[str]]:
    """Run `hcard-provision` in a subprocess; the operator reacts to its prompts."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hcard.provisioning.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "250"},
    )
    killer = threading.Timer(RUN_TIMEOUT_S, process.kill)
    killer.start()
    lines = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if "Schreiben fehlgeschlagen" in line or "Karte nicht lesbar" in line:
                operator(issuance.Event(issuance.EventKind.RETRY))
            for prefix, kind in _LINES.items():
                if line.startswith(prefix):
                    operator(issuance.Event(kind))
        return process.wait(), lines
    finally:
        killer.cancel()


def test_batch_of_20_one_torn_write_retried_csv_right_every_card_pays(
    live_server, card_emulator, provision_login, terminal_factory, tmp_path: Path
):
    client, login_file = provision_login
    secret = tmp_path / "card-write-secret.hex"
    secret.write_text(TEST_WRITE_SECRET.hex() + "\n")
    operator = Operator(card_emulator, tmp_path, tear_on={TORN_TAG: 25})
    tags = [operator.blank() for _ in range(BATCH_SIZE)]
    batch_file, print_file = tmp_path / "herbst.json", tmp_path / "herbst.csv"

    code, lines = _run_issue(
        [
            "--login-file",
            str(login_file),
            "cards",
            "issue",
            "--count",
            str(BATCH_SIZE),
            "--batch",
            str(batch_file),
            "--csv",
            str(print_file),
            "--reader",
            card_emulator.reader_path,
            "--write-secret-file",
            str(secret),
            "--originality-key",
            "test",
            "--balance-url",
            BALANCE_URL,
            "--card-timeout",
            "60",
            "--max-attempts",
            "5",
        ],
        operator,
    )
    output = "\n".join(lines)
    assert code == 0, output
    assert f"({BATCH_SIZE} Karten / cards)" in output

    batch = issuance.Batch.load(batch_file)
    assert [e.status for e in batch.entries] == [issuance.Status.DONE] * BATCH_SIZE
    # The torn card needed a second attempt. (On a loaded machine another write may need
    # one too; every failed attempt was reported and retried on the same card.)
    attempts = [e.attempts for e in batch.entries]
    assert attempts[TORN_TAG] >= 2
    retries = sum("Schreiben fehlgeschlagen" in line for line in lines)
    assert retries == sum(attempts) - BATCH_SIZE, output
    uids = [images.load(tag).uid.hex() for tag in tags]
    assert [e.uid for e in batch.entries] == uids

    # The print file: every card, in order, with what the server signed for it.
    with print_file.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == BATCH_SIZE
    for entry, row in zip(batch.entries, rows, strict=True):
        number = entry.card_number
        card = live_server.staff.card(number)
        assert card["uid"] == entry.uid  # bound once, to this tag
        assert card["blocked"] is False
        expected_code = live_server.staff.check_code(number)
        assert row == {
            "card_number": cardnumber.pretty(number),
            "check_code": expected_code,
            "balance_url": f"{BALANCE_URL}/c/{number}",
            "qr_payload": f"{BALANCE_URL}/c/{number}?k={expected_code}",
        }
    # Every card is write-protected from its first user page on (AUTH0), reads stay open.
    for tag in tags:
        card_image = images.load(tag)
        assert card_image.page(card_image.chip.cfg0_page)[3] == layout.AUTH0

    # Top every card up with the CLI, then pay with each on a real terminal.
    for entry in batch.entries:
        argv = ["--login-file", str(login_file), "card", "topup", entry.card_number, "10,00"]
        assert cli.main(argv) == 0
    terminal = terminal_factory(live_server, card_emulator.reader_path)
    till = terminal.till()
    for tag, entry in zip(tags, batch.entries, strict=True):
        card_emulator.present(tag)
        result = till.pay(250, card_timeout_s=30)
        card_emulator.remove()
        assert result.outcome is Outcome.APPROVED, (entry.card_number, result)
        assert result.balance_cents == 750
    assert client.card(batch.entries[0].card_number)["balance_cents"] == 750


def test_rerunning_a_finished_batch_changes_nothing(
    live_server, card_emulator, provision_login, tmp_path: Path
):
    """The resume path through the real command: a finished batch writes no card again and
    reserves no new numbers."""
    _, login_file = provision_login
    secret = tmp_path / "secret.hex"
    secret.write_text(TEST_WRITE_SECRET.hex())
    operator = Operator(card_emulator, tmp_path)
    operator.blank()
    argv = [
        "--login-file",
        str(login_file),
        "cards",
        "issue",
        "--count",
        "1",
        "--batch",
        str(tmp_path / "b.json"),
        "--csv",
        str(tmp_path / "b.csv"),
        "--reader",
        card_emulator.reader_path,
        "--write-secret-file",
        str(secret),
        "--originality-key",
        "test",
        "--card-timeout",
        "30",
    ]
    assert _run_issue(argv, operator)[0] == 0
    before = json.loads((tmp_path / "b.json").read_text())
    code, lines = _run_issue(argv, operator)
    assert code == 0, lines
    assert not any(line.startswith("Nächste Karte") for line in lines)
    assert json.loads((tmp_path / "b.json").read_text()) == before


def test_a_revoked_terminal_is_refused(
    live_server, card_emulator, provision_login, terminal_factory, capsys
):
    _, login_file = provision_login
    number, image = server_card(live_server, 1_000)
    terminal = terminal_factory(live_server, card_emulator.reader_path)
    till = terminal.till()
    card_emulator.present(image)
    assert till.pay(300, card_timeout_s=30).outcome is Outcome.APPROVED
    card_emulator.remove()
    assert till.status().unsynced_count == 1

    argv = ["--login-file", str(login_file), "terminal", "revoke", str(terminal.terminal_id)]
    assert cli.main(argv) == 0
    assert "gesperrt" in capsys.readouterr().out

    # The till's upload is refused with the reason; its record stays unsent.
    with pytest.raises(HCardError) as refused:
        till.sync_now()
    assert refused.value.code is Code.TERMINAL_REVOKED
    assert till.status().unsynced_count == 1
    (listed,) = [
        t
        for t in live_server.staff.terminals(terminal.merchant_id)
        if t["id"] == terminal.terminal_id
    ]
    assert listed["status"] == "revoked"
    assert live_server.staff.card(number)["balance_cents"] == 700

    # Staff see it: one alert for the till (its own key signed the upload), repeats counted.
    def revoked_alerts() -> list[dict]:
        return [
            a
            for a in live_server.staff.alerts()
            if a["kind"] == "revoked_terminal" and a["terminal_id"] == terminal.terminal_id
        ]

    (alert,) = revoked_alerts()
    assert "/v1/terminal/sync" in alert["detail"]
    with pytest.raises(HCardError):
        till.sync_now()
    (again,) = revoked_alerts()
    assert again["count"] > alert["count"]
