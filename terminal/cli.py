"""`hcard-terminal`: the till on the command line, on the same core as the Kivy app.

Every subcommand is a thin call into `TerminalTill`; messages are German first,
English second, like everywhere on the till, from the project's catalogues (`hcard.i18n`;
`_` is `both`, "German / English"). Exit status: 0 approved / done,
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
from collections.abc import Callable, Sequence
from pathlib import Path

from hcard import cardnumber, cardsecret, ntag424
from hcard.errors import Code, HCardError
from hcard.errors import both as _both
from hcard.i18n import bilingual_help
from hcard.i18n import both as _
from hcard.money import format_cents, parse_amount
from hcard.terminal import config as cfg
from hcard.terminal.card import originality
from hcard.terminal.client import ServerUnreachableError
from hcard.terminal.parse import SettingError
from hcard.terminal.till import Outcome, PaymentResult

EXIT_OK, EXIT_DECLINED, EXIT_CANCELLED, EXIT_BROKEN = 0, 1, 2, 3


def _amount(text: str) -> int:
    try:
        return parse_amount(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            _("not an amount") + f": {text!r} (" + _("e.g.") + " 12,50)"
        ) from exc


def _card_secret(text: str) -> str:
    """Checked before enrolling: the one-time code is spent once the server answers. The
    message never shows the text (argparse would, for a plain ValueError)."""
    try:
        return cardsecret.parse(text).hex()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _originality_key(text: str) -> str:
    """An NTAG21x originality key, checked before the one-time code is spent."""
    return _checked_key(text, originality.public_key)


def _originality_424_key(text: str) -> str:
    """An NTAG 424 DNA originality key, checked before the one-time code is spent."""
    return _checked_key(text, ntag424.originality_public_key)


def _checked_key(text: str, load: Callable[[str], object]) -> str:
    try:
        load(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(_("not a valid public key")) from None
    return text.strip()


def _card_secret_file(name: str) -> str:
    """The secret from a file, so it is not on the command line (`ps` shows that to every
    user); `-` reads standard input, so an installer can pipe in a file only root may read
    (the till's user could not open it, nor re-open root's pipe as /dev/stdin)."""
    try:
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        text = raw.decode("ascii", "replace")
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            _("not readable") + f": {name} ({type(exc).__name__})"
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
            else ", " + _("balance") + f" {format_cents(result.balance_cents)}"
        )
        print(
            _("APPROVED")
            + f" {what} {format_cents(result.amount_cents)} — "
            + _("receipt")
            + f" {result.receipt_no} ({mode}){balance}"
        )
        return EXIT_OK
    if result.outcome == Outcome.CANCELLED:
        print(_("CANCELLED") + " — " + _("no card"))
        return EXIT_CANCELLED
    assert result.code is not None
    line = _("DECLINED") + f" ({mode}): {_both(result.code)} [{result.code.value}]"
    if result.available_cents:
        line += " — " + _("available") + f" {format_cents(result.available_cents)}"
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
        originality_424_key=args.originality_424_key,
        card_write_secret=args.card_secret or args.card_secret_file or "",
    )
    print(
        _("enrolled")
        + f": Terminal {config.terminal_id} — {config.merchant_name} ({config.server_url})"
    )
    return EXIT_OK


def cmd_pay(args: argparse.Namespace) -> int:
    till = _till(args)
    try:
        print(_("tap card …"), file=sys.stderr, flush=True)
        result = till.pay(
            args.amount_cents + args.tip_cents, args.tip_cents, card_timeout_s=args.timeout_s
        )
        return _print_result(result, _("payment"))
    finally:
        till.close()


def cmd_topup(args: argparse.Namespace) -> int:
    till = _till(args)
    try:
        print(_("tap card …"), file=sys.stderr, flush=True)
        result = till.topup(args.amount_cents, card_timeout_s=args.timeout_s)
        return _print_result(result, _("top-up"))
    finally:
        till.close()


def cmd_void(args: argparse.Namespace) -> int:
    """A payment is voided at once; a top-up (cash handed back) with its card on the reader,
    which is written down by the amount (`TerminalTill.void`)."""
    till = _till(args)
    try:
        if till.needs_card_to_void(args.receipt):
            print(_("void a top-up: tap the card …"), file=sys.stderr, flush=True)
            result = till.void(args.receipt)
            return _print_result(result, _("top-up void"))
        return _print_result(till.void(args.receipt), _("void"))
    finally:
        till.close()


def cmd_balance(args: argparse.Namespace) -> int:
    till = _till(args)
    try:
        print(_("tap card …"), file=sys.stderr, flush=True)
        info = till.balance(card_timeout_s=args.timeout_s)
    finally:
        till.close()
    if not info.card_number:
        if info.code is None:
            print(_("CANCELLED") + " — " + _("no card"))
            return EXIT_CANCELLED
        print(_("REFUSED") + f": {_both(info.code)} [{info.code.value}]")
        return EXIT_DECLINED
    balance = "?" if info.balance_cents is None else format_cents(info.balance_cents)
    print(_("card") + f" {cardnumber.pretty(info.card_number)}: {balance}")
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
            _("synced")
            + f": {report['uploaded']} "
            + _("records")
            + ", "
            + _("unsent")
            + f" {till.journal.unsent_count()}"
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
        print(_("not enrolled") + " (hcard-terminal enrol --server URL --code CODE)")
        return EXIT_BROKEN
    till = _till(args)
    try:
        status = till.status()
        last = (
            _("never")
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
        else ", " + _("receipts") + f" {totals.first_receipt_no}–{totals.last_receipt_no}"
    )
    print(
        _("day close")
        + f": {totals.count} "
        + _("payments")
        + f" {format_cents(totals.sum_cents)}, {totals.void_count} "
        + _("voids")
        + f" {format_cents(totals.void_sum_cents)}, offline {totals.offline_count}, "
        + _("unsynced")
        + f" {totals.unsynced_count}{receipts}"
    )
    # the cash taken for top-ups is the operator's: apart from the sales
    print(
        f"  {totals.topup_count} "
        + _("top-ups")
        + f" {format_cents(totals.topup_sum_cents)}, {totals.topup_void_count} "
        + _("voided top-ups")
        + f" {format_cents(totals.topup_void_sum_cents)}, "
        + _("cash for the operator")
        + f" {format_cents(totals.operator_cash_cents)}"
    )
    return EXIT_OK


def cmd_verify_journal(args: argparse.Namespace) -> int:
    """Everything the start leaves out, on the journal alone (no reader, no server): every
    signature and link of the live journal and of its archive (`Journal.verify_archive`),
    the chain across the chunks into the live journal. Slow on purpose: a year is ~70,000
    signatures (a few seconds on a Pi); it runs beside the app, which holds no lock on it."""
    from hcard.terminal import journal as jr

    state = cfg.TerminalState(args.state)
    if not state.enrolled():
        print(_("not enrolled") + " (hcard-terminal enrol --server URL --code CODE)")
        return EXIT_BROKEN
    config = state.load_config()
    journal = jr.Journal(state.journal_path, config.terminal_id, state.load_key())
    try:
        problem = journal.verify_archive() or journal.verify(full=True)
        archived, chunks = journal.archive_size()
        last_seq = journal.last_seq()
    finally:
        journal.close()
    if problem is not None:
        print(
            _("journal damaged")
            + f": seq {problem.seq}: {_both(problem.code)} [{problem.code.value}]"
            + f" ({problem.detail})"
        )
        return EXIT_BROKEN
    print(
        _("journal intact")
        + f": {last_seq} "
        + _("records")
        + f", {archived} "
        + _("archived")
        + f" ({chunks} "
        + _("chunks")
        + ")"
    )
    return EXIT_OK


def cmd_app(args: argparse.Namespace) -> int:
    """The touchscreen app: its own parser reads everything after `app`, so its options
    (`--fullscreen`, `--size`, `set-pin`) are defined once, in `hcard.terminal.app`."""
    if args.reader:
        print(
            _("ERROR")
            + ": "
            + _("--reader does not apply to app, the app uses the reader from enrolment"),
            file=sys.stderr,
        )
        return EXIT_BROKEN
    from hcard.terminal.app.__main__ import main as app_main

    return app_main(["--state-dir", str(args.state), *args.app_args], prog="hcard-terminal app")


def _timeout_option(parser: argparse.ArgumentParser) -> None:
    """`--timeout`: how long a command that needs a card waits for it."""
    parser.add_argument(
        "--timeout",
        dest="timeout_s",
        metavar="TIMEOUT",
        type=float,
        default=30.0,
        help=_("seconds to wait"),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hcard-terminal",
        description=_("the Hattingen Card till on the command line"),
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=cfg.default_state_dir(),
        help=_("terminal state folder")
        + " (default: $HCARD_TERMINAL_STATE or /var/lib/hcard-terminal)",
    )
    parser.add_argument(
        "--reader",
        help=_("card reader")
        + ": usb, usb:054c:06c3, tty:AMA0:pn532, udp:127.0.0.1:54321, pcsc:ACR1252 (default: "
        + _("from enrolment")
        + ")",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=_("log to stderr"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    enrol = commands.add_parser(
        "enrol",
        help=_("enrol this terminal"),
        description=_("make the key pair and register it with the server"),
    )
    enrol.add_argument("--server", required=True, help=_("server URL"))
    enrol.add_argument("--code", required=True, help=_("enrolment code") + " (ABCD-EFGH)")
    enrol.add_argument("--name", default="Kasse", help=_("terminal name"))
    enrol.add_argument(
        "--originality-key",
        type=_originality_key,
        help=_("trusted NXP originality key (hex)") + "; default: NXP",
    )
    enrol.add_argument(
        "--originality-424-key",
        type=_originality_424_key,
        help=_("trusted NXP originality key of NTAG 424 DNA cards (hex)") + "; default: NXP",
    )
    secret = enrol.add_mutually_exclusive_group()
    secret.add_argument(
        "--card-secret",
        type=_card_secret,
        help=_("card write secret (hex)"),
    )
    secret.add_argument(
        "--card-secret-file",
        type=_card_secret_file,
        help=_("... from a file, - is stdin"),
    )
    enrol.set_defaults(func=cmd_enrol)

    pay = commands.add_parser(
        "pay",
        help=_("take a payment"),
        description=_("charge an amount, tap the card"),
    )
    pay.add_argument(
        "amount_cents",
        metavar="amount",
        type=_amount,
        help=_("amount") + ", " + _("e.g.") + " 12,50",
    )
    pay.add_argument(
        "--tip",
        dest="tip_cents",
        metavar="TIP",
        type=_amount,
        default=0,
        help=_("tip on top") + " (12,50)",
    )
    _timeout_option(pay)
    pay.set_defaults(func=cmd_pay)

    topup = commands.add_parser(
        "topup",
        help=_("top up with cash"),
        description=_("load cash taken at the till onto the card, tap the card (online only)"),
    )
    topup.add_argument(
        "amount_cents",
        metavar="amount",
        type=_amount,
        help=_("amount") + ", " + _("e.g.") + " 20,00",
    )
    _timeout_option(topup)
    topup.set_defaults(func=cmd_topup)

    void = commands.add_parser(
        "void",
        help=_("void a payment or top-up"),
        description=_(
            "void today's payment or top-up by receipt number: a payment without the card, "
            "a top-up with its card (cash back)"
        ),
    )
    void.add_argument("receipt", type=int, help=_("receipt number as shown"))
    void.set_defaults(func=cmd_void)

    balance = commands.add_parser(
        "balance",
        help=_("show a card's balance"),
        description=_("tap a card, show its balance"),
    )
    _timeout_option(balance)
    balance.set_defaults(func=cmd_balance)

    sync = commands.add_parser(
        "sync",
        help=_("sync now"),
        description=_("upload the journal, pull the snapshot"),
    )
    sync.set_defaults(func=cmd_sync)

    status = commands.add_parser(
        "status",
        help=_("show status"),
        description=_("terminal, server, unsent records"),
    )
    status.add_argument("--json", action="store_true", help=_("as JSON"))
    status.set_defaults(func=cmd_status)

    day_close = commands.add_parser(
        "day-close",
        help=_("close the day"),
        description=_("journal the day's totals, a new business day"),
    )
    day_close.set_defaults(func=cmd_day_close)

    verify_journal = commands.add_parser(
        "verify-journal",
        help=_("check the whole journal and its archive"),
        description=_(
            "every signature and link, also of the archived records, which the start leaves out"
        ),
    )
    verify_journal.set_defaults(func=cmd_verify_journal)

    app = commands.add_parser(
        "app",
        help=_("start the touchscreen till") + " (app --help: --fullscreen, --size WxH, set-pin)",
        description=_("the Kivy app") + " (python -m hcard.terminal.app)",
        add_help=False,  # `app --help` is the app's own help
        prefix_chars="\0",  # every argument after `app` goes to the app's parser
    )
    app.add_argument("app_args", nargs=argparse.REMAINDER)
    app.set_defaults(func=cmd_app)
    return bilingual_help(parser)


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
        print(_("ERROR") + f": {_both(exc.code)} [{exc.code.value}]{detail}", file=sys.stderr)
        return EXIT_BROKEN
    except ServerUnreachableError as exc:
        print(_("ERROR") + f": {_both(Code.SERVER_UNREACHABLE)} ({exc})", file=sys.stderr)
        return EXIT_BROKEN
    except PermissionError as exc:
        print(_("ERROR") + ": " + _("permission denied") + f": {exc}", file=sys.stderr)
        return EXIT_BROKEN
    except SettingError as exc:  # a damaged config.json: the message names file and field
        print(_("ERROR") + f": {exc}", file=sys.stderr)
        return EXIT_BROKEN


if __name__ == "__main__":
    sys.exit(main())
