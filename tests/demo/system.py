"""The demo system: server, seed data, card emulator with demo cards, the enrolled till app.

Each part goes through the real paths: `hcard-server init` + `serve` (SQLite under
`<dir>/server/`); seed data through the staff API as the marketing office would enter it, with
last month's traffic from signed till records (`demo.month`, backdated in the demo's own
database so it can be settled at once); demo
cards *issued through `hcard.provisioning.issuance`* over nfcpy's `udp:` driver and the card
emulator; the till enrolled with `hcard-terminal enrol`; the Kivy app driven through its
test-only control socket by the GUI tests' own client (`fixtures.app_control`). Nothing here
is fit for a shop: fixed demo passwords, the test originality key, the app's control socket.
That is why it lives beside the tests and is not part of the installed package.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from fixtures.app_control import AppDriver, start_app

from demo import month
from hcard import cardnumber, keys
from hcard.errors import HCardError
from hcard.money import format_cents
from hcard.provisioning import issuance
from hcard.provisioning.staff import StaffClient
from hcard.terminal.card import TEST_PUBLIC_KEY_HEX, CardKeys, open_reader
from hcard.terminal.card import image as images
from hcard.terminal.card.emulator import EmulatorControl, EmulatorProcess
from hcard.terminal.card.ntag424_model import TEST_ORIGINALITY_PUBLIC_KEY_HEX
from hcard.terminal.card.ntag424_session import Ntag424Secrets
from hcard.terminal.client import ServerUnreachableError
from hcard.terminal.config import SNAPSHOT_FILE, write_atomic

ADMIN_USER, ADMIN_PASSWORD = "admin", "hattingen-demo"
MERCHANT_USER, MERCHANT_PASSWORD = "eiscafe", "kugel-und-waffel"
#: the marketing office's everyday login (no users, no corrections: those are admin's)
MARKETING_USER, MARKETING_PASSWORD = "buero", "stadtmarketing-demo"
MANAGER_PIN = "1234"
MERCHANT = {
    "name": "Eiscafé am Untermarkt",
    "iban": "DE89370400440532013000",
    "address": "Untermarkt 1, 45525 Hattingen",
    "contact": "info@eiscafe.example",
    "fee_bp": 150,
    "listed": True,
    "category": "restaurant",
    "opening_hours": "Di–So 11–21 Uhr",
}
TILL_NAME = "Kasse 1"
CARD_BALANCES_CENTS = (5_000, 2_000, 500)
BALANCE_URL = "https://karte.hattingen.de"
START_TIMEOUT_S = 90.0
WAIT_TIMEOUT_S = 60.0

MENU = """
Befehle / commands:
  1, 2, 3   Demo-Karte 1..3 auflegen (3: NTAG 424 DNA) / lay demo card 1..3 on the reader
  r         Karte abnehmen / remove the card
  o         Server aus- oder einschalten (offline zahlen) / switch the server off or on
  b         Guthaben laut Server / balances on the server
  s         Bildschirmfoto / screenshot
  q         beenden / quit
