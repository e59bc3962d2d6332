"""Every `hcard-terminal` subcommand has help, in German and English."""

import subprocess
import sys

import pytest

from hcard.terminal.cli import build_parser

COMMANDS = ["enrol", "pay", "void", "balance", "sync", "status", "day-close"]


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
