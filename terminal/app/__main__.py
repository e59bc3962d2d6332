"""`python -m hcard.terminal.app`: start the till app, or set the manager PIN.

    python -m hcard.terminal.app [--state-dir DIR] [--fullscreen | --size 800x480]
    python -m hcard.terminal.app set-pin [--state-dir DIR] [--stdin]
    hcard-terminal [--state DIR] app [...]      # the same through the till's CLI

The state directory is the terminal core's (`$HCARD_TERMINAL_STATE`, default
/var/lib/hcard-terminal); the app keeps its own settings there in `app.json`.
Without `--size` (or `$HCARD_APP_SIZE`) it runs full screen as a kiosk.

A till that is not enrolled yet still starts and says so on screen, instead
of exiting and being restarted by systemd every few seconds.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
from pathlib import Path

from hcard.errors import HCardError
from hcard.errors import both as refusal
from hcard.i18n import bilingual_help
from hcard.i18n import both as _
from hcard.terminal.app import kivyconfig, pin, settings
from hcard.terminal.config import TerminalState, default_state_dir

log = logging.getLogger(__name__)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=_("Hattingen Card till (touchscreen)"),
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "set-pin"),
        default="run",
        help=_("run: start the till (default); set-pin: set the manager PIN"),
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=_("terminal state folder")
        + " (default: $HCARD_TERMINAL_STATE or /var/lib/hcard-terminal)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--fullscreen", action="store_true", help=_("full screen (kiosk, default)"))
    size.add_argument("--size", type=kivyconfig.parse_size, help=_("window size, e.g. 800x480"))
    parser.add_argument("--stdin", action="store_true", help=_("set-pin: read the PIN from stdin"))
    return bilingual_help(parser)


def set_pin(state_dir: Path, from_stdin: bool) -> int:
    if from_stdin:
        first = second = sys.stdin.readline().strip()
    else:
        first = getpass.getpass(_("new manager PIN") + ": ")
        second = getpass.getpass(_("again") + ": ")
    if first != second:
        print(_("PINs differ"), file=sys.stderr)
        return 2
    try:
        hashed = pin.hash_pin(first)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    current = settings.load(state_dir)
    settings.save(state_dir, current.with_changes(manager_pin_hash=hashed))
    print(_("manager PIN set"))
    return 0


def run(state_dir: Path, size: tuple[int, int] | None) -> int:
    app_settings = settings.load(state_dir)
    kivyconfig.configure(size)
    from kivy.clock import Clock

    from hcard.terminal.app.app import TillApp
    from hcard.terminal.app.control import ENV_VAR, ControlServer

    till = None
    if TerminalState(state_dir).enrolled():
        from hcard.terminal.core import TerminalTill

        till = TerminalTill(state_dir)
    app = TillApp(till, state_dir, app_settings)
    if till is None:
        app.bind(on_start=lambda *_: app.show_not_enrolled())
    # systemd stops the kiosk with SIGTERM: end the Kivy loop so the till is closed cleanly.
    signal.signal(signal.SIGTERM, lambda *_: Clock.schedule_once(lambda _dt: app.stop()))
    control = None
    if os.environ.get(ENV_VAR):
        control = ControlServer(app, Path(os.environ[ENV_VAR]))
        control.start()
    try:
        app.run()
    finally:
        if control is not None:
            control.close()
        if till is not None:
            till.close()
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m hcard.terminal.app") -> int:
    """Run the app (or `set-pin`); `prog` names the command in the help (`hcard-terminal
    app` delegates here)."""
    args = _parser(prog).parse_args(argv)
    state_dir = args.state_dir or default_state_dir()
    try:
        if args.command == "set-pin":
            return set_pin(state_dir, args.stdin)
        return run(state_dir, args.size)
    except HCardError as exc:
        print(refusal(exc.code), file=sys.stderr)
        return 1
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