"""


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def _wait(condition: Callable[[], Any], what: str, timeout_s: float = WAIT_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"Zeitüberschreitung / timed out waiting for {what}")
        time.sleep(0.05)


class Demo:
    """One demo in its folder `root`: start the parts, drive them, stop them (`close`)."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root.resolve()
        self.port = port
        self.server: subprocess.Popen[bytes] | None = None
        self.emulator: EmulatorProcess | None = None
        self.control: EmulatorControl | None = None
        self.reader_path = ""
        self.staff: StaffClient | None = None
        self.cards: list[str] = []  # card numbers, in the order of CARD_BALANCES_CENTS
        self.card_images: list[Path] = []  # their emulated tags (not with --server-only)
        self.ui: AppDriver | None = None  # the till app, through its control socket
        self.last_month: month.Summary | None = None  # seeded by seed_server, to settle
        self.server_env = {
            **os.environ,
            "HCARD_DATA_DIR": str(self.root / "server"),
            "HCARD_DATABASE_URL": f"sqlite:///{self.database}",
        }

    # --- server ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> Path:
        return self.root / "server" / "hcard.db"

    def start_server(self) -> None:
        ready = self.root / "server" / "port"
        ready.unlink(missing_ok=True)
        log = (self.root / "server.log").open("ab")
        self.server = subprocess.Popen(
            _python(
                "hcard.server.cli", "serve", "--port", str(self.port), "--ready-file", str(ready)
            ),
            env=self.server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def healthy() -> bool:
            if self.server is None or self.server.poll() is not None:
                raise RuntimeError(
                    f"Server beendet / server exited, see {self.root / 'server.log'}"
                )
            if not ready.exists():
                return False
            self.port = int(ready.read_text())
            try:
                return requests.get(f"{self.url}/v1/health", timeout=2).ok
            except requests.RequestException:
                return False

        _wait(healthy, "the server", START_TIMEOUT_S)

    def stop_server(self) -> None:
        _stop(self.server)
        self.server = None

    # --- cards -------------------------------------------------------------------------

    def start_emulator(self) -> None:
        self.emulator = EmulatorProcess(self.root / "cards", log_path=self.root / "emulator.log")
        self.reader_path = self.emulator.reader_path
        self.control = self.emulator.control

    def tap(self, index: int) -> None:
        assert self.control is not None
        self.control.present(self.card_images[index])

    def remove(self) -> None:
        assert self.control is not None
        self.control.remove()

    def issue_cards(self, staff: StaffClient, secret: bytes) -> None:
        """Write the demo cards exactly as the office does: `hcard.provisioning.issuance`."""
        assert self.control is not None
        blanks = []
        for index in range(len(CARD_BALANCES_CENTS)):
            path = self.root / "cards" / f"card{index + 1}.json"
            # the last demo card is an NTAG 424 DNA: AES keys and a SUN link on every tap
            last = index == len(CARD_BALANCES_CENTS) - 1
            images.save(images.blank424() if last else images.blank(), path)
            blanks.append(path)
        queue = iter(blanks)
        control = self.control

        def operator(event: issuance.Event) -> None:
            if event.kind is issuance.EventKind.PLACE:
                control.present(next(queue))
            elif event.kind is issuance.EventKind.REMOVE:
                control.remove()
            elif event.kind is not issuance.EventKind.DONE:
                raise RuntimeError(f"Demo-Karte / demo card: {event}")

        batch = issuance.Batch.reserve(
            self.root / "cards" / "batch.json", staff, len(blanks), BALANCE_URL
        )
        card_keys = CardKeys(
            issuer_public=keys.public_from_hex(staff.issuer_public_key()),
            terminal_keys={},
            write_secret=secret,
            originality_key_hex=TEST_PUBLIC_KEY_HEX,
            originality_424_key_hex=TEST_ORIGINALITY_PUBLIC_KEY_HEX,
        )
        secrets_424 = Ntag424Secrets(secret, self.sun_secret, self.admin_secret)
        reader = open_reader(self.reader_path)
        try:
            issuer = issuance.Issuer(
                batch, staff, reader, card_keys, operator, secrets_424=secrets_424
            )
            if not issuer.run(30.0):
                raise RuntimeError("Demo-Karten nicht geschrieben / demo cards not written")
        finally:
            reader.close()
        batch.write_csv(self.root / "cards" / "print.csv")
        self.card_images = blanks
        self._fund([entry.card_number for entry in batch.entries])

    def register_cards(self) -> None:
        """`--server-only`: the demo cards on the server alone, bound to made-up tag UIDs
        (no emulator, nothing written), funded like the written ones."""
        assert self.staff is not None
        numbers = self.staff.reserve_cards(len(CARD_BALANCES_CENTS))
        for index, number in enumerate(numbers, start=1):
            self.staff.issue_card(f"04a1b2c3d4e5{index:02x}", number)
        self._fund(numbers)

    def _fund(self, numbers: list[str]) -> None:
        assert self.staff is not None
        for number, balance in zip(numbers, CARD_BALANCES_CENTS, strict=True):
            self.staff.topup(number, balance, "cash")
            self.cards.append(number)

    # --- seed, till ----------------------------------------------------------------------

    @property
    def sun_secret_file(self) -> Path:
        """The office's SUN secret of this demo (made once, 0600), as `hcard-server init
        --sun-secret-file` takes it and NTAG 424 DNA cards are issued with it."""
        path = self.root / "card-sun-secret.hex"
        if not path.exists():
            write_atomic(path, secrets.token_bytes(16).hex().encode() + b"\n")
        return path

    @property
    def sun_secret(self) -> bytes:
        return bytes.fromhex(self.sun_secret_file.read_text())

    @property
    def admin_secret(self) -> bytes:
        """The office's admin secret for NTAG 424 DNA keys 0 and 4 (made once, 0600)."""
        path = self.root / "card-admin-secret.hex"
        if not path.exists():
            write_atomic(path, secrets.token_bytes(16).hex().encode() + b"\n")
        return bytes.fromhex(path.read_text())

    def seed_server(self) -> str:
        """Start the server with the data the office enters and last month's traffic
        (`self.last_month`); returns the till's enrolment code. `self.staff` is then logged
        in as the demo admin. The server keeps the demo's SUN secret (`sun_secret`), so the link
        of a demo NTAG 424 DNA card opens its balance page (`/k`)."""
        subprocess.run(
            _python(
                "hcard.server.cli",
                "init",
                "--admin-user",
                ADMIN_USER,
                "--sun-secret-file",
                str(self.sun_secret_file),
            ),
            env={**self.server_env, "HCARD_ADMIN_PASSWORD": ADMIN_PASSWORD},
            check=True,
            capture_output=True,
        )
        self.start_server()
        staff = StaffClient(self.url)
        staff.login(ADMIN_USER, ADMIN_PASSWORD)
        merchant = month.create_merchant(staff, self.database, MERCHANT, month.EISCAFE_DETAILS)
        staff.request(
            "POST",
            "/v1/users",
            {
                "username": MERCHANT_USER,
                "password": MERCHANT_PASSWORD,
                "role": "merchant",
                "merchant_id": int(merchant["id"]),
            },
        )
        staff.request(
            "POST",
            "/v1/users",
            {"username": MARKETING_USER, "password": MARKETING_PASSWORD, "role": "marketing"},
        )
        self.staff = staff
        code = str(staff.create_terminal(int(merchant["id"]), TILL_NAME)["code"])
        self.last_month = month.seed(self.url, staff, self.database, int(merchant["id"]))
        # settled as the office would, so the overview, the close and the merchant portal
        # show a run and its statements at once; not yet downloaded, so it can be cancelled
        # and closed again step by step in the office's pages
        run = staff.request("POST", "/v1/settlement/runs", {"month": self.last_month.month})
        self.last_month.run_id = int(run["run_id"])
        return code

    def seed(self) -> str:
        """The server with its data, the emulator and the written demo cards; returns the
        till's enrolment code."""
        code = self.seed_server()
        assert self.staff is not None
        secret = secrets.token_bytes(16)
        write_atomic(self.root / "card-write-secret.hex", secret.hex().encode())
        self.start_emulator()
        self.issue_cards(self.staff, secret)
        return code

    def enrol_till(self, code: str) -> None:
        state = self.root / "terminal"
        secret = (self.root / "card-write-secret.hex").read_text().strip()
        subprocess.run(
            _python(
                "hcard.terminal.cli",
                "--state",
                str(state),
                "--reader",
                self.reader_path,
                "enrol",
                "--server",
                self.url,
                "--code",
                code,
                "--name",
                TILL_NAME,
                "--originality-key",
                TEST_PUBLIC_KEY_HEX,
                "--originality-424-key",
                TEST_ORIGINALITY_PUBLIC_KEY_HEX,
                "--card-secret",
                secret,
            ),
            check=True,
            capture_output=True,
        )
        subprocess.run(
            _python("hcard.terminal.app", "set-pin", "--state-dir", str(state), "--stdin"),
            input=f"{MANAGER_PIN}\n".encode(),
            check=True,
            capture_output=True,
        )

    def start_app(self, display: str, headless: bool) -> None:
        """The till app on `display`, 800x480, driven through its control socket."""
        self.ui = start_app(
            self.root / "terminal",
            self.root,
            display,
            (800, 480),
            control=self.root / "app.sock",
            output=self.root / "app.log",
            env={"SDL_AUDIODRIVER": "dummy"} if headless else {},
            wait_timeout_s=WAIT_TIMEOUT_S,
        )
        self.ui.wait_ready(START_TIMEOUT_S)

    def close(self) -> None:
        if self.ui is not None:
            self.ui.stop()
        if self.emulator is not None:
            self.emulator.stop()
        _stop(self.server)

    # --- what the user sees ------------------------------------------------------------

    def balances(self) -> list[str]:
        assert self.staff is not None
        lines = []
        for index, number in enumerate(self.cards, start=1):
            try:
                balance = format_cents(self.staff.card(number)["balance_cents"])
            except (HCardError, ServerUnreachableError):  # the server may be switched off
                balance = "? (Server aus / server off)"
            lines.append(f"  Karte / card {index}: {cardnumber.pretty(number)}  {balance}")
        return lines

    def screenshot(self, name: str) -> Path:
        assert self.ui is not None
        return self.ui.screenshot(self.root / "screenshots" / f"{name}.png")

    def pay(self, card: int, digits: str) -> dict[str, Any]:
        """Type an amount on the till, lay the card on, wait for the result screen."""
        assert self.ui is not None
        self.ui.type_amount(digits)
        self.tap(card)
        self.ui.press("pay")
        return self.ui.wait_screen("result")

    def script(self) -> None:
        """The README walk-through: first payment, offline payment, sync."""
        ui = self.ui
        assert ui is not None
        # before its first snapshot the till's offline limits are zero: wait for it
        snapshot = self.root / "terminal" / SNAPSHOT_FILE
        _wait(snapshot.exists, "the first sync")
        ui.wait(lambda s: s["texts"].get("status.online") == "● Online", "the first sync")
        result = self.pay(0, "1250")
        print(f"1. Zahlung / payment: {result['texts'].get('title')} – 12,50 € mit Karte 1")
        self.screenshot("1-payment")
        ui.press("done")
        self.remove()
        self.stop_server()
        result = self.pay(1, "800")
        print(f"2. Offline: {result['texts'].get('title')} – 8,00 € mit Karte 2")
        print(f"   {result['texts'].get('details', '')}")
        self.screenshot("2-offline")
        ui.press("done")
        self.remove()
        self.start_server()
        ui.press("status")  # tap the status bar: sync now
        ui.wait(lambda s: s["texts"].get("status.unsynced") == "✓ Alles übertragen", "the sync")
        self.screenshot("3-synced")
        print("3. Sync: alles übertragen / everything sent")
        result = self.pay(2, "200")
        print(f"4. NTAG 424 DNA: {result['texts'].get('title')} – 2,00 € mit Karte 3")
        self.screenshot("4-ntag424")
        ui.press("done")
        self.remove()
        print("\n".join(self.balances()))

    def interactive(self) -> None:
        print(MENU, flush=True)
        for line in sys.stdin:
            command = line.strip().lower()
            if command in {"1", "2", "3"}:
                self.tap(int(command) - 1)
                print(f"Karte {command} liegt auf / card {command} on the reader")
            elif command == "r":
                self.remove()
                print("Karte abgenommen / card removed")
            elif command == "o":
                if self.server is None:
                    self.start_server()
                    print(f"Server an / server on: {self.url}")
                else:
                    self.stop_server()
                    print("Server aus: die Kasse zahlt offline / server off: the till goes offline")
            elif command == "b":
                print("\n".join(self.balances()))
            elif command == "s":
                print(f"Bildschirmfoto / screenshot: {self.screenshot(time.strftime('%H%M%S'))}")
            elif command == "q":
                return
            elif command:
                print(MENU)
        # No terminal to read from (stdin closed): keep running until Ctrl-C / SIGTERM.
        run_until_stopped()


def run_until_stopped() -> None:
    """Return at Ctrl-C or SIGTERM (the caller then closes the demo)."""
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    print("läuft bis Strg-C / running until Ctrl-C", flush=True)
    signal.sigwait(stop)


def _stop(process: subprocess.Popen[Any] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)
