"""`hcard-provision`: the tool marketing staff use to roll the Hattingen Card out.

    hcard-provision login --server https://karte.example.org --user anna
    hcard-provision merchant add --name "Eiscafé" --iban DE89370400440532013000 --fee 1,5
    hcard-provision terminal add --merchant 1 --name "Kasse 1"      # code + QR code
    hcard-provision cards issue --count 20 --batch herbst.json --csv herbst.csv
    hcard-provision cards issue ... --sun-secret-file sun.hex --admin-secret-file admin.hex
    hcard-provision card topup "9276 0000 0000 0012" 20,00
    hcard-provision card replace OLD NEW                              # balance → new card

Every text is German first, English second: the staff are in Hattingen. The texts come from
the project's catalogues (`hcard.i18n`; `_` is `both`, "German / English"). Errors print the
server's code with both messages and exit non-zero (1 refused, 2 bad input, 3 server
unreachable); nothing secret (password, token, write, SUN or admin secret) is ever printed.

Card issuance writes NTAG215/216 and NTAG 424 DNA cards in one batch (`issuance`). A 424
needs two more site secrets, each its own hex file made by `cards new-secret --kind`: the
SUN secret (the server checks the cards' links with it) and the admin secret (the office's
alone: it changes a card's keys). They are asked for only when a 424 comes.
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
import threading
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from hcard import cardnumber, cardsecret, keys, ntag424
from hcard.errors import MESSAGES, HCardError
from hcard.errors import both as refusal
from hcard.i18n import N_, bilingual_help, pair
from hcard.i18n import both as _
from hcard.money import format_cents, parse_amount
from hcard.provisioning import issuance
from hcard.provisioning.staff import Login, StaffClient, default_login_file
from hcard.terminal.card import NXP_PUBLIC_KEY_HEX, TEST_PUBLIC_KEY_HEX, CardKeys, open_reader
from hcard.terminal.card.ntag424_model import TEST_ORIGINALITY_PUBLIC_KEY_HEX
from hcard.terminal.card.ntag424_session import Ntag424Secrets
from hcard.terminal.client import ServerUnreachableError
from hcard.terminal.config import write_atomic

DEFAULT_BALANCE_URL = "https://karte.hattingen.de"
WRITE_SECRET_ENV = "HCARD_CARD_WRITE_SECRET"  # noqa: S105 - the variable's name, not a secret
EXIT_REFUSED, EXIT_INPUT, EXIT_UNREACHABLE = 1, 2, 3

console = Console(highlight=False, soft_wrap=True)  # long lines stay whole in logs


class InputError(Exception):
    """Bad input found before anything was sent; the message is German / English."""


class SecretKind(StrEnum):
    """The site secrets `cards new-secret` makes (docs/card-format.md, "Keys")."""

    WRITE = "write"  # every card's write protection, the 424's purse key: office, server, tills
    SUN = "sun"  # the 424's link (SUN) keys: office and server
    ADMIN = "admin"  # the 424's key 0 (changes keys and settings): the office only


# --- small parsers -----------------------------------------------------------------------


def _card_number(text: str) -> str:
    try:
        return cardnumber.normalize(text)
    except ValueError:
        raise argparse.ArgumentTypeError(_("not a valid card number") + f": {text!r}") from None


def _amount(text: str) -> int:
    try:
        cents = parse_amount(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            _("not an amount") + f": {text!r} (" + _("e.g.") + " 20,00)"
        ) from None
    if cents <= 0:
        raise argparse.ArgumentTypeError(_("amount must be positive"))
    return cents


def _fee_bp(text: str) -> int:
    """A fee in percent (`1,5`) as basis points (150)."""
    try:
        percent = Decimal(text.replace(",", ".").rstrip("% "))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(_("not a percentage") + f": {text!r}") from None
    basis_points = percent * 100
    if not 0 <= basis_points <= 10_000 or basis_points != basis_points.to_integral_value():
        raise argparse.ArgumentTypeError(_("fee 0 to 100 %, two decimals"))
    return int(basis_points)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(_("a number from 1") + f": {text!r}")
    return int(text)


def _checked_bank(iban_text: str, bic_text: str) -> tuple[str, str]:
    """IBAN and BIC checked with schwifty before anything is sent to the server."""
    from schwifty import BIC, IBAN
    from schwifty.exceptions import SchwiftyException

    try:
        iban = IBAN(iban_text)
    except SchwiftyException as exc:
        raise InputError(_("IBAN invalid") + f": {exc}") from None
    try:
        bic = BIC(bic_text) if bic_text else iban.bic
    except SchwiftyException as exc:
        raise InputError(_("BIC invalid") + f": {exc}") from None
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


def _secret_file(path: str, option: str, invalid: str, unreadable: str) -> bytes:
    """A site secret from a hex file (`hcard.cardsecret`); messages never show its text."""
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        raise InputError(f"{unreadable}: {option} {path}") from None
    try:
        return cardsecret.parse(text)
    except ValueError:
        raise InputError(f"{invalid}: {option}") from None


def _secrets_424(args: argparse.Namespace, write_secret: bytes) -> Ntag424Secrets | None:
    """The three secrets that issue an NTAG 424 DNA, or None without `--sun-secret-file` and
    `--admin-secret-file` (a 424 laid on then stops the run before anything is written)."""
    if not args.sun_secret_file and not args.admin_secret_file:
        return None
    if not (args.sun_secret_file and args.admin_secret_file):
        raise InputError(
            _("NTAG 424 DNA cards need both --sun-secret-file and --admin-secret-file")
        )
    count = cardsecret.MIN_BYTES
    sun = _secret_file(
        args.sun_secret_file,
        "--sun-secret-file",
        _("SUN secret invalid (hex, at least {count} bytes)", count=count),
        _("SUN secret not readable"),
    )
    admin = _secret_file(
        args.admin_secret_file,
        "--admin-secret-file",
        _("admin secret invalid (hex, at least {count} bytes)", count=count),
        _("admin secret not readable"),
    )
    # One secret for two purposes would give whoever holds one the keys of the other.
    for file, secret, others in (
        (args.sun_secret_file, sun, (write_secret,)),
        (args.admin_secret_file, admin, (write_secret, sun)),
    ):
        if secret in others:
            raise InputError(
                _("{file} holds the same secret; each site secret must be its own", file=file)
            )
    return Ntag424Secrets(write_secret=write_secret, sun_secret=sun, admin_secret=admin)


def _check_sun_base(url: str) -> None:
    try:
        issuance.check_sun_base_url(url)
    except ValueError:
        raise InputError(
            _(
                "{url} cannot be the link of an NTAG 424 DNA card: https://<host>, no query, "
                "at most {count} characters",
                url=url,
                count=issuance.SUN_BASE_MAX_CHARS,
            )
        ) from None


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
        raise argparse.ArgumentTypeError(_("server URL must start with https://") + f": {text!r}")
    return text.rstrip("/")


def cmd_login(args: argparse.Namespace) -> int:
    password = os.environ.get("HCARD_PASSWORD") or getpass.getpass(_("password") + ": ")
    login = StaffClient(args.server).login(args.user, password)
    login.save(args.login_file)
    console.print(_("logged in as") + f" {login.username} @ {login.server_url}")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    try:
        _client(args).logout()
    finally:
        args.login_file.unlink(missing_ok=True)
    console.print(_("logged out"))
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
    console.print(_("merchant added") + f": {merchant['name']} (id {merchant['id']})")
    return 0


def cmd_merchant_list(args: argparse.Namespace) -> int:
    table = Table("id", _("name"), "IBAN", _("fee"), _("payable"))
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
    console.print(
        _("Terminal {terminal} ({name}) created.", terminal=answer["terminal_id"], name=args.name)
    )
    console.print(_("enrolment code") + f": [bold]{code}[/bold]")
    console.print(f"Server: {client.server_url}")
    segno.make(enrolment_qr_payload(client.server_url, code), error="m").terminal(compact=True)
    console.print(
        _("on the till") + f": hcard-terminal enrol --server {client.server_url} --code {code}"
    )
    return 0


def cmd_terminal_list(args: argparse.Namespace) -> int:
    table = Table("id", _("name"), "Status")
    for t in _client(args).terminals(args.merchant):
        table.add_row(str(t["id"]), str(t["name"]), str(t["status"]))
    console.print(table)
    return 0


def cmd_terminal_revoke(args: argparse.Namespace) -> int:
    _client(args).revoke_terminal(args.terminal_id)
    console.print(
        _("Terminal {terminal} revoked; its uploads are refused", terminal=args.terminal_id)
    )
    return 0


def _card_line(card: dict[str, Any]) -> str:
    state = _("blocked") if card.get("denied") else _("active")
    return (
        f"{cardnumber.pretty(card['card_number'])}  {format_cents(card['balance_cents'])}  {state}"
    )


def cmd_card_show(args: argparse.Namespace) -> int:
    console.print(_card_line(_client(args).card(args.card)))
    return 0


def cmd_card_topup(args: argparse.Namespace) -> int:
    card = _client(args).topup(args.card, args.amount, args.source)
    console.print(_("topped up") + f" {format_cents(args.amount)}: {_card_line(card)}")
    return 0


def cmd_card_block(args: argparse.Namespace) -> int:
    card = _client(args).set_blocked(args.card, True)
    console.print(_("Blocked") + f": {_card_line(card)}")
    return 0


def cmd_card_unblock(args: argparse.Namespace) -> int:
    card = _client(args).set_blocked(args.card, False)
    console.print(_("Unblocked") + f": {_card_line(card)}")
    return 0


def cmd_card_replace(args: argparse.Namespace) -> int:
    answer = _client(args).transfer(args.card, args.new_card)
    console.print(
        _("Balance {amount} moved", amount=format_cents(answer["amount_cents"]))
        + f": {cardnumber.pretty(args.card)} → {cardnumber.pretty(args.new_card)}"
    )
    console.print(_("old") + f": {_card_line(answer['from'])}")
    console.print(_("new") + f": {_card_line(answer['to'])}")
    return 0


def cmd_card_history(args: argparse.Namespace) -> int:
    answer = _client(args).history(args.card)
    console.print(_card_line(answer))
    table = Table("Nr.", _("kind"), _("amount"), "Text", "Terminal")
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
        f"{cardnumber.pretty(answer['card_number'])}  "
        + _("check code")
        + f": [bold]{answer['check_code']}[/bold]  {answer['balance_url']}"
    )
    console.print(
        _(
            "Print this code for the card. A code printed before this version (derived from "
            "the card) no longer works."
        )
        + "\n"
    )
    return 0


def _originality_key(text: str) -> str:
    if text == "nxp":
        return NXP_PUBLIC_KEY_HEX
    if text == "test":
        return TEST_PUBLIC_KEY_HEX
    return text


def _originality_424_key(text: str) -> str:
    """The NTAG 424 DNA's originality key (another NXP key, on secp224r1)."""
    if text == "nxp":
        return ntag424.NXP_ORIGINALITY_KEY_HEX
    if text == "test":
        return TEST_ORIGINALITY_PUBLIC_KEY_HEX
    return text


