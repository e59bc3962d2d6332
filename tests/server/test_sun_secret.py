"""The SUN secret: installed by `hcard-server init --sun-secret-file` by the same code and with
the same rules as the card write secret (0600, never replaced, never logged, `-` for standard
input), never the same as the card write secret, and what lets `/k` check a card's link."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from fixtures.card import TEST_SUN_SECRET
from fixtures.server import ADMIN_PASSWORD

from hcard import ntag424
from hcard.server import card_secret
from hcard.server.context import Context
from hcard.server.settings import Settings

SUN = card_secret.Secret.SUN


def _secret_file(folder: Path, secret_hex: str, name: str = "secret.hex") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(secret_hex + "\n")
    path.chmod(0o600)
    return path


def _server_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hcard.server.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "HCARD_ADMIN_PASSWORD": ADMIN_PASSWORD, "HCARD_DATABASE_URL": ""},
    )


def test_init_installs_the_sun_secret_once_and_never_another(tmp_path):
    data_dir = tmp_path / "data"
    base = ("init", "--data-dir", str(data_dir))
    installed = data_dir / SUN.file_name
    assert SUN.file_name == "card-sun-secret.hex"
    for bad in ("not hex at all", secrets.token_hex(8), ""):
        source = _secret_file(tmp_path / f"bad{len(bad)}", bad)
        done = _server_cli(*base, "--sun-secret-file", str(source))
        assert done.returncode == 2
        assert "SUN-Geheimnis ungültig" in done.stderr
        assert "SUN secret invalid" in done.stderr
        if bad:
            assert bad not in done.stderr
        assert not installed.exists()

    first = secrets.token_hex(32)
    source = _secret_file(tmp_path / "a", first)
    done = _server_cli(*base, "--sun-secret-file", str(source))
    assert done.returncode == 0, done.stderr
    assert f"ok: SUN secret {installed} (0600)" in done.stdout
    assert installed.stat().st_mode & 0o777 == 0o600
    assert installed.read_text() == first + "\n"
    assert not (data_dir / card_secret.FILE_NAME).exists()  # only what was given
    assert _server_cli(*base, "--sun-secret-file", str(source)).returncode == 0  # no-op
    other = secrets.token_hex(32)
    done = _server_cli(*base, "--sun-secret-file", str(_secret_file(tmp_path / "b", other)))
    assert done.returncode == 2
    assert "anderes SUN-Geheimnis" in done.stderr
    assert "different SUN secret, it is never replaced" in done.stderr
    assert first not in done.stderr + done.stdout
    assert other not in done.stderr + done.stdout
    assert installed.read_text().strip() == first
    done = _server_cli(*base, "--sun-secret-file", str(tmp_path / "missing.hex"))
    assert done.returncode == 2
    assert "SUN secret not readable" in done.stderr

    # others may read it: refused at start, like the issuer key
    installed.chmod(0o644)
    done = _server_cli("ledger", "check", "--data-dir", str(data_dir))
    assert done.returncode == 2
    assert "0600" in done.stderr
    assert first not in done.stderr + done.stdout


def test_the_sun_secret_is_never_the_card_write_secret(tmp_path):
    """Every till holds the card write secret: as the SUN secret it would let a till make
    links that verify. Refused in either order, and nothing is installed."""
    same = secrets.token_hex(16)
    source = _secret_file(tmp_path, same)
    data_dir = tmp_path / "both"
    done = _server_cli(
        "init",
        "--data-dir",
        str(data_dir),
        "--card-secret-file",
        str(source),
        "--sun-secret-file",
        str(source),
    )
    assert done.returncode == 2
    assert "each site secret must be its own" in done.stderr
    assert same not in done.stderr + done.stdout
    assert not (data_dir / SUN.file_name).exists()
    # the SUN secret first, then the same as the card write secret
    data_dir = tmp_path / "sun-first"
    done = _server_cli("init", "--data-dir", str(data_dir), "--sun-secret-file", str(source))
    assert done.returncode == 0, done.stderr
    done = _server_cli("init", "--data-dir", str(data_dir), "--card-secret-file", str(source))
    assert done.returncode == 2
    assert "jedes Geheimnis des Systems muss ein eigenes sein" in done.stderr
    assert not (data_dir / card_secret.FILE_NAME).exists()


def test_init_reads_the_sun_secret_from_standard_input_but_not_both(tmp_path):
    data_dir = tmp_path / "data"
    secret = secrets.token_hex(16)
    done = _server_cli(
        "init", "--data-dir", str(data_dir), "--sun-secret-file", "-", stdin=secret.upper()
    )
    assert done.returncode == 0, done.stderr
    assert (data_dir / SUN.file_name).read_text() == secret + "\n"
    assert secret not in done.stdout + done.stderr
    done = _server_cli(
        "init",
        "--data-dir",
        str(tmp_path / "other"),
        "--card-secret-file",
        "-",
        "--sun-secret-file",
        "-",
        stdin=secret,
    )
    assert done.returncode == 2
    assert "only one secret can come from standard input" in done.stderr


def test_the_context_holds_the_sun_master_and_never_shows_it(tmp_path):
    settings = Settings.build(data_dir=tmp_path)
    assert Context.open(settings, create_key=True).sun_master is None
    card_secret.install(settings, _secret_file(tmp_path / "office", TEST_SUN_SECRET.hex()), SUN)
    ctx = Context.open(settings)
    master = ntag424.master_key(TEST_SUN_SECRET, ntag424.MasterKind.SUN)
    assert ctx.sun_master == master
    assert ctx.card_write_secret is None
    shown = repr(ctx)
    assert "sun_master" not in shown
    assert master.hex() not in shown
    assert str(master) not in shown


def test_a_test_server_keeps_the_tests_sun_secret_and_never_logs_it(server_factory):
    server = server_factory()
    assert server.sun_secret == TEST_SUN_SECRET
    installed = server.data_dir / SUN.file_name
    assert installed.read_text().strip() == TEST_SUN_SECRET.hex()
    assert installed.stat().st_mode & 0o777 == 0o600
    server.restart()  # init again with the same secret: nothing changes
    assert installed.read_text().strip() == TEST_SUN_SECRET.hex()
    assert TEST_SUN_SECRET.hex() not in server.log()
