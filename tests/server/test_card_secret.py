"""The card write secret: installed by `hcard-server init --card-secret-file`, handed to a till
in its enrolment answer (so nobody types it on the till), never replaced, never logged."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from fixtures.server import ADMIN_PASSWORD

from hcard import keys
from hcard.server import card_secret
from hcard.terminal import config as terminal_config

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _secret_file(folder: Path, secret_hex: str) -> Path:
    path = folder / "card-write-secret.hex"
    path.write_text(secret_hex + "\n")
    path.chmod(0o600)
    return path


def _server_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hcard.server.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "HCARD_ADMIN_PASSWORD": ADMIN_PASSWORD, "HCARD_DATABASE_URL": ""},
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_enrolment_hands_the_till_the_card_write_secret(server_factory, tmp_path, engine):
    secret_hex = secrets.token_hex(16)
    source = _secret_file(tmp_path, secret_hex)
    server = server_factory(engine, init_args=("--card-secret-file", str(source)))
    installed = server.data_dir / card_secret.FILE_NAME
    assert installed.stat().st_mode & 0o777 == 0o600
    assert installed.read_text().strip() == secret_hex

    # The real till code: `hcard-terminal enrol` without --card-secret gets it from the answer.
    merchant_id = server.staff.create_merchant("Geheimnis GmbH")
    state = terminal_config.TerminalState(tmp_path / "till")
    config = terminal_config.enrol(
        state, server.url, server.staff.create_terminal(merchant_id), name="Kasse 1"
    )
    assert config.card_write_secret == secret_hex
    assert state.load_config().card_write_secret == secret_hex
    # A restart keeps handing it out (read from the data dir at start).
    server.restart()
    answer = requests.post(
        f"{server.url}/v1/enrol",
        json={
            "code": server.staff.create_terminal(merchant_id, "Kasse 2"),
            "public_key": keys.public_hex(keys.generate()),
        },
        timeout=30,
    ).json()
    assert answer["card_write_secret"] == secret_hex
    assert secret_hex not in server.log()


def test_without_a_secret_the_answer_has_none(live_server):
    merchant_id = live_server.staff.create_merchant("Ohne Geheimnis")
    answer = requests.post(
        f"{live_server.url}/v1/enrol",
        json={
            "code": live_server.staff.create_terminal(merchant_id),
            "public_key": keys.public_hex(keys.generate()),
        },
        timeout=30,
    ).json()
    assert set(answer) == {"terminal_id", "merchant_id", "merchant_name", "issuer_public_key"}


def test_init_refuses_a_bad_or_different_secret_and_a_readable_file(tmp_path):
    data_dir = tmp_path / "data"
    base = ("--data-dir", str(data_dir))
    for bad in ("not hex at all", secrets.token_hex(8), ""):
        folder = tmp_path / f"bad{len(bad)}"
        folder.mkdir()
        done = _server_cli("init", *base, "--card-secret-file", str(_secret_file(folder, bad)))
        assert done.returncode == 2
        assert "Kartenschreibgeheimnis ungültig" in done.stderr
        assert "card write secret invalid" in done.stderr
        if bad:
            assert bad not in done.stderr
        assert not (data_dir / card_secret.FILE_NAME).exists()

    first = secrets.token_hex(32)
    (tmp_path / "a").mkdir()
    source = _secret_file(tmp_path / "a", first)
    assert _server_cli("init", *base, "--card-secret-file", str(source)).returncode == 0
    # the same again: nothing to do
    done = _server_cli("init", *base, "--card-secret-file", str(source))
    assert done.returncode == 0, done.stderr
    # a different one: refused, the installed one stays (issued cards depend on it)
    (tmp_path / "b").mkdir()
    other = secrets.token_hex(32)
    done = _server_cli(
        "init", *base, "--card-secret-file", str(_secret_file(tmp_path / "b", other))
    )
    assert done.returncode == 2
    assert "nie ersetzt / " in done.stderr
    assert other not in done.stderr
    assert first not in done.stderr
    assert (data_dir / card_secret.FILE_NAME).read_text().strip() == first

    # A secret others can read is refused at start, like the issuer key.
    (data_dir / card_secret.FILE_NAME).chmod(0o644)
    done = _server_cli("ledger", "check", *base)
    assert done.returncode == 2
    assert "0600" in done.stderr
    assert first not in done.stderr + done.stdout


STDIN = ("--card-secret-file", "-")


def test_init_reads_the_secret_from_standard_input(tmp_path):
    """`--card-secret-file -`: how install-server.sh hands over a file only root may read."""
    data_dir = tmp_path / "data"
    secret = secrets.token_hex(16)
    done = subprocess.run(
        [sys.executable, "-m", "hcard.server.cli", "init", "--data-dir", str(data_dir), *STDIN],
        input=secret.upper() + "\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "HCARD_ADMIN_PASSWORD": ADMIN_PASSWORD, "HCARD_DATABASE_URL": ""},
    )
    assert done.returncode == 0, done.stderr
    installed = data_dir / card_secret.FILE_NAME
    assert installed.read_text() == secret + "\n"
    assert installed.stat().st_mode & 0o777 == 0o600
    assert secret not in done.stdout + done.stderr