def _event_line(event: issuance.Event) -> str:
    """What the operator reads for one step of the batch (rich markup)."""
    number = cardnumber.pretty(event.entry.card_number) if event.entry else ""
    reason = MESSAGES[event.code] if event.code else ""  # translated into each language
    kind = event.kind
    if kind is issuance.EventKind.PLACE:
        return _("place the next card") + f": {number}"
    if kind is issuance.EventKind.DONE:
        return f"[green]✔[/green] {number} " + _("written and verified")
    if kind is issuance.EventKind.RETRY:
        return f"[yellow]![/yellow] {number}: " + _(
            "write failed ({reason}), attempt {attempt} – lay the same card on again",
            reason=reason,
            attempt=event.detail,
        )
    if kind is issuance.EventKind.GIVEN_UP:
        return f"[red]✘[/red] {number}: " + _(
            "given up and blocked ({detail}) – put the card aside", detail=event.detail
        )
    if kind is issuance.EventKind.TAG_REFUSED:
        return "[red]✘[/red] " + _(
            "card {uid} refused: {reason} {detail} – put it aside",
            uid=event.uid or "",
            reason=reason,
            detail=event.detail,
        )
    if kind is issuance.EventKind.UNREADABLE:
        return "[yellow]![/yellow] " + _("card unreadable, lay it on again")
    if kind is issuance.EventKind.SECRETS_MISSING:
        return "[red]✘[/red] " + _(
            "card {uid} is an NTAG 424 DNA: issuing it needs --sun-secret-file and "
            "--admin-secret-file; nothing was written",
            uid=event.uid or "",
        )
    return _("remove the card")


