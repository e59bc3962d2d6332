"""The office's pages on a town's year, on SQLite: server time of the pages people open most.

    python bench/office_pages.py [--cards 20000] [--merchants 300] [--payments 3600000]

Makes a fresh server database (`hcard-server init`) and writes a year of traffic straight
into it with the sqlite3 module (executemany, one day at a time): cards issued and signed,
merchants (two thirds listed as acceptance points) with one or two tills each, payments
from 8 to 20 o'clock (fewer on Sundays, more in December), 1 % of them voided, and the
top-ups that pay for them (office cash, or cash at a till). Every transaction's postings
sum to zero and every balance equals its postings, so `ledger check` holds. No journal
rows: no page measured here reads them. Then `daily_totals` is filled the way the server
does it, by `services.dashboard.fill_daily_totals` (the nightly job), and timed.

Then the real server starts (`python -m hcard.server.cli serve`) and real HTTP requests on
loopback, logged in through the login form (a merchant through the same form, the JSON API
with its bearer token), measure the round trip of:

- `dashboard`: `/office/` (today's figures live, the rest from `daily_totals`);
- `card_page`: `/office/cards/<number>` (balance and the last 100 movements), random cards;
- `merchant_payments_json`: `GET /v1/merchants/<id>/payments`, random merchants;
- `portal_payments`: `/portal/payments` as a merchant, if the server has it (else null);
- `acceptance_page`: `/akzeptanzstellen`, if the server has it (else null);
- `floor`: `GET /v1/health` in the same run: the round trip of a request that does nothing.

Prints one JSON object on the last line: p50/p99 in ms per page and of the floor, the rows
written, the fill and `daily_totals` times. Target (issue 11): every p99 under 300 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import requests
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.web import PageClient

from hcard import cardnumber, keys, signed
from hcard.server.context import Context
from hcard.server.services import dashboard, users
from hcard.server.settings import Settings
from hcard.server.vocabulary import MerchantCategory, Role

LOCAL = ZoneInfo("Europe/Berlin")
ADMIN_PASSWORD = "bench-admin-password-1"
MERCHANT_USER, MERCHANT_PASSWORD = "benchshop", "bench-merchant-password-1"
IBANS = ("DE89370400440532013000", "DE75512108001245126199", "DE02120300000000202051")
#: how many requests per page (after a few to warm up)
SAMPLES = 200
WARM_UP = 5


def _day_weights(first: dt.date, today: dt.date, now: dt.datetime) -> list[float]:
    """How busy each day is: Sundays quiet, December busy, today only as far as it went."""
    weights = []
    for n in range((today - first).days + 1):
        day = first + dt.timedelta(days=n)
        weight = 0.3 if day.weekday() == 6 else 1.0
        if day.month == 12:
            weight *= 1.5
        if day == today:
            opened = dt.datetime.combine(today, dt.time(8), LOCAL)
            weight *= min(1.0, max(0.0, (now - opened).total_seconds() / (12 * 3600)))
        weights.append(weight)
    return weights


class Town:
    """The year's rows, made day by day and written with executemany."""

    def __init__(self, db: sqlite3.Connection, data: Path, args: argparse.Namespace) -> None:
        self.db = db
        self.rng = random.Random(11)
        self.args = args
        self.data = data
        self.rows = {"transactions": 0, "postings": 0}
        self.next_txn = (
            1 + (db.execute("SELECT coalesce(max(id), 0) FROM transactions").fetchone()[0])
        )
        self.cash_account = db.execute("SELECT id FROM accounts WHERE key = 'cash'").fetchone()[0]
        self.balance: dict[int, int] = {}

    def static(self, start_s: float) -> None:
        """Merchants, their accounts and tills; cards (issued, signed) and their accounts."""
        db, rng, args = self.db, self.rng, self.args
        issuer = keys.load_private(Settings.build(self.data).issuer_key_path)
        account = db.execute("SELECT max(id) FROM accounts").fetchone()[0] + 1
        categories = list(MerchantCategory)
        self.merchants: list[tuple[int, str]] = []  # (account id, name)
        self.tills: list[list[int]] = []
        terminal = 0
        merchant_rows, account_rows, terminal_rows = [], [], []
        for m in range(1, args.merchants + 1):
            name = f"Geschäft {m} am Markt"
            account_rows.append((account, f"merchant:{m}", "merchant"))
            merchant_rows.append(
                (m, name, IBANS[m % 3], 250 + (m % 4) * 50, account, start_s, f"Inhaber {m}",
                 "Große Weilstraße", str(1 + m % 60), "45525", "Hattingen", m % 3 != 0,
                 categories[m % len(categories)], "Mo–Fr 9–18 Uhr, Sa 9–14 Uhr")
            )  # fmt: skip
            self.merchants.append((account, name))
            tills = []
            for _ in range(2 if m <= args.merchants // 2 else 1):
                terminal += 1
                seen = time.time() - (3 * 86_400 if terminal % 97 == 0 else rng.random() * 600)
                waiting = 4 if terminal % 61 == 0 else 0
                terminal_rows.append(
                    (terminal, m, f"Kasse {terminal}", f"{terminal:064x}", start_s, seen, waiting)
                )
                tills.append(terminal)
            self.tills.append(tills)
            account += 1
        self.card_accounts = []
        card_rows = []
        for serial in range(1, args.cards + 1):
            number = cardnumber.from_serial(serial)
            uid = bytes.fromhex(f"04{serial:012x}")
            signature = signed.sign_card(issuer, number, uid).hex()
            account_rows.append((account, f"card:{number}", "card"))
            card_rows.append((serial, serial, number, uid.hex(), signature, account, start_s))
            self.card_accounts.append(account)
            account += 1
        self.card_numbers = [row[2] for row in card_rows]
        db.executemany("INSERT INTO accounts (id, key, kind) VALUES (?, ?, ?)", account_rows)
        db.executemany(
            "INSERT INTO merchants (id, name, iban, fee_bp, account_id, created_s, holder_name,"
            " street, building_number, postcode, town, listed, category, opening_hours)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            merchant_rows,
        )
        db.executemany(
            "INSERT INTO terminals (id, merchant_id, name, public_key, status, created_s,"
            " last_seen_s, records_waiting) VALUES (?, ?, ?, ?, 'active', ?, ?, ?)",
            terminal_rows,
        )
        db.executemany(
            "INSERT INTO cards (id, serial, number, uid, issuer_sig, account_id, created_s)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            card_rows,
        )
        db.execute("UPDATE counters SET value = ? WHERE name = 'card_serial'", (args.cards,))
        self.seqs = [0] * (terminal + 1)
        self.rows["cards"], self.rows["merchants"] = len(card_rows), len(merchant_rows)
        self.rows["terminals"] = terminal

    def day(self, day: dt.date, payments: int, until_s: float) -> None:
        """One day's payments (with the top-ups that pay for them and some voids)."""
        rng, balance, seqs = self.rng, self.balance, self.seqs
        opens = dt.datetime.combine(day, dt.time(8), LOCAL).timestamp()
        span = min(12 * 3600.0, until_s - opens)
        if payments <= 0 or span <= 0:
            return
        times = sorted(opens + rng.random() * span for _ in range(payments))
        txns: list[tuple[object, ...]] = []
        posts: list[tuple[int, int, int]] = []
        txn = self.next_txn
        cash = self.cash_account
        cards_n, merchants_n = len(self.card_accounts), len(self.merchants)
        for when in times:
            card = self.card_accounts[rng.randrange(cards_n)]
            m = rng.randrange(merchants_n)
            merchant_account, name = self.merchants[m]
            till = rng.choice(self.tills[m])
            amount = rng.randrange(150, 4_000)
            have = balance.get(card, 0)
            if have < amount:
                topup = max(amount, rng.choice((2_000, 5_000, 10_000, 20_000)))
                if rng.random() < 0.9:
                    txns.append((txn, "topup", when, None, None, 1, "Aufladung (bar)"))
                    posts += ((txn, cash, -topup), (txn, card, topup))
                    balance[cash] = balance.get(cash, 0) - topup
                else:
                    seqs[till] += 1
                    txns.append(
                        (txn, "till_topup", when, till, seqs[till], None, f"Aufladung {name}")
                    )
                    posts += ((txn, merchant_account, -topup), (txn, card, topup))
                    balance[merchant_account] = balance.get(merchant_account, 0) - topup
                have += topup
                txn += 1
            seqs[till] += 1
            txns.append((txn, "payment", when, till, seqs[till], None, name))
            posts += ((txn, card, -amount), (txn, merchant_account, amount))
            txn += 1
            have -= amount
            paid = amount
            if rng.random() < 0.01:  # voided at the till right away
                seqs[till] += 1
                txns.append((txn, "void", when, till, seqs[till], None, f"Storno {name}"))
                posts += ((txn, merchant_account, -amount), (txn, card, amount))
                txn += 1
                have += amount
                paid = 0
            balance[card] = have
            balance[merchant_account] = balance.get(merchant_account, 0) + paid
        self.db.executemany(
            "INSERT INTO transactions (id, kind, created_s, terminal_id, seq, user_id, label)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            txns,
        )
        self.db.executemany(
            "INSERT INTO postings (txn_id, account_id, amount_cents) VALUES (?, ?, ?)", posts
        )
        self.next_txn = txn
        self.rows["transactions"] += len(txns)
        self.rows["postings"] += len(posts)

    def balances(self) -> None:
        self.db.executemany(
            "UPDATE accounts SET balance_cents = ? WHERE id = ?",
            [(cents, account) for account, cents in self.balance.items()],
        )


def populate(data: Path, args: argparse.Namespace) -> dict[str, int]:
    """The town's year, written straight into the database; the rows written."""
    path = sa.make_url(Settings.build(data).database_url).database
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    db.execute("BEGIN")
    now = dt.datetime.now(LOCAL)
    today = now.date()
    first = today - dt.timedelta(days=365)
    town = Town(db, data, args)
    town.static(dt.datetime.combine(first, dt.time(7), LOCAL).timestamp())
    weights = _day_weights(first, today, now)
    total = sum(weights)
    for n, weight in enumerate(weights):
        day = first + dt.timedelta(days=n)
        town.day(day, round(args.payments * weight / total), now.timestamp() - 60)
    town.balances()
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode=WAL")  # no ANALYZE: the server's database has none
    db.close()
    return town.rows


def start_server(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = data / "port"
    log = (data / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "hcard.server.cli", "serve", "--data-dir", str(data), "--port",
         "0", "--ready-file", str(ready)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((data / "server.log").read_text())
        if ready.exists() and ready.read_text().strip():
            url = f"http://127.0.0.1:{ready.read_text().strip()}"
            try:
                requests.get(f"{url}/v1/health", timeout=5).raise_for_status()
                return process, url
            except requests.RequestException:
                pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


def measure(get: Callable[[int], requests.Response], samples: int = SAMPLES) -> dict[str, float]:
    """p50/p99 of the round trip in ms (`get(i)` makes the i-th request; each must be 200)."""
    for i in range(WARM_UP):
        get(i)
    times = []
    for i in range(samples):
        started = time.perf_counter()
        answer = get(i)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"{answer.url}: {answer.status_code} {answer.text[:300]}")
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
    }


def optional(browser: PageClient, path: str) -> dict[str, float] | None:
    """The page's figures if the running server has it (another part of issue 11 may not be
    done yet: null); a page that answers but fails is reported with its status."""
    status = browser.get(path, allow_redirects=False).status_code
    if status == 404:
        return None
    if status != 200:
        return {"status": status}
    return measure(lambda _i: browser.get(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards", type=int, default=20_000)
    parser.add_argument("--merchants", type=int, default=300)
    parser.add_argument("--payments", type=int, default=3_600_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hcard-bench-") as tmp:
        data = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "hcard.server.cli", "init", "--data-dir", str(data)],
            check=True,
            capture_output=True,
            env={**os.environ, "HCARD_ADMIN_PASSWORD": ADMIN_PASSWORD},
        )
        started = time.perf_counter()
        rows = populate(data, args)
        fill_s = time.perf_counter() - started
        ctx = Context.open(Settings.build(data))
        started = time.perf_counter()
        days = dashboard.fill_daily_totals(ctx)
        daily_totals_s = time.perf_counter() - started
        users.create_user(ctx, None, MERCHANT_USER, MERCHANT_PASSWORD, Role.MERCHANT, 1)
        ctx.engine.dispose()

        process, url = start_server(data)
        try:
            result = run_requests(url, args)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(
        json.dumps(
            {
                **result,
                "rows": rows,
                "fill_s": round(fill_s, 1),
                "daily_totals_days": days,
                "daily_totals_s": round(daily_totals_s, 1),
                "cores": os.cpu_count(),
            }
        )
    )


def run_requests(url: str, args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(5)
    office = PageClient(url, language="de")
    office.login("admin", ADMIN_PASSWORD)
    api = requests.Session()
    token = api.post(
        f"{url}/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=30
    ).json()["token"]
    api.headers["Authorization"] = f"Bearer {token}"
    health = requests.Session()
    numbers = [cardnumber.from_serial(rng.randrange(1, args.cards + 1)) for _ in range(SAMPLES)]
    merchants = [rng.randrange(1, args.merchants + 1) for _ in range(SAMPLES)]
    result: dict[str, object] = {
        "floor": measure(lambda _i: health.get(f"{url}/v1/health", timeout=30)),
        "dashboard": measure(lambda _i: office.get("/office/"), SAMPLES // 2),
        "card_page": measure(lambda i: office.get(f"/office/cards/{numbers[i % SAMPLES]}")),
        "merchant_payments_json": measure(
            lambda i: api.get(f"{url}/v1/merchants/{merchants[i % SAMPLES]}/payments", timeout=30)
        ),
    }
    dashboard_page = office.get("/office/").text
    figure = re.search(r'id="h-bafin".*?<p class="figure">([^<]*)</p>', dashboard_page, re.S)
    result["dashboard_12_months"] = figure.group(1) if figure else None
    shop = PageClient(url, language="de")
    shop.login(MERCHANT_USER, MERCHANT_PASSWORD)
    result["portal_payments"] = optional(shop, "/portal/payments")
    result["acceptance_page"] = optional(PageClient(url, language="de"), "/akzeptanzstellen")
    return result


if __name__ == "__main__":
    main()
