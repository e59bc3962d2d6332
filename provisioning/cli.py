"""`hcard-provision`: the tool marketing staff use to roll the Hattingen Card out.

    hcard-provision login --server https://karte.example.org --user anna
    hcard-provision merchant add --name "Eiscafé" --iban DE89370400440532013000 --fee 1,5
    hcard-provision terminal add --merchant 1 --name "Kasse 1"      # code + QR code
    hcard-provision cards issue --count 20 --batch herbst.json --csv herbst.csv
    hcard-provision card topup "9276 0000 0000 0012" 20,00
    hcard-provision card replace OLD NEW                              # balance → new card

Every text is German first, English second: the staff are in Hattingen. Errors print the
server's code with both messages and exit non-zero (1 refused, 2 bad input, 3 server
unreachable); nothing secret (password, token, write secret) is ever printed.
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
import threading
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from hcard import cardnumber, cardsecret, keys
from hcard.errors import HCardError, message
from hcard.money import format_cents, parse_amount
from hcard.provisioning import issuance
from hcard.provisioning.staff import Login, StaffClient, default_login_file
from hcard.terminal.card import NXP_PUBLIC_KEY_HEX, TEST_PUBLIC_KEY_HEX, CardKeys, open_reader
from hcard.terminal.client import ServerUnreachableError
from hcard.terminal.config import write_atomic

DEFAULT_BALANCE_URL = "https://karte.hattingen.de"
WRITE_SECRET_ENV = "HCARD_CARD_WRITE_SECRET"  # noqa: S105 - the variable's name, not a secret
EXIT_REFUSED, EXIT_INPUT, EXIT_UNREACHABLE = 1, 2, 3

console = Console(highlight=False, soft_wrap=True)  # long lines stay whole in logs


class InputError(Exception):
    """Bad input found before anything was sent; the message is German / English."""


# --- small parsers (German first, English too) -------------------------------------------


def _card_number(text: str) -> str:
    try:
        return cardnumber.normalize(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"keine gültige Kartennummer / not a valid card number: {text!r}"
        ) from None


def _amount(text: str) -> int:
    try:
        cents = parse_amount(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"kein Betrag / not an amount: {text!r} (z. B. / e.g. 20,00)"
        ) from None
    if cents <= 0:
        raise argparse.ArgumentTypeError("Betrag muss positiv sein / amount must be positive")
    return cents


def _fee_bp(text: str) -> int:
    """A fee in percent (`1,5`) as basis points (150)."""
    try:
        percent = Decimal(text.replace(",", ".").rstrip("% "))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(
            f"keine Prozentzahl / not a percentage: {text!r}"
        ) from None
    basis_points = percent * 100
    if not 0 <= basis_points <= 10_000 or basis_points != basis_points.to_integral_value():
        raise argparse.ArgumentTypeError(
            "Gebühr 0 bis 100 %, höchstens zwei Nachkommastellen / fee 0 to 100 %, two decimals"
        )
    return int(basis_points)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"Zahl ab 1 / a number from 1: {text!r}")
    return int(text)


def _checked_bank(iban_text: str, bic_text: str) -> tuple[str, str]:
    """IBAN and BIC checked with schwifty before anything is sent to the server."""
    from schwifty import BIC, IBAN
    from schwifty.exceptions import SchwiftyException

    try:
        iban = IBAN(iban_text)
    except SchwiftyException as exc:
        raise InputError(f"IBAN ungültig / IBAN invalid: {exc}") from None
    try:
        bic = BIC(bic_text) if bic_text else iban.bic
    except SchwiftyException as exc:
        raise InputError(f"BIC ungültig / BIC invalid: {exc}") from None
    return iban.compact, str(bic or "")


def _write_secret(args: argparse.Namespace) -> bytes:
    """The site's card write secret (`hcard.cardsecret`): it derives every card's NTAG
    password, and the tills need the same one to write the purse."""
    text = os.environ.get(WRITE_SECRET_ENV, "")
    if args.write_secret_file:
        text = Path(args.write_secret_file).read_text("utf-8")
    try:
        return cardsecret.parse(text)
    except ValueError as exc:
        raise InputError(f"{exc}: --write-secret-file / ${WRITE_SECRET_ENV}") from None


# --- commands ----------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> StaffClient:
    login = Login.load(args.login_file)
    return StaffClient(login.server_url, login.token)


def _server_url(text: str) -> str:
    """https only: the password and the token travel in it (plain http on loopback is allowed
    for the demo and the tests)."""
    parts = urlsplit(text)
    loopback = parts.hostname in {"localhost", "127.0.0.1", "::1"}
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise argparse.ArgumentTypeError(
            f"Server-Adresse muss mit https:// beginnen / server URL must start with https://: "
            f"{text!r}"
        )
    return text.rstrip("/")


def cmd_login(args: argparse.Namespace) -> int:
    password = os.environ.get("HCARD_PASSWORD") or getpass.getpass("Passwort / password: ")
    login = StaffClient(args.server).login(args.user, password)
    login.save(args.login_file)
    console.print(f"Angemeldet als / logged in as {login.username} @ {login.server_url}")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    try:
        _client(args).logout()
    finally:
        args.login_file.unlink(missing_ok=True)
    console.print("Abgemeldet / logged out")
    return 0


def cmd_merchant_add(args: argparse.Namespace) -> int:
    iban, bic = _checked_bank(args.iban, args.bic)
    merchant = _client(args).create_merchant(
        name=args.name,
        iban=iban,
        bic=bic,
        address=args.address,
        contact=args.contact,
        fee_bp=args.fee,
    )
    console.print(
        f"Akzeptanzstelle angelegt / merchant added: {merchant['name']} (id {merchant['id']})"
    )
    return 0


def cmd_merchant_list(args: argparse.Namespace) -> int:
    table = Table("id", "Name / name", "IBAN", "Gebühr / fee", "offen / payable")
    for m in _client(args).merchants():
        table.add_row(
            str(m["id"]),
            m["name"],
            m["iban"],
            f"{Decimal(m['fee_bp']) / 100} %",
            format_cents(m["payable_cents"]),
        )
    console.print(table)
    return 0


def enrolment_qr_payload(server_url: str, code: str) -> str:
    """What the enrolment QR code holds: server and one-time code in one scannable string."""
    return f"hcard-enrol:{code}@{server_url}"


def cmd_terminal_add(args: argparse.Namespace) -> int:
    import segno

    client = _client(args)
    answer = client.create_terminal(args.merchant, args.name)
    code = str(answer["code"])
    console.print(f"Terminal {answer['terminal_id']} ({args.name}) angelegt / created.")
    console.print(f"Anmeldecode / enrolment code: [bold]{code}[/bold]")
    console.print(f"Server: {client.server_url}")
    segno.make(enrolment_qr_payload(client.server_url, code), error="m").terminal(compact=True)
    console.print(
        "Auf der Kasse / on the till: hcard-terminal enrol "
        f"--server {client.server_url} --code {code}"
    )
    return 0


def cmd_terminal_list(args: argparse.Namespace) -> int:
    table = Table("id", "Name / name", "Status")
    for t in _client(args).terminals(args.merchant):
        table.add_row(str(t["id"]), str(t["name"]), str(t["status"]))
    console.print(table)
    return 0


def cmd_terminal_revoke(args: argparse.Namespace) -> int:
    _client(args).revoke_terminal(args.terminal_id)
    console.print(
        f"Terminal {args.terminal_id} gesperrt; seine Uploads werden abgelehnt / revoked; "
        "its uploads are refused"
    )
    return 0


def _card_line(card: dict[str, Any]) -> str:
    state = "gesperrt / blocked" if card.get("denied") else "aktiv / active"
    return (
        f"{cardnumber.pretty(card['card_number'])}  {format_cents(card['balance_cents'])}  {state}"
    )


def cmd_card_show(args: argparse.Namespace) -> int:
    console.print(_card_line(_client(args).card(args.card)))
    return 0


def cmd_card_topup(args: argparse.Namespace) -> int:
    card = _client(args).topup(args.card, args.amount, args.source)
    console.print(f"Aufgeladen / topped up {format_cents(args.amount)}: {_card_line(card)}")
    return 0


def cmd_card_block(args: argparse.Namespace) -> int:
    card = _client(args).set_blocked(args.card, True)
    console.print(f"Gesperrt / blocked: {_card_line(card)}")
    return 0


def cmd_card_unblock(args: argparse.Namespace) -> int:
    card = _client(args).set_blocked(args.card, False)
    console.print(f"Entsperrt / unblocked: {_card_line(card)}")
    return 0


def cmd_card_replace(args: argparse.Namespace) -> int:
    answer = _client(args).transfer(args.card, args.new_card)
    console.print(
        f"Guthaben {format_cents(answer['amount_cents'])} übertragen / balance moved: "
        f"{cardnumber.pretty(args.card)} → {cardnumber.pretty(args.new_card)}"
    )
    console.print(f"alt / old: {_card_line(answer['from'])}")
    console.print(f"neu / new: {_card_line(answer['to'])}")
    return 0


def cmd_card_history(args: argparse.Namespace) -> int:
    answer = _client(args).history(args.card)
    console.print(_card_line(answer))
    table = Table("Nr.", "Art / kind", "Betrag / amount", "Text", "Terminal")
    for row in answer["history"]:
        terminal = f"{row['terminal_id']}/{row['seq']}" if row.get("terminal_id") else ""
        table.add_row(
            str(row["id"]),
            str(row["kind"]),
            format_cents(row["amount_cents"]),
            str(row.get("label") or ""),
            terminal,
        )
    console.print(table)
    return 0


def cmd_card_check_code(args: argparse.Namespace) -> int:
    answer = _client(args).check_code(args.card)
    console.print(
        f"{cardnumber.pretty(answer['card_number'])}  Prüfcode / check code: "
        f"[bold]{answer['check_code']}[/bold]  {answer['balance_url']}"
    )
    console.print(
        "Diesen Code für die Karte drucken. Ein Code, der vor dieser Version aus der Karte "
        "abgeleitet gedruckt wurde, gilt ab jetzt nicht mehr. / Print this code for the card. "
        "A code printed before this version (derived from the card) no longer works.\n"
    )
    return 0


def _originality_key(text: str) -> str:
    if text == "nxp":
        return NXP_PUBLIC_KEY_HEX
    if text == "test":
        return TEST_PUBLIC_KEY_HEX
    return text


_EVENT_TEXT = {
    issuance.EventKind.PLACE: "Nächste Karte auflegen / place the next card: {number}",
    issuance.EventKind.DONE: (
        "[green]✔[/green] {number} geschrieben und geprüft / written and verified"
    ),
    issuance.EventKind.RETRY: (
        "[yellow]![/yellow] {number}: Schreiben fehlgeschlagen ({code}), Versuch {detail} – "
        "dieselbe Karte erneut auflegen / write failed, lay the same card on again"
    ),
    issuance.EventKind.GIVEN_UP: (
        "[red]✘[/red] {number}: aufgegeben und gesperrt ({detail}) – Karte beiseitelegen / "
        "given up and blocked, put the card aside"
    ),
    issuance.EventKind.TAG_REFUSED: (
        "[red]✘[/red] Karte {uid} abgelehnt / card refused: {code} {detail} – beiseitelegen / "
        "put it aside"
    ),
    issuance.EventKind.UNREADABLE: (
        "[yellow]![/yellow] Karte nicht lesbar, bitte erneut auflegen / card unreadable, lay it "
        "on again"
    ),
    issuance.EventKind.REMOVE: "Karte abnehmen / remove the card",
}


def cmd_cards_new_secret(args: argparse.Namespace) -> int:
    """Make the site's card write secret once; never overwrite one (cards depend on it)."""
    path: Path = args.out
    if path.exists():
        raise InputError(
            f"{path} gibt es schon, wird nie überschrieben / exists, never overwritten"
        )
    write_atomic(path, secrets.token_bytes(cardsecret.MIN_BYTES).hex().encode() + b"\n")
    console.print(
        f"Schreibgeheimnis in / card write secret in {path} (0600). Sicher aufbewahren; die "
        "Kassen bekommen es bei der Anmeldung vom Server (hcard-server init --card-secret-file) "
        "/ keep it safe; tills get it from the server at enrolment (hcard-server init "
        "--card-secret-file)"
    )
    return 0


