"""`make demo`: the whole Hattingen Card on one machine, through its real paths.

    PYTHONPATH=tests python -m demo [--port 8000] [--dir .demo] [--script | --server-only]

1. the server (`hcard-server init` + `serve`, SQLite under `.demo/server/`),
2. seed data through the staff API as the marketing office would enter it: a merchant,
   its merchant login (`eiscafe` / `kugel-und-waffel`), the office's login (`buero`), a
   terminal with its one-time enrolment code; and last month (`demo.month`): three more
   merchants (listed as acceptance points), cards and a month of signed till traffic booked
   in the previous calendar month, settled at once, so the office's overview, its monthly
   close and the merchant portal show it; the start message prints the office's address and
   logins, and how to cancel the run to close the month again step by step,
3. the card emulator (`hcard-card-emulator`) and three demo cards *issued through
   `hcard.provisioning.issuance`* (reserved, written over nfcpy's `udp:` driver, verified,
   password-protected) and topped up with 50,00 €, 20,00 € and 5,00 €,
4. the till enrolled with `hcard-terminal enrol` and the enrolment code (its key pair is made
   in `.demo/terminal/` and only the public half goes to the server),
5. the Kivy till app; without a display it runs under Xvfb and a screenshot is saved to
   `.demo/screenshots/`.

Then a menu in the terminal lays cards on the emulated reader and switches the server off
and on (the till keeps taking payments offline and syncs when the server is back).
`--script` runs the README's walk-through by itself (first payment, offline payment, sync),
saving a screenshot of each step, and exits: what the demo test runs. `--server-only` is
steps 1 and 2 alone (last month included), with the three cards registered and funded on the
server (made-up tag UIDs, nothing written), running until Ctrl-C: a throwaway server to try
the API, settlement or `hcard-provision` against.

The demo lives beside the tests, not in the installed package: nothing here is fit for a shop
(fixed demo passwords, the test originality key, the app's test-only control socket), and
none of it must land on a production server or office PC. Everything under `.demo/` is thrown
away at the next start. While a demo runs, it holds its folder (`demo.folder`, a lock
released when the process ends): a second demo in the same folder is refused instead of
deleting the running demo's database and socket. Port 8000 is taken unless something listens
on it; a connection the last demo left in TIME-WAIT does not count (the server binds with
SO_REUSEADDR as well).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from fixtures.app_control import AppControlError

from demo import folder
from demo.system import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    MANAGER_PIN,
    MARKETING_PASSWORD,
    MARKETING_USER,
    MERCHANT,
    MERCHANT_PASSWORD,
    MERCHANT_USER,
    TILL_NAME,
    Demo,
    run_until_stopped,
)

PROG = "PYTHONPATH=tests python -m demo"


def port_free(port: int) -> bool:
    """Whether the server could bind 127.0.0.1:`port` (else the demo takes any free port).

    With SO_REUSEADDR, as `hcard-server serve` binds: connections of a demo that just quit
    wait in TIME-WAIT for a minute and do not count, a socket listening there does.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            print(f"Port {port} belegt, nehme einen freien / in use, taking a free one")
            return False
    return True


@contextlib.contextmanager
def _display() -> Iterator[tuple[str, bool]]:
    """The user's display, or a private Xvfb when there is none: (DISPLAY, headless)."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        yield os.environ.get("DISPLAY", ""), False
        return
    from hcard.terminal.app.headless import virtual_display

    with virtual_display() as display:
        yield display, True


def _logins(demo: Demo) -> list[str]:
    """What every demo prints at start: where the server and the office are, and the logins."""
    return [
        f"  Büro / office:   {demo.url}/office/  ({ADMIN_USER} / {ADMIN_PASSWORD}, "
        f"{MARKETING_USER} / {MARKETING_PASSWORD})",
        f"  Händlerportal:   {demo.url}/portal/  ({MERCHANT_USER} / {MERCHANT_PASSWORD}, "
        f"{MERCHANT['name']})",
        f"  Öffentlich / public: {demo.url}/  ({demo.url}/akzeptanzstellen)",
        f"  Server:          {demo.url}/openapi.json  ({ADMIN_USER} / {ADMIN_PASSWORD})",
    ]


def _shown(path: Path) -> str:
    """`path` as the user would type it here: relative to the working folder when inside."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _settle(demo: Demo) -> list[str]:
    """The month the demo seeded and settled, and how to close it again step by step."""
    seeded = demo.last_month
    assert seeded is not None
    server_cli = Path(sys.executable).parent / "hcard-server"
    return [
        f"  Vormonat / last month {seeded.month}: {seeded.merchants} Händler / merchants, "
        f"{seeded.payments} Zahlungen / payments, {seeded.voids} Stornos / voids, "
        f"{seeded.till_topups} Aufladungen an der Kasse / till top-ups",
        f"  Abgerechnet / settled: {demo.url}/office/settlement/runs/{seeded.run_id}",
        "  Selbst abschließen / close it yourself: dort stornieren, dann Monatsabschluss / "
        "cancel it there, then the monthly close; oder / or:",
        f"    {_shown(server_cli) if server_cli.exists() else 'hcard-server'} settle cancel "
        f"{seeded.run_id} --user {ADMIN_USER} --data-dir {_shown(demo.root / 'server')}",
    ]


