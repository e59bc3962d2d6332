"""docs/cli.md documents every command line: each command, option, argument and choice.

In the style of sqlite-utils' `tests/test_docs.py`: the real argparse parsers of
`hcard-server`, `hcard-terminal` (with the app's own options under `hcard-terminal app`),
`hcard-card-emulator`, `hcard-provision` and the demo are walked, and every command must have
a section in docs/cli.md headed by its full path (`### \\`hcard-provision card topup\\``) with
a German / English line, every option string, positional argument and choice a bullet of its
own (`- \\`--source SOURCE\\`: … / …`) in that section. The other way round, the reference
must not name a command or option that no longer exists.

The parsers are built in-process, never by running the commands: `build_parser()` where the
module has one, else the parser `main` builds, taken at its `parse_args` call before anything
runs. tests/provisioning/test_cli_help.py and tests/terminal/test_cli_help.py check the help
texts in the parsers themselves.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import demo
import pytest

from hcard.provisioning import cli as provision_cli
from hcard.server import cli as server_cli
from hcard.terminal import cli as terminal_cli
from hcard.terminal.app import __main__ as app_main
from hcard.terminal.card import emulator

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "cli.md"


class _ParserTakenError(Exception):
    """Raised from `parse_args` with the parser, so `main` stops before it does anything."""


def _parser_of(main: Callable[[list[str]], object]) -> argparse.ArgumentParser:
    def take(parser: argparse.ArgumentParser, *_args: object, **_kwargs: object) -> None:
        raise _ParserTakenError(parser)

    with (
        mock.patch.object(argparse.ArgumentParser, "parse_args", take),
        pytest.raises(_ParserTakenError) as taken,
    ):
        main([])
    return taken.value.args[0]


PROGRAMS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "hcard-server": lambda: _parser_of(server_cli.main),
    "hcard-terminal": terminal_cli.build_parser,
    "hcard-card-emulator": lambda: _parser_of(emulator.main),
    "hcard-provision": provision_cli.build_parser,
    "make demo": lambda: _parser_of(demo.main),
}
# Subcommands that hand every argument on to another program's parser: that one is walked.
DELEGATED: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "hcard-terminal app": lambda: app_main._parser("hcard-terminal app"),
}


@dataclass
class Command:
    path: str
    # documented name (option string, ARGUMENT, or a positional's choice) -> its choices
    items: dict[str, tuple[str, ...]] = field(default_factory=dict)
    subcommands: list[str] = field(default_factory=list)


def _walk(path: str, parser: argparse.ArgumentParser) -> Iterator[Command]:
    if path in DELEGATED:
        own = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
        assert all(a.nargs == argparse.REMAINDER for a in own), f"{path} has options of its own"
        parser = DELEGATED[path]()
    command = Command(path)
    below: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue  # every command has -h/--help: said once at the top of the reference
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                command.subcommands.append(name)
                below.extend(_walk(f"{path} {name}", sub))
        elif action.option_strings:
            for option in action.option_strings:
                command.items[option] = tuple(str(c) for c in action.choices or ())
        elif action.choices:
            for choice in action.choices:
                command.items[str(choice)] = ()
        else:
            command.items[str(action.metavar or action.dest).upper()] = ()
    yield command
    yield from below


COMMANDS = {c.path: c for name, build in PROGRAMS.items() for c in _walk(name, build())}
# A group (`hcard-provision card`) with nothing but subcommands needs no section of its own.
DOCUMENTED = [c for c in COMMANDS.values() if c.items or not c.subcommands]
ITEMS = [(c.path, item) for c in DOCUMENTED for item in c.items]


@dataclass
class Section:
    description: list[str] = field(default_factory=list)
    items: dict[str, str] = field(default_factory=dict)  # name -> its explanation


HEADING = re.compile(r"^#{2,6} `([^`]+)`")
BULLET = re.compile(r"^- ((?:`[^`]+`(?:, )?)+): (.+)$")


def _sections(text: str) -> dict[str, Section]:
    """docs/cli.md's sections by the command in their heading, with their bullets."""
    sections: dict[str, Section] = {}
    current: Section | None = None
    for line in text.splitlines():
        if heading := HEADING.match(line):
            assert heading.group(1) not in sections, f"two sections for {heading.group(1)}"
            current = sections[heading.group(1)] = Section()
        elif current is None or line.startswith("#"):
            current = None
        elif bullet := BULLET.match(line):
            for span in re.findall(r"`([^`]+)`", bullet.group(1)):
                current.items[span.split()[0]] = bullet.group(2)
        elif line.strip() and not current.items:
            current.description.append(line)
    return sections


SECTIONS = _sections(REFERENCE.read_text(encoding="utf-8"))


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def test_every_installed_command_is_walked():
    """A new command in pyproject.toml's scripts must join PROGRAMS (and the reference)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(PROGRAMS) - {"make demo"}


def test_the_walk_finds_every_command_line():
    """A tripwire for the walk itself: each program, its subcommands and some options."""
    assert {"hcard-server init", "hcard-terminal app", "hcard-provision card topup"} <= set(
        COMMANDS
    )
    assert "--fullscreen" in COMMANDS["hcard-terminal app"].items  # the app's own parser
    assert COMMANDS["hcard-card-emulator"].items["--chip"]  # its choices
    assert "--server-only" in COMMANDS["make demo"].items
    assert len(ITEMS) > 80


@pytest.mark.parametrize("command", DOCUMENTED, ids=lambda c: c.path)
def test_every_command_has_a_section_with_a_german_and_english_line(command: Command):
    section = SECTIONS.get(command.path)
    assert section is not None, f"docs/cli.md: no section '### `{command.path}`'"
    description = " ".join(section.description)
    assert " / " in description, f"{command.path}: no German / English line: {description!r}"


@pytest.mark.parametrize(("path", "item"), ITEMS, ids=[f"{p} {i}" for p, i in ITEMS])
def test_every_option_argument_and_choice_is_documented(path: str, item: str):
    section = SECTIONS.get(path)
    assert section is not None, f"docs/cli.md: no section '### `{path}`'"
    assert item in section.items, f"docs/cli.md, `{path}`: no line '- `{item} …`: … / …'"
    explanation = section.items[item]
    assert " / " in explanation, f"`{path}` {item}: not German / English: {explanation!r}"
    for choice in COMMANDS[path].items[item]:
        assert _mentions(explanation, choice), f"`{path}` {item}: choice {choice!r} not named"


def test_the_reference_names_no_command_or_option_that_does_not_exist():
    for path, section in SECTIONS.items():
        assert path in COMMANDS, f"docs/cli.md: `{path}` is no command (any more)"
        stale = set(section.items) - set(COMMANDS[path].items)
        assert not stale, f"docs/cli.md, `{path}`: {sorted(stale)} do not exist (any more)"


def test_the_reference_says_every_command_has_help():
    text = REFERENCE.read_text(encoding="utf-8")
    assert _mentions(text, "-h")
    assert _mentions(text, "--help")