def cmd_cards_issue(args: argparse.Namespace) -> int:
    client = _client(args)
    secret = _write_secret(args)
    if args.batch.exists():
        batch = issuance.Batch.load(args.batch)
        if batch.server_url != client.server_url:
            raise InputError(
                f"Stapel gehört zu / batch belongs to {batch.server_url}, "
                f"angemeldet bei / logged in at {client.server_url}"
            )
        console.print(f"Stapel wird fortgesetzt / resuming batch {args.batch}")
        if args.count is not None and args.count != len(batch.entries):
            console.print(
                f"--count {args.count} ignoriert, der Stapel hat {len(batch.entries)} Nummern / "
                "ignored, the batch has its numbers"
            )
    else:
        if args.count is None:
            raise InputError("--count fehlt für einen neuen Stapel / --count missing")
        batch = issuance.Batch.reserve(args.batch, client, args.count, args.balance_url)
    card_keys = CardKeys(
        issuer_public=keys.public_from_hex(client.issuer_public_key()),
        terminal_keys={},
        write_secret=secret,
        originality_key_hex=_originality_key(args.originality_key),
    )
    reader = open_reader(args.reader)
    total = len(batch.entries)
    finished = total - len(batch.pending())
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task("Karten / cards", total=total, completed=finished)

            def report(event: issuance.Event) -> None:
                number = cardnumber.pretty(event.entry.card_number) if event.entry else ""
                text = _EVENT_TEXT[event.kind].format(
                    number=number,
                    uid=event.uid or "",
                    code=message(event.code, "de") if event.code else "",
                    detail=event.detail,
                )
                progress.console.print(text)
                if event.kind in (issuance.EventKind.DONE, issuance.EventKind.GIVEN_UP):
                    progress.advance(task)

            complete = issuance.Issuer(
                batch, client, reader, card_keys, report, max_attempts=args.max_attempts
            ).run(args.card_timeout, threading.Event())
    finally:
        reader.close()
        rows = batch.write_csv(args.csv)
    failed = [e for e in batch.entries if e.status is issuance.Status.FAILED]
    console.print(f"Druckdatei / print file: {args.csv} ({rows} Karten / cards)")
    for entry in failed:
        console.print(
            f"[red]fehlgeschlagen / failed:[/red] {cardnumber.pretty(entry.card_number)} "
            f"({entry.error}) – gesperrt / blocked"
        )
    if not complete:
        console.print(
            f"Unterbrochen, {len(batch.pending())} offen; derselbe Befehl setzt fort / "
            "paused; run the same command to resume"
        )
        return EXIT_REFUSED
    return 0