def whole_system(demo: Demo, script: bool) -> None:
    code = demo.seed()
    demo.enrol_till(code)
    with _display() as (display, headless):
        demo.start_app(display, headless)
        shot = demo.screenshot("0-start")
        print("Hattingen Card Demo läuft / demo running")
        print("\n".join(_logins(demo)))
        print(f"  Kasse / till:    {TILL_NAME}, angemeldet mit / enrolled with {code}")
        print(f"  Manager-PIN:     {MANAGER_PIN}")
        print("\n".join(demo.balances()))
        print("\n".join(_settle(demo)))
        if headless:
            print(f"  ohne Bildschirm / no display: Xvfb, Bildschirmfoto / screenshot {shot}")
        if script:
            demo.script()
        else:
            demo.interactive()


def server_only(demo: Demo) -> None:
    """The server with the demo data and funded cards, until Ctrl-C or SIGTERM."""
    code = demo.seed_server()
    demo.register_cards()
    assert demo.staff is not None
    print("Hattingen Card Demo-Server läuft / demo server running")
    print("\n".join(_logins(demo)))
    print(f"  Anmeldecode / enrolment code: {code}  ({TILL_NAME})")
    print("\n".join(demo.balances()))
    print("\n".join(_settle(demo)))
    print(f"  Ausstellerschlüssel / issuer key: {demo.staff.issuer_public_key()}")
    print(f"  Daten / data:    {demo.root / 'server'}/, Protokoll / log {demo.root}/server.log")
    run_until_stopped()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Startet Server, Kartenemulator mit Demo-Karten und die Kasse. / "
            "Starts the server, the card emulator with demo cards and the till."
        ),
    )
    parser.add_argument("--dir", type=Path, default=Path(".demo"), help="Arbeitsordner / folder")
    parser.add_argument(
        "--port", type=int, default=8000, help="Server-Port (0: frei) / server port (0: any)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--script",
        action="store_true",
        help="Rundgang selbst ablaufen lassen und beenden / run the walk-through and exit",
    )
    mode.add_argument(
        "--server-only",
        action="store_true",
        help="nur der Server mit Demo-Daten, bis Strg-C / only the server with demo data, "
        "until Ctrl-C",
    )
    args = parser.parse_args(argv)
    # Held until this process ends (the descriptor stays open); refused while another demo
    # uses the folder, before anything is deleted.
    folder.hold(args.dir, (" oder --dir ANDERER_ORDNER", " or use --dir OTHER_FOLDER"))
    folder.clear(args.dir)
    for sub in ("server", "cards", "terminal"):
        (args.dir / sub).mkdir(parents=True, exist_ok=True)
    demo = Demo(args.dir, args.port if port_free(args.port) else 0)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if args.server_only:
            server_only(demo)
        else:
            whole_system(demo, args.script)
    except (
        RuntimeError,
        TimeoutError,
        AppControlError,
        subprocess.CalledProcessError,
        OSError,
    ) as error:
        print(f"Demo fehlgeschlagen / demo failed: {error}", file=sys.stderr)
        print(f"Protokolle / logs: {args.dir}/*.log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
    return 0
