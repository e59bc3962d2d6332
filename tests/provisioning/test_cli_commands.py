"""`hcard-provision` commands against the real server: login cache, merchant, terminal with
enrolment code and QR, top-up, block, replace, history, logout, the card write secret."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fixtures.server import ADMIN_PASSWORD, DEMO_IBAN, enrol
from fixtures.terminal import server_card

from hcard.provisioning import cli
from hcard.provisioning.staff import Login, StaffClient


def _run(login_file: Path, *argv: str) -> int:
    return cli.main(["--login-file", str(login_file), *argv])


def test_login_is_cached_0600_without_the_password(provision_login):
    _, login_file = provision_login
    assert login_file.stat().st_mode & 0o777 == 0o600
    text = login_file.read_text()
    assert ADMIN_PASSWORD not in text
    assert set(json.loads(text)) == {"server_url", "username", "token"}


def test_a_login_file_others_can_read_is_refused(provision_login, capsys):
    _, login_file = provision_login
    login_file.chmod(0o644)
    assert _run(login_file, "merchant", "list") == cli.EXIT_REFUSED
    assert "Bitte anmelden" in capsys.readouterr().out


def test_merchant_and_terminal_with_enrolment_code_and_qr(live_server, provision_login, capsys):
    _, login_file = provision_login
    argv = ["merchant", "add", "--name", "Buchhandlung Steinhaus", "--iban", DEMO_IBAN]
    assert _run(login_file, *argv, "--fee", "1,25", "--address", "Obermarkt 3") == 0
    out = capsys.readouterr().out
    merchant_id = int(re.search(r"\(id (\d+)\)", out).group(1))
    merchant = live_server.staff.call("GET", f"/v1/merchants/{merchant_id}")
    assert merchant["fee_bp"] == 125
    assert merchant["iban"] == DEMO_IBAN
    assert merchant["bic"] == "COBADEFFXXX"  # filled in from the IBAN by schwifty

    assert _run(login_file, "terminal", "add", "--merchant", str(merchant_id), "--name", "K2") == 0
    out = capsys.readouterr().out
    code = re.search(r"Anmeldecode / enrolment code: ([A-Z0-9]{4}-[A-Z0-9]{4})", out).group(1)
    assert "█" in out or "▀" in out  # the QR code, drawn in the terminal
    # The code enrols a real terminal, once.
    terminal = enrol(live_server.url, code, "K2")
    assert terminal.merchant_id == merchant_id
    assert _run(login_file, "terminal", "list", "--merchant", str(merchant_id)) == 0
    assert "active" in capsys.readouterr().out
    assert _run(login_file, "terminal", "revoke", str(terminal.terminal_id)) == 0
    assert terminal.snapshot().status_code == 403


def test_topup_block_replace_history(live_server, provision_login, capsys):
    _, login_file = provision_login
    old, _ = server_card(live_server)
    new, _ = server_card(live_server)
    assert _run(login_file, "card", "topup", old, "25,00", "--source", "online") == 0
    assert "25,00" in capsys.readouterr().out
    assert _run(login_file, "card", "block", old) == 0
    assert live_server.staff.card(old)["blocked"] is True
    # Blocked (lost) card: its balance moves to the replacement.
    assert _run(login_file, "card", "replace", old, new) == 0
    assert "25,00" in capsys.readouterr().out
    assert live_server.staff.card(old)["balance_cents"] == 0
    assert live_server.staff.card(new)["balance_cents"] == 2_500
    assert _run(login_file, "card", "history", new) == 0
    assert "transfer" in capsys.readouterr().out
    # Replacing onto the same card is refused with the server's reason in both languages.
    assert _run(login_file, "card", "replace", new, new) == cli.EXIT_REFUSED
    assert "Alte und neue Karte sind gleich. / Old and new card are the same." in (
        capsys.readouterr().out
    )


def test_a_pending_terminal_is_revoked_and_its_code_dies(live_server, provision_login, capsys):
    _, login_file = provision_login
    merchant_id = live_server.staff.create_merchant("Noch zu")
    assert _run(login_file, "terminal", "add", "--merchant", str(merchant_id), "--name", "K") == 0
    code = re.search(r"([A-Z0-9]{4}-[A-Z0-9]{4})", capsys.readouterr().out).group(1)
    (pending,) = live_server.staff.terminals(merchant_id)
    assert _run(login_file, "terminal", "revoke", str(pending["id"])) == 0
    assert "unreachable" not in capsys.readouterr().out
    with pytest.raises(Exception, match="enrolment_code_invalid"):
        enrol(live_server.url, code, "K")
    assert live_server.staff.terminals(merchant_id)[0]["status"] == "revoked"


def test_card_check_code_to_print(live_server, provision_login, capsys):
    _, login_file = provision_login
    number, _ = server_card(live_server)
    assert _run(login_file, "card", "check-code", number) == 0
    out = capsys.readouterr().out
    code = re.search(r"check code: ([A-Z2-7]{4}-[A-Z2-7]{4})", out).group(1)
    assert code == live_server.staff.check_code(number)


def test_logout_ends_the_session_on_the_server(live_server, provision_login):
    _, login_file = provision_login
    token = Login.load(login_file).token
    assert _run(login_file, "logout") == 0
    assert not login_file.exists()
    with pytest.raises(Exception, match="not_authenticated"):
        StaffClient(live_server.url, token).merchants()


def test_server_unreachable_is_its_own_exit_code(tmp_path: Path, capsys):
    login_file = tmp_path / "login.json"
    Login("http://127.0.0.1:9", "admin", "x").save(login_file)
    assert _run(login_file, "merchant", "list") == cli.EXIT_UNREACHABLE
    assert "Server nicht erreichbar / server unreachable" in capsys.readouterr().out


def test_card_write_secret_is_made_once_0600(tmp_path: Path):
    path = tmp_path / "secret.hex"
    assert _run(tmp_path / "l.json", "cards", "new-secret", "--out", str(path)) == 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert re.fullmatch(r"[0-9a-f]{32}\n", path.read_text())
    before = path.read_text()
    assert _run(tmp_path / "l.json", "cards", "new-secret", "--out", str(path)) == cli.EXIT_INPUT
    assert path.read_text() == before
