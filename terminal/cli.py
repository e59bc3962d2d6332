"""`hcard-terminal`: the till on the command line, on the same core as the Kivy app.

Every subcommand is a thin call into `TerminalTill`; messages are German first,
English second, like everywhere on the till. Exit status: 0 approved / done,
1 declined or refused, 2 cancelled (no card within the timeout), 3 the
terminal cannot work (not enrolled, journal damaged, reader missing).

The CLI runs one command and exits, so it does not keep a sync agent running:
`pay`, `topup` and `void` journal their records and `sync` (or the app's agent) uploads
them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hcard import cardnumber, cardsecret
from hcard.errors import Code, HCardError, message
from hcard.money import format_cents, parse_amount
from hcard.terminal import config as cfg
from hcard.terminal.client import ServerUnreachableError
from hcard.terminal.parse import SettingError
from hcard.terminal.till import Outcome, PaymentResult

EXIT_OK, EXIT_DECLINED, EXIT_CANCELLED, EXIT_BROKEN = 0, 1, 2, 3


def _both(code: Code) -> str:
    return f"{message(code, 'de')} / {message(code, 'en')}"


def _amount(text: str) -> int:
    try:
        return parse_amount(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"kein Betrag / not an amount: {text!r} (z. B. / e.g. 12,50)"
        ) from exc


def _card_secret(text: str) -> str:
    """Checked before enrolling: the one-time code is spent once the server answers. The
    message never shows the text (argparse would, for a plain ValueError)."""
    try:
        return cardsecret.parse(text).hex()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _card_secret_file(name: str) -> str:
    """The secret from a file, so it is not on the command line (`ps` shows that to every
    user); `-` reads standard input, so an installer can pipe in a file only root may read
    (the till's user could not open it, nor re-open root's pipe as /dev/stdin)."""
    try:
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        text = raw.decode("ascii", "replace")
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"nicht lesbar / not readable: {name} ({type(exc).__name__})"
        ) from None
    return _card_secret(text)


def _till(args: argparse.Namespace):
    """The core for one command: no sync agent and no reader watch (`status`, `void`,
    `sync` never touch the reader, which the running app may hold; `pay` and `balance`
    open it when they wait for the card)."""
    from hcard.terminal.core import TerminalTill

    return TerminalTill(
        args.state, reader_path=args.reader, start_sync=False, reader_check_interval_s=None
    )


def _print_result(result: PaymentResult, what: str) -> int:
    mode = "offline" if result.offline else "online"
    if result.outcome == Outcome.APPROVED:
        balance = (
            ""
            if result.balance_cents is None
            else f", Guthaben / balance {format_cents(result.balance_cents)}"
        )
        print(
            f"GENEHMIGT / APPROVED {what} {format_cents(result.amount_cents)}"
            f" — Beleg / receipt {result.receipt_no} ({mode}){balance}"
        )
        return EXIT_OK
    if result.outcome == Outcome.CANCELLED:
        print("ABGEBROCHEN / CANCELLED — keine Karte / no card")
        return EXIT_CANCELLED
    assert result.code is not None
    line = f"ABGELEHNT / DECLINED ({mode}): {_both(result.code)} [{result.code.value}]"
    if result.available_cents:
        line += f" — verfügbar / available {format_cents(result.available_cents)}"
    print(line)
    return EXIT_DECLINED


def cmd_enrol(args: argparse.Namespace) -> int:
    config = cfg.enrol(
        cfg.TerminalState(args.state),
        args.server,
        args.code,
        name=args.name,
        reader=args.reader or "usb",
        originality_key=args.originality_key,
        card_write_secret=args.card_secret or args.card_secret_file or "",
    )
    print(
        f"Angemeldet / enrolled: Terminal {config.terminal_id} — {config.merchant_name}"
        f" ({config.server_url})"
    )
    return EXIT_OK


def cmd_pay(args: argparse.Namespace) -> int:
    till = _till(args)
    try:
        print("Karte auflegen … / tap card …", file=sys.stderr, flush=True)
        result = till.pay(
            args.amount_cents + args.tip_cents, args.tip_cents, card_timeout_s=args.timeout_s
        )
        return _print_result(result, "Zahlung / payment")
    finally:
        till.close()


def cmd_topup(args: argparse.Namespace) -> int:
    till = _till(args)
    try:
        print("Karte auflegen … / tap card …", file=sys.stderr, flush=True)
        result = till.topup(args.amount_cents, card_timeout_s=args.timeout_s)
        return _print_result(result, "Aufladung / top-up")
    finally:
        till.close()


def cmd_void(args: argparse.Namespace) -> int:
    """A payment is voided at once; a top-up (cash handed back) with its card on the reader,
    which is written down by the amount (`TerminalTill.void`)."""
    till = _till(args)
    try:
        if till.needs_card_to_void(args.receipt):
            print(
                "Aufladung stornieren: Karte auflegen … / void a top-up: tap the card …",
                file=sys.stderr,
                flush=True,
            )
            result = till.void(args.receipt)
            return _print_result(result, "Storno Aufladung / top-up void")
        return _print_result(till.void(args.receipt), "Storno / void")
    finally:
        till.close()


def cmd_balance(args: argparse.Namespace) -> int:
    till = _till(args)
    try:
        print("Karte auflegen … / tap card …", file=sys.stderr, flush=True)
        info = till.balance(card_timeout_s=args.timeout_s)
    finally:
        till.close()
    if not info.card_number:
        if info.code is None:
            print("ABGEBROCHEN / CANCELLED — keine Karte / no card")
            return EXIT_CANCELLED
        print(f"ABGELEHNT / REFUSED: {_both(info.code)} [{info.code.value}]")
        return EXIT_DECLINED
    balance = "?" if info.balance_cents is None else format_cents(info.balance_cents)
    print(f"Karte / card {cardnumber.pretty(info.card_number)}: {balance}")
    if info.blocked or info.code:
        code = info.code or Code.CARD_BLOCKED
        print(f"  {_both(code)} [{code.value}]")
    for amount_cents, label in info.recent:
        print(f"  {format_cents(amount_cents):>12}  {label}")
    return EXIT_DECLINED if info.blocked else EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    till = _till(args)
    try:
        try:
            report = till.agent.run_once()
        except ServerUnreachableError as exc:
            print(f"{_both(Code.SERVER_UNREACHABLE)} ({exc})")
            return EXIT_DECLINED
        except HCardError as exc:
            print(f"{_both(exc.code)} [{exc.code.value}]")
            return EXIT_DECLINED
        print(
            f"Synchronisiert / synced: {report['uploaded']} Buchungen / records,"
            f" offen / unsent {till.journal.unsent_count()}"
        )
        if report["refused"] or report["snapshot_error"]:
            print(f"  Problem: {report['refused'] or report['snapshot_error']}")
            return EXIT_DECLINED
        return EXIT_OK
    finally:
        till.close()


def cmd_status(args: argparse.Namespace) -> int:
    state = cfg.TerminalState(args.state)
    if not state.enrolled():
        print("Nicht angemeldet / not enrolled (hcard-terminal enrol --server URL --code CODE)")
        return EXIT_BROKEN
    till = _till(args)
    try:
        status = till.status()
        last = (
            "nie / never"
            if status.last_sync_s is None
            else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status.last_sync_s))
        )
        data = {
            "terminal_id": status.terminal_id,
            "merchant": status.merchant_name,
            "server": status.server_url,
            "unsent": status.unsynced_count,
            "acked_seq": till.journal.acked_seq(),
            "last_seq": till.journal.last_seq(),
            "snapshot_version": till.snapshot.state.version,
            "last_sync": last,
        }
        if args.json:
            print(json.dumps(data, ensure_ascii=False))
        else:
            for name, value in data.items():
                print(f"{name:>17}: {value}")
        return EXIT_OK
    finally:
        till.close()


def cmd_day_close(args: argparse.Namespace) -> int:
    till = _till(args)
    try:
        totals = till.day_close()
    finally:
        till.close()
    receipts = (
        ""
        if totals.first_receipt_no is None
        else f", Belege / receipts {totals.first_receipt_no}–{totals.last_receipt_no}"
    )
    print(
        f"Tagesabschluss / day close: {totals.count} Zahlungen / payments"
        f" {format_cents(totals.sum_cents)}, {totals.void_count} Stornos / voids"
        f" {format_cents(totals.void_sum_cents)}, offline {totals.offline_count},"
        f" nicht synchronisiert / unsynced {totals.unsynced_count}{receipts}"
    )
    # the cash taken for top-ups is the operator's: apart from the sales
    print(
        f"  {totals.topup_count} Aufladungen / top-ups {format_cents(totals.topup_sum_cents)},"
        f" {totals.topup_void_count} stornierte Aufladungen / voided top-ups"
        f" {format_cents(totals.topup_void_sum_cents)}, Bargeld für den Betreiber"
        f" / cash for the operator {format_cents(totals.operator_cash_cents)}"
    )
    return EXIT_OK


def cmd_app(args: argparse.Namespace) -> int:
    """The touchscreen app: its own parser reads everything after `app`, so its options
    (`--fullscreen`, `--size`, `set-pin`) are defined once, in `hcard.terminal.app`."""
    if args.reader:
        print(
            "FEHLER / ERROR: --reader gilt nicht für app, die App nimmt den Leser der Anmeldung"
            " / --reader does not apply to app, the app uses the reader from enrolment",
            file=sys.stderr,
        )
        return EXIT_BROKEN
    from hcard.terminal.app.__main__ import main as app_main

    return app_main(["--state-dir", str(args.state), *args.app_args], prog="hcard-terminal app")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hcard-terminal",
        description="Hattingen Card Kasse auf der Kommandozeile / the till on the command line",
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=cfg.default_state_dir(),
        help="Zustandsordner des Terminals / terminal state folder"
        " (default: $HCARD_TERMINAL_STATE or /var/lib/hcard-terminal)",
    )
    parser.add_argument(
        "--reader",
        help="Kartenleser / card reader: usb, usb:054c:06c3, tty:AMA0:pn532, udp:127.0.0.1:54321"
        " (default: aus der Anmeldung / from enrolment)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Protokoll / log to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enrol = commands.add_parser(
        "enrol",
        help="Terminal anmelden / enrol this terminal",
        description="Schlüsselpaar erzeugen und beim Server anmelden"
        " / make the key pair and register it with the server",
    )
    enrol.add_argument("--server", required=True, help="Server-URL / server URL")
    enrol.add_argument("--code", required=True, help="Anmeldecode / enrolment code (ABCD-EFGH)")
    enrol.add_argument("--name", default="Kasse", help="Name des Terminals / terminal name")
    enrol.add_argument(
        "--originality-key",
        help="vertrauter NXP-Originalitätsschlüssel (hex) / trusted originality key (hex);"
        " default: NXP",
    )
    secret = enrol.add_mutually_exclusive_group()
    secret.add_argument(
        "--card-secret",
        type=_card_secret,
        help="Schreibgeheimnis der Karten (hex) / card write secret (hex)",
    )
    secret.add_argument(
        "--card-secret-file",
        type=_card_secret_file,
        help="... aus einer Datei, - ist die Standardeingabe / ... from a file, - is stdin",
    )
    enrol.set_defaults(func=cmd_enrol)

    pay = commands.add_parser(
        "pay",
        help="Zahlung kassieren / take a payment",
        description="Betrag kassieren, Karte auflegen / charge an amount, tap the card",
    )
    pay.add_argument(
        "amount_cents",
        metavar="amount",
        type=_amount,
        help="Betrag / amount, z. B. / e.g. 12,50",
    )
    pay.add_argument(
        "--tip",
        dest="tip_cents",
        metavar="TIP",
        type=_amount,
        default=0,
        help="Trinkgeld zusätzlich / tip on top (12,50)",
    )
    pay.add_argument(
        "--timeout",
        dest="timeout_s",
        metavar="TIMEOUT",
        type=float,
        default=30.0,
        help="Sekunden auf Karte warten / seconds to wait",
    )
    pay.set_defaults(func=cmd_pay)

    topup = commands.add_parser(
        "topup",
        help="Bargeld aufladen / top up with cash",
        description="Bar kassierten Betrag auf die Karte laden, Karte auflegen (nur online)"
        " / load cash taken at the till onto the card, tap the card (online only)",
    )
    topup.add_argument(
        "amount_cents",
        metavar="amount",
        type=_amount,
        help="Betrag / amount, z. B. / e.g. 20,00",
    )
    topup.add_argument(
        "--timeout",
        dest="timeout_s",
        metavar="TIMEOUT",
        type=float,
        default=30.0,
        help="Sekunden auf Karte warten / seconds to wait",
    )
    topup.set_defaults(func=cmd_topup)

    void = commands.add_parser(
        "void",
        help="Zahlung oder Aufladung stornieren / void a payment or top-up",
        description="Zahlung oder Aufladung von heute per Belegnummer stornieren: eine Zahlung"
        " ohne Karte, eine Aufladung mit ihrer Karte (Bargeld zurück)"
        " / void today's payment or top-up by receipt number: a payment without the card,"
        " a top-up with its card (cash back)",
    )
    void.add_argument(
        "receipt", type=int, help="Belegnummer wie angezeigt / receipt number as shown"
    )
    void.set_defaults(func=cmd_void)

    balance = commands.add_parser(
        "balance",
        help="Guthaben anzeigen / show a card's balance",
        description="Karte auflegen, Guthaben anzeigen / tap a card, show its balance",
    )
    balance.add_argument(
        "--timeout",
        dest="timeout_s",
        metavar="TIMEOUT",
        type=float,
        default=30.0,
        help="Sekunden auf Karte warten / seconds to wait",
    )
    balance.set_defaults(func=cmd_balance)

    sync = commands.add_parser(
        "sync",
        help="Jetzt synchronisieren / sync now",
        description="Journal hochladen, Stammdaten holen / upload the journal, pull the snapshot",
    )
    sync.set_defaults(func=cmd_sync)

    status = commands.add_parser(
        "status",
        help="Zustand anzeigen / show status",
        description="Terminal, Server, offene Buchungen / terminal, server, unsent records",
    )
    status.add_argument("--json", action="store_true", help="als JSON / as JSON")
    status.set_defaults(func=cmd_status)

    day_close = commands.add_parser(
        "day-close",
        help="Tagesabschluss / close the day",
        description="Tagessummen buchen, neuer Geschäftstag / journal the day's totals",
    )
    day_close.set_defaults(func=cmd_day_close)

    app = commands.add_parser(
        "app",
        help="Touchscreen-Kasse starten / start the touchscreen till"
        " (app --help: --fullscreen, --size WxH, set-pin)",
        description="Die Kivy-App / the Kivy app (python -m hcard.terminal.app)",
        add_help=False,  # `app --help` is the app's own help
        prefix_chars="\0",  # every argument after `app` goes to the app's parser
    )
    app.add_argument("app_args", nargs=argparse.REMAINDER)
    app.set_defaults(func=cmd_app)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return args.func(args)
    except HCardError as exc:
        detail = f" {exc.details}" if exc.details else ""
        print(f"FEHLER / ERROR: {_both(exc.code)} [{exc.code.value}]{detail}", file=sys.stderr)
        return EXIT_BROKEN
    except ServerUnreachableError as exc:
        print(f"FEHLER / ERROR: {_both(Code.SERVER_UNREACHABLE)} ({exc})", file=sys.stderr)
        return EXIT_BROKEN
    except PermissionError as exc:
        print(f"FEHLER / ERROR: Zugriff verweigert / permission denied: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    except SettingError as exc:  # a damaged config.json: the message names file and field
        print(f"FEHLER / ERROR: {exc}", file=sys.stderr)
        return EXIT_BROKEN


if __name__ == "__main__":
    sys.exit(main())
