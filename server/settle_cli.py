"""`hcard-server settle …`: the monthly close from the server's shell.

    hcard-server settle create --month 2026-11 --user buero
    hcard-server settle list | show RUN
    hcard-server settle file RUN --out bank.xml --user buero
    hcard-server settle statements RUN --out DIR [--format pdf|html|csv]
    hcard-server settle cancel RUN --user buero
    hcard-server settle import camt053.xml --user buero
    hcard-server settle float-check
    hcard-server settle export datev|csv --month 2026-11 --out FILE
    hcard-server settle payments-12-months

The same services as the API (`services/settlement.py`, `services/bank.py`); every step that
changes something names the staff user (`--user`, an admin or marketing account) it is done
for, as the API records the logged-in one. The float check (no user: the server checks itself)
exits 1 when it finds a difference, so a daily timer can alert on it. Every file is written
aside, fsynced and renamed (`hcard.files.write_atomic`): a bank file or statement found
under its name after a power cut is complete (tests/powercut).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import sqlalchemy as sa

from hcard.errors import HCardError, message
from hcard.files import make_folder, write_atomic
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db.tables import users
from hcard.server.services import bank, dashboard, settlement
from hcard.server.services.users import Staff
from hcard.server.settlement import sepa
from hcard.server.vocabulary import Role


def add_parser(
    sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """The `settle` command and its subcommands, each with German / English help."""
    p_settle = sub.add_parser(
        "settle", help="Abrechnung mit den Akzeptanzstellen / settle with the merchants"
    )
    settle = p_settle.add_subparsers(dest="settle_command", required=True)

    def command(name: str, text: str, *, user: bool = False) -> argparse.ArgumentParser:
        p = settle.add_parser(name, help=text, description=text)
        common(p)
        if user:
            p.add_argument(
                "--user",
                required=True,
                help="Mitarbeiterkonto, für das gebucht wird / staff account the step is done for",
            )
        return p

    def period(p: argparse.ArgumentParser) -> None:
        p.add_argument("--month", help="Monat JJJJ-MM / month YYYY-MM")
        p.add_argument("--from", dest="first_day", help="erster Tag JJJJ-MM-TT / first day")
        p.add_argument("--to", dest="last_day", help="letzter Tag JJJJ-MM-TT / last day")

    p = command("create", "Zeitraum abrechnen: buchen, Bankdatei / settle a period", user=True)
    period(p)
    p.add_argument(
        "--schema",
        choices=[s.value for s in sepa.Schema],
        default=sepa.Schema.PAIN_001_001_09.value,
        help="SEPA-Format (.03 für ältere Banksoftware) / SEPA format (.03 for older software)",
    )
    command("list", "Abrechnungen anzeigen / list the runs")
    p = command("show", "eine Abrechnung anzeigen / show one run")
    p.add_argument("run", type=int, help="Nummer der Abrechnung / run number")
    p = command("file", "Bankdatei speichern / save the bank file", user=True)
    p.add_argument("run", type=int, help="Nummer der Abrechnung / run number")
    p.add_argument("--number", type=int, default=1, help="Datei-Nr. (ab 1) / file number")
    p.add_argument("--out", type=Path, required=True, help="Zieldatei / file to write")
    p = command("statements", "Abrechnungen je Händler speichern / save the statements", user=True)
    p.add_argument("run", type=int, help="Nummer der Abrechnung / run number")
    p.add_argument("--out", type=Path, required=True, help="Zielordner / folder")
    p.add_argument(
        "--format", choices=("pdf", "html", "csv"), default="pdf", help="Format / format"
    )
    p = command("cancel", "Abrechnung stornieren (vor dem Download) / cancel a run", user=True)
    p.add_argument("run", type=int, help="Nummer der Abrechnung / run number")
    p = command("import", "Kontoauszug camt.053/054 einlesen / import a statement", user=True)
    p.add_argument("file", type=Path, help="camt-Datei / camt file")
    p = command(
        "assign",
        "Überweisung ohne Kartennummer einer Karte zuordnen / assign a transfer to a card",
        user=True,
    )
    p.add_argument("key", help="Schlüssel der Kontoauszugszeile / the statement line's key")
    p.add_argument("card", help="Kartennummer / card number")
    p = command(
        "fee-withdrawal",
        "Abgang als Gebührenentnahme/Bankgebühr buchen / book an outflow as fees or charges",
        user=True,
    )
    p.add_argument("key", help="Schlüssel der Kontoauszugszeile / the statement line's key")
    command("open-lines", "offene Kontoauszugszeilen / statement lines to look at", user=True)
    command("float-check", "Geldbestand prüfen (Bank = Schuld) / float check (bank = owed)")
    p = command("export", "Export für die Steuerberatung / export for the tax adviser", user=True)
    p.add_argument("kind", choices=("datev", "csv"), help="DATEV-Buchungsstapel oder CSV")
    period(p)
    p.add_argument("--out", type=Path, required=True, help="Zieldatei / file to write")
    command(
        "payments-12-months",
        "Zahlungen der letzten 12 Monate (BaFin-Grenze) / payments of 12 months (BaFin line)",
        user=True,
    )


def _staff(ctx: Context, username: str) -> Staff:
    with db_engine.read(ctx.engine) as conn:
        row = conn.execute(
            sa.select(users.c.id, users.c.username, users.c.role, users.c.merchant_id).where(
                users.c.username == username, users.c.active
            )
        ).first()
    if row is None:
        raise SystemExit(f"Kein solches Konto / no such account: {username}")
    return Staff(user_id=row.id, username=row.username, role=row.role, merchant_id=row.merchant_id)


def _period(args: argparse.Namespace) -> settlement.Period:
    if args.month and not (args.first_day or args.last_day):
        return settlement.Period.month(args.month)
    try:
        return settlement.Period(
            dt.date.fromisoformat(args.first_day), dt.date.fromisoformat(args.last_day)
        )
    except (TypeError, ValueError):
        raise SystemExit(
            "Zeitraum: --month JJJJ-MM oder --from und --to / period: --month or --from and --to"
        ) from None


def _print(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def run(ctx: Context, args: argparse.Namespace) -> int:
    """Run one `settle` subcommand; 1 on a refusal (printed German / English)."""
    try:
        return _run(ctx, args)
    except HCardError as error:
        print(
            f"Abgelehnt / refused: {message(error.code, 'de')} / {message(error.code, 'en')} "
            f"({error.code.value}) {json.dumps(error.details, default=str)}",
            file=sys.stderr,
        )
        return 1


def _run(ctx: Context, args: argparse.Namespace) -> int:
    name = args.settle_command
    if name == "float-check":
        # the nightly timer: also sums the days just closed for the office's overview
        # (services/dashboard.py), so its first view of the day reads only stored days
        days_summed = dashboard.fill_daily_totals(ctx)
        report = bank.float_check(ctx, None)
        _print({**report, "days_summed": days_summed})
        return 0 if report["ok"] else 1
    if name in ("list", "show"):
        office = Staff(user_id=0, username="system", role=Role.ADMIN, merchant_id=None)
        _print(
            settlement.list_runs(ctx, office)
            if name == "list"
            else settlement.get_run(ctx, office, args.run)
        )
        return 0
    actor = _staff(ctx, args.user)
    if name == "create":
        run = settlement.create_run(ctx, actor, _period(args), schema=sepa.Schema(args.schema))
        _print({k: v for k, v in run.items() if k != "lines"})
        settlement.make_statements(
            ctx,
            int(str(run["run_id"])),
            progress=lambda done, total: print(
                f"Abrechnungen / statements {done}/{total}", flush=True
            ),
        )
        return 0
    if name == "file":
        write_atomic(args.out, settlement.sepa_file(ctx, actor, args.run, args.number))
        print(args.out)
        return 0
    if name == "statements":
        make_folder(args.out)
        lines = cast(list[dict[str, object]], settlement.get_run(ctx, actor, args.run)["lines"])
        for line in lines:
            merchant_id = int(str(line["merchant_id"]))
            target = args.out / f"{line['invoice_number']}-{merchant_id}.{args.format}"
            if args.format == "pdf":
                data = settlement.statement_pdf(ctx, actor, args.run, merchant_id)
            elif args.format == "html":
                data = settlement.statement_html(ctx, actor, args.run, merchant_id).encode()
            else:
                data = settlement.statement_csv(ctx, actor, args.run, merchant_id).encode()
            write_atomic(target, data)
            print(target)
        return 0
    if name == "cancel":
        _print(
            {k: v for k, v in settlement.cancel_run(ctx, actor, args.run).items() if k != "lines"}
        )
        return 0
    if name == "import":
        _print(bank.import_statement(ctx, actor, args.file.read_bytes()))
        return 0
    if name == "assign":
        _print(bank.assign_to_card(ctx, actor, args.key, args.card))
        return 0
    if name == "fee-withdrawal":
        _print(bank.book_fee_withdrawal(ctx, actor, args.key))
        return 0
    if name == "open-lines":
        _print(bank.unmatched_lines(ctx, actor))
        return 0
    if name == "export":
        period = _period(args)
        if args.kind == "datev":
            write_atomic(
                args.out,
                settlement.datev_export(ctx, actor, period).encode("cp1252", errors="replace"),
            )
        else:
            write_atomic(args.out, settlement.transactions_export(ctx, actor, period).encode())
        print(args.out)
        return 0
    _print(settlement.payments_last_12_months(ctx, actor))
    return 0
