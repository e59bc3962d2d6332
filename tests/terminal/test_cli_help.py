"""Every `hcard-terminal` subcommand has help, in German and English."""

import subprocess
import sys

import pytest

from hcard.terminal.cli import build_parser

CLI = [sys.executable, "-m", "hcard.terminal.cli"]
COMMANDS = [
    "enrol",
    "pay",
    "topup",
    "void",
    "balance",
    "sync",
    "status",
    "day-close",
    "verify-journal",
    "app",
]


def test_every_subcommand_is_listed_with_a_bilingual_help():
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    choices = actions[0].choices
    assert sorted(choices) == sorted(COMMANDS)
    for action in actions[0]._choices_actions:
        assert " / " in action.help, action.dest


@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help_runs(command):
    done = subprocess.run(
        [sys.executable, "-m", "hcard.terminal.cli", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"usage: hcard-terminal {command}" in done.stdout
    assert " / " in done.stdout  # German / English


def test_not_enrolled_status_says_so(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "hcard.terminal.cli", "--state", str(tmp_path), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert "Nicht angemeldet / not enrolled" in done.stdout


def test_app_takes_the_apps_own_options():
    """`hcard-terminal app --help` is the app's help: the options the kiosk uses."""
    done = subprocess.run(
        [*CLI, "app", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--fullscreen", "--size", "set-pin"):
        assert option in done.stdout


def test_app_set_pin_through_the_cli_writes_the_apps_settings(tmp_path):
    from hcard.terminal.app import pin, settings

    done = subprocess.run(
        [*CLI, "--state", str(tmp_path), "app", "set-pin", "--stdin"],
        input="4711\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Manager-PIN gesetzt / manager PIN set" in done.stdout
    assert pin.check_pin("4711", settings.load(tmp_path).manager_pin_hash)


def test_app_refuses_a_reader_option(tmp_path):
    done = subprocess.run(
        [*CLI, "--state", str(tmp_path), "--reader", "usb", "app", "--size", "800x480"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert "--reader" in done.stderr
    assert " / " in done.stderr


def test_enrol_refuses_a_bad_card_secret_before_spending_the_code(tmp_path):
    """Checked by `hcard.cardsecret` before the server is asked (a code works only once):
    no key made, the text not repeated (it may be a mistyped real secret)."""
    short = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5"  # 15 bytes
    done = subprocess.run(
        [
            *CLI,
            *("--state", str(tmp_path / "till"), "enrol", "--server", "http://127.0.0.1:9"),
            *("--code", "ABCD-EFGH", "--card-secret", short),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Kartenschreibgeheimnis ungültig" in done.stderr
    assert "card write secret invalid" in done.stderr
    assert short not in done.stderr + done.stdout
    assert not (tmp_path / "till").exists()


def test_enrol_takes_the_card_secret_from_a_file_or_standard_input(tmp_path):
    """`--card-secret-file` keeps the secret off the command line; `-` is what
    install-terminal.sh pipes into (its till user cannot open the operator's file)."""
    secret = "00112233445566778899AABBCCDDEEFF"
    path = tmp_path / "secret.hex"
    path.write_text(f"  {secret}\n")
    base = ["enrol", "--server", "https://karte.example.org", "--code", "ABCD-EFGH"]
    args = build_parser().parse_args([*base, "--card-secret-file", str(path)])
    assert args.card_secret_file == secret.lower()
    for extra, stdin, message in [
        (["--card-secret-file", "-"], "not hex\n", "card write secret invalid"),
        (["--card-secret-file", str(tmp_path / "missing")], "", "not readable"),
        (["--card-secret", secret, "--card-secret-file", str(path)], "", "not allowed with"),
    ]:
        done = subprocess.run(
            [*CLI, "--state", str(tmp_path / "till"), *base, *extra],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, extra
        assert message in done.stderr
        assert not (tmp_path / "till").exists()
