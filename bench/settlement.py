"""Settlement of a town's month on SQLite: run, bank file, statements, bank statement, float check.

    python bench/settlement.py [--merchants 300] [--payments 300000]

Makes a fresh server database (`hcard-server init`), writes a month of traffic straight
into the ledger (payments, 2 % voids, till top-ups; balances made equal to the postings, so
`ledger check` holds), then measures through the real services, as the API and the
command line run them:

- `settle_s`: create the run (assign every transaction, compute, book, build and validate
  the SEPA file), against `floor_aggregate_s`: the bare SQL sum of the same postings per
  merchant, the least any settlement must do;
- `statements_s`: every merchant's statement as PDF on every core (stored), and
  `statement_pdf_p50_ms` for one statement alone, against `floor_pdf_ms`, WeasyPrint
  rendering a one-line page;
- `camt_import_s`: the bank's camt.053 for the run (every payout executed) imported;
- `float_check_s`; peak `rss_mb` of this process and its workers.

Prints one JSON object on the last line. Targets (issue 10): settle < 10 s, all statements
< 3 min, import and float check < 5 s each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.camt import BankLine, statement

from hcard.server.context import Context
from hcard.server.services import bank, settlement
from hcard.server.services.users import Staff
from hcard.server.settings import Settings
from hcard.server.settlement import statement as statements

LOCAL = ZoneInfo("Europe/Berlin")
IBANS = ("DE89370400440532013000", "DE75512108001245126199", "DE02120300000000202051")


def _previous_month() -> tuple[dt.date, dt.date]:
    last = dt.date.today().replace(day=1) - dt.timedelta(days=1)
    return last.replace(day=1), last


def _populate(engine: sa.Engine, merchants: int, payments: int, cards: int) -> None:
    """A month of traffic, written in bulk; every balance equals its postings afterwards."""
    first, last = _previous_month()
    start = dt.datetime.combine(first, dt.time(8), LOCAL).timestamp()
    span = (last - first).days * 86_400 + 12 * 3600
    rng = random.Random(7)
    with engine.begin() as conn:
        run = conn.exec_driver_sql
        next_account = int(run("SELECT max(id) FROM accounts").scalar_one()) + 1
        accounts = []
        merchant_rows = []
        for i in range(merchants):
            accounts.append(
                {"id": next_account + i, "key": f"merchant:{i + 1}", "kind": "merchant"}
            )
            merchant_rows.append(
                {
                    "id": i + 1,
                    "name": f"Geschäft {i + 1} Müller & Söhne",
                    "iban": IBANS[i % len(IBANS)],
                    "bic": "",
                    "fee_bp": 250 + (i % 4) * 50,
                    "account_id": next_account + i,
                    "created_s": start,
                    "holder_name": f"Mueller {i + 1} GmbH",
                    "street": "Große Weilstraße",
                    "building_number": str(1 + i % 60),
                    "postcode": "45525",
                    "town": "Hattingen",
                }
            )
        card_base = next_account + merchants
        accounts += [
            {"id": card_base + c, "key": f"card:{c}", "kind": "card"} for c in range(cards)
        ]
        conn.execute(
            sa.text("INSERT INTO accounts (id, key, kind) VALUES (:id, :key, :kind)"), accounts
        )
        conn.execute(
            sa.text(
                "INSERT INTO merchants (id, name, iban, bic, fee_bp, account_id, created_s,"
                " holder_name, street, building_number, postcode, town) VALUES (:id, :name,"
                " :iban, :bic, :fee_bp, :account_id, :created_s, :holder_name, :street,"
                " :building_number, :postcode, :town)"
            ),
            merchant_rows,
        )
        conn.execute(
            sa.text(
                "INSERT INTO terminals (id, merchant_id, name, status, public_key, created_s)"
                " VALUES (:id, :m, :name, 'active', :key, :s)"
            ),
            [
                {
                    "id": i + 1,
                    "m": i + 1,
                    "name": f"Kasse {i + 1}",
                    "key": f"{i + 1:064x}",
                    "s": start,
                }
                for i in range(merchants)
            ],
        )
        bank_id = int(run("SELECT id FROM accounts WHERE key = 'bank'").scalar_one())
        txns, postings = [], []
        seqs = [0] * merchants
        for n in range(payments):
            m = rng.randrange(merchants)
            seqs[m] += 1
            card = card_base + rng.randrange(cards)
            amount = rng.randrange(100, 6_000)
            kind = "payment"
            roll = rng.random()
            if roll < 0.02:
                kind, amount = "void", -amount
            elif roll < 0.03:
                kind, amount = "till_topup", -rng.randrange(1_000, 5_000)
            txns.append(
                {"id": n + 1, "kind": kind, "created_s": start + rng.random() * span,
                 "terminal_id": m + 1, "seq": seqs[m], "label": ""}
            )  # fmt: skip
            postings.append({"t": n + 1, "a": merchant_rows[m]["account_id"], "c": amount})
            postings.append({"t": n + 1, "a": card, "c": -amount})
        # the cards were topped up by bank transfer before
        base = payments + 1
        for c in range(cards):
            txns.append(
                {
                    "id": base + c,
                    "kind": "topup",
                    "created_s": start - 86_400,
                    "terminal_id": None,
                    "seq": None,
                    "label": "Aufladung (Überweisung)",
                }
            )
            postings.append({"t": base + c, "a": card_base + c, "c": 100_000})
            postings.append({"t": base + c, "a": bank_id, "c": -100_000})
        conn.execute(
            sa.text(
                "INSERT INTO transactions (id, kind, created_s, terminal_id, seq, label) VALUES"
                " (:id, :kind, :created_s, :terminal_id, :seq, :label)"
            ),
            txns,
        )
        conn.execute(
            sa.text("INSERT INTO postings (txn_id, account_id, amount_cents) VALUES (:t, :a, :c)"),
            postings,
        )
        run(
            "UPDATE accounts SET balance_cents = (SELECT coalesce(sum(amount_cents), 0)"
            " FROM postings WHERE postings.account_id = accounts.id)"
        )


def _rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--merchants", type=int, default=300)
    parser.add_argument("--payments", type=int, default=300_000)
    parser.add_argument("--cards", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hcard-bench-") as tmp:
        data = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "hcard.server.cli", "init", "--data-dir", str(data)],
            check=True,
            capture_output=True,
            env={**os.environ, "HCARD_ADMIN_PASSWORD": "bench-password-1"},
        )
        ctx = Context.open(Settings.build(data))
        started = time.perf_counter()
        _populate(ctx.engine, args.merchants, args.payments, args.cards)
        populate_s = time.perf_counter() - started
        admin = Staff(user_id=1, username="admin", role="admin", merchant_id=None)
        first, last = _previous_month()
        period = settlement.Period(first, last)

        started = time.perf_counter()
        with ctx.engine.connect() as conn:
            conn.exec_driver_sql(
                "SELECT m.id, t.kind, sum(p.amount_cents) FROM postings p JOIN transactions t"
                " ON t.id = p.txn_id JOIN merchants m ON m.account_id = p.account_id"
                f" WHERE t.created_s < {period.end_s} GROUP BY m.id, t.kind"
            ).all()
        floor_aggregate_s = time.perf_counter() - started

        started = time.perf_counter()
        run = settlement.create_run(ctx, admin, period)
        settle_s = time.perf_counter() - started
        run_id = int(str(run["run_id"]))

        started = time.perf_counter()
        made = settlement.make_statements(ctx, run_id)
        statements_s = time.perf_counter() - started

        weasy_floor = statements.render_pdf  # warm the import in this process
        with ctx.engine.connect() as conn:
            line = conn.exec_driver_sql(
                f"SELECT merchant_id FROM settlement_lines WHERE run_id = {run_id} LIMIT 1"
            ).scalar_one()
        import weasyprint

        weasyprint.HTML(string="<p>x</p>").write_pdf()
        floors, singles = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            weasyprint.HTML(string="<p>Hattingen Card</p>").write_pdf(pdf_variant="pdf/a-3b")
            floors.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            with ctx.engine.connect() as conn:
                row = conn.execute(
                    sa.text(
                        "SELECT * FROM settlement_lines WHERE run_id = :r AND merchant_id = :m"
                    ),
                    {"r": run_id, "m": line},
                ).one()
                data_ = settlement.statement_data(conn, ctx, row)
            weasy_floor(data_)
            singles.append((time.perf_counter() - t0) * 1000)

        settlement.sepa_file(ctx, admin, run_id, 1)  # downloaded: the payouts are sent
        lines = settlement.get_run(ctx, admin, run_id)["lines"]
        executed = [
            BankLine(int(x["payout_cents"]), False, str(x["end_to_end_id"]))  # type: ignore[index]
            for x in lines  # type: ignore[union-attr]
            if x["end_to_end_id"]  # type: ignore[index]
        ]
        with ctx.engine.connect() as conn:
            bank_now = -int(
                conn.exec_driver_sql(
                    "SELECT balance_cents FROM accounts WHERE key = 'bank'"
                ).scalar_one()
            )
        closing = bank_now - sum(x.amount_cents for x in executed)
        camt = statement(ctx.settings.settlement.operator_iban, executed, closing_cents=closing)
        started = time.perf_counter()
        imported = bank.import_statement(ctx, admin, camt)
        camt_import_s = time.perf_counter() - started

        started = time.perf_counter()
        check = bank.float_check(ctx, admin)
        float_check_s = time.perf_counter() - started

    result = {
        "merchants": args.merchants,
        "payments": args.payments,
        "populate_s": round(populate_s, 2),
        "settle_s": round(settle_s, 2),
        "floor_aggregate_s": round(floor_aggregate_s, 2),
        "statements": made,
        "statements_s": round(statements_s, 1),
        "statement_pdf_p50_ms": round(statistics.median(singles), 1),
        "floor_pdf_ms": round(statistics.median(floors), 1),
        "camt_lines": imported["lines"],
        "camt_import_s": round(camt_import_s, 2),
        "float_check_s": round(float_check_s, 2),
        "float_check_ok": check["ok"],
        "booked": imported["booked"],
        "cores": os.cpu_count(),
        "rss_mb": _rss_mb(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