# --- the parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hcard-provision",
        description=(
            "Hattingen Card für das Stadtmarketing: Akzeptanzstellen, Terminals, Karten. / "
            "Hattingen Card for the marketing office: merchants, terminals, cards."
        ),
    )
    parser.add_argument(
        "--login-file",
        type=Path,
        default=default_login_file(),
        help="Anmeldung (Modus 0600) / cached login (mode 0600) "
        "(default: ~/.config/hcard/provision.json)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="BEFEHL/COMMAND")

    def command(group: Any, name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command(sub, "login", "Am Server anmelden / log in to the server", cmd_login)
    p.add_argument(
        "--server",
        type=_server_url,
        required=True,
        help="Server-Adresse / server URL (https://...)",
    )
    p.add_argument("--user", required=True, help="Benutzername / user name")
    command(sub, "logout", "Abmelden, Anmeldung löschen / log out, forget the login", cmd_logout)

    merchant = sub.add_parser(
        "merchant",
        help="Akzeptanzstellen / merchants",
        description="Akzeptanzstellen verwalten / manage merchants",
    ).add_subparsers(dest="merchant_command", required=True, metavar="BEFEHL/COMMAND")
    p = command(merchant, "add", "Akzeptanzstelle anlegen / add a merchant", cmd_merchant_add)
    p.add_argument("--name", required=True, help="Name des Geschäfts / shop name")
    p.add_argument("--iban", required=True, help="IBAN für Auszahlungen / IBAN for payouts")
    p.add_argument("--bic", default="", help="BIC (sonst aus der IBAN / else from the IBAN)")
    p.add_argument("--address", default="", help="Anschrift / address")
    p.add_argument("--contact", default="", help="Kontakt (E-Mail, Telefon) / contact")
    p.add_argument(
        "--fee", type=_fee_bp, default=0, help="Gebühr in Prozent, z. B. 1,5 / fee in percent"
    )
    command(merchant, "list", "Akzeptanzstellen anzeigen / list merchants", cmd_merchant_list)

    terminal = sub.add_parser(
        "terminal",
        help="Terminals (Kassen) / terminals (tills)",
        description="Terminals anlegen und sperren / add and revoke terminals",
    ).add_subparsers(dest="terminal_command", required=True, metavar="BEFEHL/COMMAND")
    p = command(
        terminal,
        "add",
        "Terminal anlegen, Anmeldecode als Text und QR-Code / add a terminal, enrolment code "
        "as text and QR code",
        cmd_terminal_add,
    )
    p.add_argument("--merchant", type=_positive, required=True, help="id der Akzeptanzstelle")
    p.add_argument("--name", default="Kasse 1", help="Name der Kasse / till name")
    p = command(terminal, "list", "Terminals anzeigen / list terminals", cmd_terminal_list)
    p.add_argument("--merchant", type=_positive, required=True, help="id der Akzeptanzstelle")
    p = command(
        terminal,
        "revoke",
        "Terminal sperren (verloren, gestohlen) / revoke a terminal (lost, stolen)",
        cmd_terminal_revoke,
    )
    p.add_argument("terminal_id", type=_positive, help="id des Terminals / terminal id")

    cards = sub.add_parser(
        "cards",
        help="Karten ausgeben / issue cards",
        description="Karten stapelweise ausgeben / issue cards in batches",
    ).add_subparsers(dest="cards_command", required=True, metavar="BEFEHL/COMMAND")
    p = command(
        cards,
        "new-secret",
        "Schreibgeheimnis der Karten einmalig erzeugen / make the card write secret once",
        cmd_cards_new_secret,
    )
    p.add_argument("--out", type=Path, required=True, help="Datei (0600) / file (0600)")
    p = command(
        cards,
        "issue",
        "Stapel schreiben: Nummern reservieren, Karten schreiben und prüfen, Druckdatei / "
        "write a batch: reserve numbers, write and verify cards, print file",
        cmd_cards_issue,
    )
    p.add_argument("--count", type=_positive, help="Anzahl (neuer Stapel) / count (new batch)")
    p.add_argument(
        "--batch",
        type=Path,
        required=True,
        help="Stapeldatei; gibt es sie, wird fortgesetzt / batch file; resumed when it exists",
    )
    p.add_argument("--csv", type=Path, required=True, help="Druckdatei / print file (CSV)")
    p.add_argument("--reader", default="usb", help="nfcpy-Leser / reader (usb, tty:..., udp:...)")
    p.add_argument(
        "--balance-url",
        default=DEFAULT_BALANCE_URL,
        help=f"Guthabenseite / balance page (default {DEFAULT_BALANCE_URL})",
    )
    p.add_argument(
        "--write-secret-file",
        help=f"Schreibschlüssel (Hex) / card write secret (hex); else ${WRITE_SECRET_ENV}",
    )
    p.add_argument(
        "--originality-key",
        default="nxp",
        help="NXP-Originalitätsschlüssel: nxp, test (Emulator) oder Hex / originality key",
    )
    p.add_argument(
        "--card-timeout",
        type=float,
        default=120.0,
        help="Sekunden warten je Karte / seconds to wait for each card",
    )
    p.add_argument(
        "--max-attempts",
        type=_positive,
        default=issuance.DEFAULT_MAX_ATTEMPTS,
        help="Schreibversuche je Karte / write attempts per card",
    )

    card = sub.add_parser(
        "card",
        help="Eine Karte: aufladen, sperren, ersetzen, Verlauf / one card: top up, block, "
        "replace, history",
        description="Eine Karte verwalten / manage one card",
    ).add_subparsers(dest="card_command", required=True, metavar="BEFEHL/COMMAND")
    p = command(card, "show", "Guthaben und Status / balance and status", cmd_card_show)
    p.add_argument("card", type=_card_number, help="Kartennummer / card number")
    p = command(card, "topup", "Karte aufladen / top a card up", cmd_card_topup)
    p.add_argument("card", type=_card_number, help="Kartennummer / card number")
    p.add_argument("amount", type=_amount, help="Betrag, z. B. 20,00 / amount, e.g. 20,00")
    p.add_argument(
        "--source",
        choices=("cash", "bank", "online"),
        default="cash",
        help="bar, Überweisung, online / cash, bank transfer, online",
    )
    p = command(card, "block", "Karte sperren (verloren) / block a card (lost)", cmd_card_block)
    p.add_argument("card", type=_card_number, help="Kartennummer / card number")
    p = command(card, "unblock", "Karte entsperren / unblock a card", cmd_card_unblock)
    p.add_argument("card", type=_card_number, help="Kartennummer / card number")
    p = command(
        card,
        "replace",
        "Ersatzkarte: Guthaben auf neue Karte, alte gesperrt / replacement: balance to the new "
        "card, old one blocked",
        cmd_card_replace,
    )
    p.add_argument("card", type=_card_number, help="alte Karte / old card")
    p.add_argument("new_card", type=_card_number, help="neue Karte / new card")
    p = command(card, "history", "Buchungen der Karte / the card's history", cmd_card_history)
    p.add_argument("card", type=_card_number, help="Kartennummer / card number")
    p = command(
        card,
        "check-code",
        "Prüfcode zum Drucken (Guthabenseite); alter Code endet / check code to print "
        "(balance page); an old code ends",
        cmd_card_check_code,
    )
    p.add_argument("card", type=_card_number, help="Kartennummer / card number")
    _bilingual_help_option(parser)
    return parser


def _bilingual_help_option(parser: argparse.ArgumentParser) -> None:
    """argparse's own `-h` says "show this help message and exit" in English only."""
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            action.help = "diese Hilfe zeigen / show this help"
        elif isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _bilingual_help_option(sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except InputError as error:
        console.print(f"[red]Fehler / error:[/red] {error}")
        return EXIT_INPUT
    except HCardError as error:
        german, english = message(error.code, "de"), message(error.code, "en")
        console.print(f"[red]Abgelehnt / refused:[/red] {german} / {english} ({error.code.value})")
        return EXIT_REFUSED
    except ServerUnreachableError as error:
        console.print(f"[red]Server nicht erreichbar / server unreachable:[/red] {error}")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        console.print("Abgebrochen / interrupted")
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
