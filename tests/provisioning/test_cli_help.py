"""Every `hcard-provision` command has a help text in German and English, and bad input is
refused with a clear message before anything is sent."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from hcard.provisioning import cli


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every (sub)command path with its parser, walked from the real parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*prefix, name), sub, helps.get(name)
                yield from _commands(sub, (*prefix, name))


COMMANDS = list(_commands(cli.build_parser()))


def test_the_commands_the_office_needs_exist():
    paths = {" ".join(path) for path, _, _ in COMMANDS}
    assert {
        "login",
        "logout",
        "merchant add",
        "terminal add",
        "terminal revoke",
        "cards issue",
        "card topup",
        "card block",
        "card replace",
        "card history",
    } <= paths


@pytest.mark.parametrize(("path", "parser", "summary"), COMMANDS, ids=lambda v: str(v))
def test_every_command_has_german_and_english_help(path, parser, summary):
    assert summary, f"{' '.join(path)} has no summary in the command list"
    assert " / " in summary, f"{' '.join(path)}: summary must be German / English: {summary!r}"
    assert parser.description
    assert " / " in parser.description
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help, f"{' '.join(path)} {action.dest} has no help"
        assert " / " in action.help or action.help.startswith("id "), (path, action.help)


def test_help_runs_as_a_command():
    done = subprocess.run(
        [sys.executable, "-m", "hcard.provisioning.cli", "cards", "issue", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert "Stapel" in done.stdout
    assert "batch" in done.stdout


@pytest.mark.parametrize(
    ("argv", "german"),
    [
        (["card", "topup", "9276 0000 0000 0013", "20,00"], "keine gültige Kartennummer"),
        (["card", "topup", "9276 0000 0000 0016", "zwanzig"], "kein Betrag"),
        (["card", "topup", "9276 0000 0000 0016", "0,00"], "Betrag muss positiv"),
        (["merchant", "add", "--name", "X", "--iban", "DE89", "--fee", "150"], "Gebühr"),
        (["terminal", "revoke", "0"], "Zahl ab 1"),
        (["login", "--server", "http://karte.example.org", "--user", "a"], "https://"),
    ],
)
def test_bad_arguments_are_refused_in_german_and_english(argv, german, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert german in capsys.readouterr().err


def test_a_bad_iban_is_refused_before_the_server_is_asked(tmp_path, capsys):
    # No login file and no server: the IBAN check must fail first, with exit code 2.
    code = cli.main(
        [
            "--login-file",
            str(tmp_path / "none.json"),
            "merchant",
            "add",
            "--name",
            "Eiscafé",
            "--iban",
            "DE89370400440532013001",
        ]
    )
    assert code == cli.EXIT_INPUT
    assert "IBAN ungültig / IBAN invalid" in capsys.readouterr().out


def test_without_login_the_tool_says_so(tmp_path, capsys):
    code = cli.main(["--login-file", str(tmp_path / "none.json"), "merchant", "list"])
    assert code == cli.EXIT_REFUSED
    assert "Bitte anmelden. / Please log in." in capsys.readouterr().out


def test_fee_percent_to_basis_points():
    assert cli._fee_bp("1,5") == 150
    assert cli._fee_bp("0") == 0
    assert cli._fee_bp("2.25 %") == 225
    with pytest.raises(argparse.ArgumentTypeError):
        cli._fee_bp("1,555")