def cmd_cards_new_secret(args: argparse.Namespace) -> int:
    """Make one site secret once; never overwrite one (cards depend on it)."""
    path: Path = args.out
    if path.exists():
        raise InputError(_("{path} exists, never overwritten", path=path))
    write_atomic(path, secrets.token_bytes(cardsecret.MIN_BYTES).hex().encode() + b"\n")
    kind = SecretKind(args.kind)
    if kind is SecretKind.SUN:
        text = _(
            "SUN secret in {path} (0600), for NTAG 424 DNA cards. Keep it safe; give it to the "
            "server once (hcard-server init --sun-secret-file) and to cards issue "
            "(--sun-secret-file)",
            path=path,
        )
    elif kind is SecretKind.ADMIN:
        text = _(
            "Admin secret in {path} (0600), for issuing NTAG 424 DNA cards (cards issue "
            "--admin-secret-file). Keep it in the office only: no server or till needs it",
            path=path,
        )
    else:
        text = _(
            "Card write secret in {path} (0600). Keep it safe; tills get it from the server at "
            "enrolment (hcard-server init --card-secret-file)",
            path=path,
        )
    console.print(text)
    return 0


def cmd_cards_issue(args: argparse.Namespace) -> int:
    client = _client(args)
    secret = _write_secret(args)
    secrets_424 = _secrets_424(args, secret)
    if args.batch.exists():
        batch = issuance.Batch.load(args.batch)
        if batch.server_url != client.server_url:
            raise InputError(
                _(
                    "The batch belongs to {batch_server}, logged in at {server}",
                    batch_server=batch.server_url,
                    server=client.server_url,
                )
            )
        console.print(_("resuming batch") + f" {args.batch}")
        if args.count is not None and args.count != len(batch.entries):
            console.print(
                _(
                    "--count {count} ignored, the batch has {numbers} numbers",
                    count=args.count,
                    numbers=len(batch.entries),
                )
            )
    else:
        if args.count is None:
            raise InputError(_("--count missing for a new batch"))
        if secrets_424 is not None:
            _check_sun_base(args.balance_url)  # before any number is reserved
        batch = issuance.Batch.reserve(args.batch, client, args.count, args.balance_url)
    if secrets_424 is not None:
        _check_sun_base(batch.balance_page_url)
    card_keys = CardKeys(
        issuer_public=keys.public_from_hex(client.issuer_public_key()),
        terminal_keys={},
        write_secret=secret,
        originality_key_hex=_originality_key(args.originality_key),
        originality_424_key_hex=_originality_424_key(args.originality_424_key),
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
            task = progress.add_task(_("cards"), total=total, completed=finished)

            def report(event: issuance.Event) -> None:
                progress.console.print(_event_line(event))
                if event.kind in (issuance.EventKind.DONE, issuance.EventKind.GIVEN_UP):
                    progress.advance(task)

            complete = issuance.Issuer(
                batch,
                client,
                reader,
                card_keys,
                report,
                max_attempts=args.max_attempts,
                secrets_424=secrets_424,
            ).run(args.card_timeout, threading.Event())
    except issuance.SecretsMissingError:
        raise InputError(
            _(
                "Stopped at an NTAG 424 DNA card. Run the same command with --sun-secret-file "
                "and --admin-secret-file to resume"
            )
        ) from None
    finally:
        reader.close()
        rows = batch.write_csv(args.csv)
    failed = [e for e in batch.entries if e.status is issuance.Status.FAILED]
    console.print(_("print file") + f": {args.csv} ({rows} " + _("cards") + ")")
    for entry in failed:
        console.print(
            "[red]"
            + _("failed")
            + f":[/red] {cardnumber.pretty(entry.card_number)} ({entry.error}) – "
            + _("blocked")
        )
    if not complete:
        console.print(
            _(
                "Paused, {open} open; run the same command to resume",
                open=len(batch.pending()),
            )
        )
        return EXIT_REFUSED
    return 0


# --- the parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hcard-provision",
        description=_("Hattingen Card for the marketing office: merchants, terminals, cards."),
    )
    parser.add_argument(
        "--login-file",
        type=Path,
        default=default_login_file(),
        help=_("cached login (mode 0600)") + " (default: ~/.config/hcard/provision.json)",
    )
    metavar = "/".join(pair(N_("COMMAND")))  # BEFEHL/COMMAND: one word in the usage line
    sub = parser.add_subparsers(dest="command", required=True, metavar=metavar)

    def command(group: Any, name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        p = group.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command(sub, "login", _("log in to the server"), cmd_login)
    p.add_argument(
        "--server", type=_server_url, required=True, help=_("server URL") + " (https://...)"
    )
    p.add_argument("--user", required=True, help=_("user name"))
    command(sub, "logout", _("log out, forget the login"), cmd_logout)

    merchant = sub.add_parser(
        "merchant",
        help=_("merchants"),
        description=_("manage merchants"),
    ).add_subparsers(dest="merchant_command", required=True, metavar=metavar)
    p = command(merchant, "add", _("add a merchant"), cmd_merchant_add)
    p.add_argument("--name", required=True, help=_("shop name"))
    p.add_argument("--iban", required=True, help=_("IBAN for payouts"))
    p.add_argument("--bic", default="", help="BIC (" + _("else from the IBAN") + ")")
    p.add_argument("--address", default="", help=_("address"))
    p.add_argument("--contact", default="", help=_("contact (e-mail, phone)"))
    p.add_argument("--fee", type=_fee_bp, default=0, help=_("fee in percent, e.g. 1,5"))
    command(merchant, "list", _("list merchants"), cmd_merchant_list)

    terminal = sub.add_parser(
        "terminal",
        help=_("terminals (tills)"),
        description=_("add and revoke terminals"),
    ).add_subparsers(dest="terminal_command", required=True, metavar=metavar)
    p = command(
        terminal, "add", _("add a terminal, enrolment code as text and QR code"), cmd_terminal_add
    )
    p.add_argument("--merchant", type=_positive, required=True, help=_("merchant id"))
    p.add_argument("--name", default="Kasse 1", help=_("till name"))
    p = command(terminal, "list", _("list terminals"), cmd_terminal_list)
    p.add_argument("--merchant", type=_positive, required=True, help=_("merchant id"))
    p = command(terminal, "revoke", _("revoke a terminal (lost, stolen)"), cmd_terminal_revoke)
    p.add_argument("terminal_id", type=_positive, help=_("terminal id"))

    cards = sub.add_parser(
        "cards",
        help=_("issue cards"),
        description=_("issue cards in batches"),
    ).add_subparsers(dest="cards_command", required=True, metavar=metavar)
    p = command(
        cards,
        "new-secret",
        _("make a site secret once: card write secret, or SUN or admin secret (NTAG 424 DNA)"),
        cmd_cards_new_secret,
    )
    p.add_argument("--out", type=Path, required=True, help=_("file (0600)"))
    p.add_argument(
        "--kind",
        choices=[k.value for k in SecretKind],
        default=SecretKind.WRITE.value,
        help=_("which secret: write (default), sun or admin"),
    )
    p = command(
        cards,
        "issue",
        _("write a batch: reserve numbers, write and verify cards, print file"),
        cmd_cards_issue,
    )
    p.add_argument("--count", type=_positive, help=_("count (new batch)"))
    p.add_argument(
        "--batch", type=Path, required=True, help=_("batch file; resumed when it exists")
    )
    p.add_argument("--csv", type=Path, required=True, help=_("print file") + " (CSV)")
    p.add_argument(
        "--reader", default="usb", help=_("card reader") + " (usb, tty:..., udp:..., pcsc:...)"
    )
    p.add_argument(
        "--balance-url",
        default=DEFAULT_BALANCE_URL,
        help=_("balance page") + f" (default {DEFAULT_BALANCE_URL})",
    )
    p.add_argument(
        "--write-secret-file",
        help=_("card write secret (hex); else ${variable}", variable=WRITE_SECRET_ENV),
    )
    p.add_argument(
        "--originality-key",
        default="nxp",
        help=_("NXP originality key: nxp, test (emulator) or hex"),
    )
    p.add_argument(
        "--sun-secret-file",
        help=_("SUN secret (hex) for NTAG 424 DNA cards; the server's own"),
    )
    p.add_argument(
        "--admin-secret-file",
        help=_("admin secret (hex) for NTAG 424 DNA cards"),
    )
    p.add_argument(
        "--originality-424-key",
        default="nxp",
        help=_("NXP originality key of NTAG 424 DNA cards: nxp, test (emulator) or hex"),
    )
    p.add_argument(
        "--card-timeout", type=float, default=120.0, help=_("seconds to wait for each card")
    )
    p.add_argument(
        "--max-attempts",
        type=_positive,
        default=issuance.DEFAULT_MAX_ATTEMPTS,
        help=_("write attempts per card"),
    )

    card = sub.add_parser(
        "card",
        help=_("one card: top up, block, replace, history"),
        description=_("manage one card"),
    ).add_subparsers(dest="card_command", required=True, metavar=metavar)
    p = command(card, "show", _("balance and status"), cmd_card_show)
    p.add_argument("card", type=_card_number, help=_("card number"))
    p = command(card, "topup", _("top a card up"), cmd_card_topup)
    p.add_argument("card", type=_card_number, help=_("card number"))
    p.add_argument("amount", type=_amount, help=_("amount, e.g. 20,00"))
    p.add_argument(
        "--source",
        choices=("cash", "online"),
        default="cash",
        help=_("cash or online (bank transfers come with the bank statement)"),
    )
    p = command(card, "block", _("block a card (lost)"), cmd_card_block)
    p.add_argument("card", type=_card_number, help=_("card number"))
    p = command(card, "unblock", _("unblock a card"), cmd_card_unblock)
    p.add_argument("card", type=_card_number, help=_("card number"))
    p = command(
        card,
        "replace",
        _("replacement: balance to the new card, old one blocked"),
        cmd_card_replace,
    )
    p.add_argument("card", type=_card_number, help=_("old card"))
    p.add_argument("new_card", type=_card_number, help=_("new card"))
    p = command(card, "history", _("the card's history"), cmd_card_history)
    p.add_argument("card", type=_card_number, help=_("card number"))
    p = command(
        card,
        "check-code",
        _("check code to print (balance page); an old code ends"),
        cmd_card_check_code,
    )
    p.add_argument("card", type=_card_number, help=_("card number"))
    return bilingual_help(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except InputError as error:
        console.print("[red]" + _("error") + f":[/red] {error}")
        return EXIT_INPUT
    except HCardError as error:
        console.print(
            "[red]" + _("refused") + f":[/red] {refusal(error.code)} ({error.code.value})"
        )
        return EXIT_REFUSED
    except ServerUnreachableError as error:
        console.print("[red]" + _("server unreachable") + f":[/red] {error}")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        console.print(_("interrupted"))
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
