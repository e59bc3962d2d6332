"""A town's year written straight into a fresh server database, for the benches that need one.

One generator for every bench (`office_pages.py`, `town_year.py`): cards issued and signed,
merchants (two thirds listed as acceptance points) with one or two tills each, payments from
8 to 20 o'clock (fewer on Sundays, more in December), 1 % of them voided, and the top-ups
that pay for them (office cash, or cash at a till). Every transaction's postings sum to
zero and every balance equals its postings, so `ledger check` holds. With `journal=True`
every till record of the year is in the server's journal too, as sync stores it (the
record's canonical bytes, hash-chained per till, its booking, the card counters it wrote;
cards and tills end with the counters and chain heads those records leave), so that the
tables a sync reads and writes are a year's size. The tills' keys are placeholders and so
are the journal's signatures (nothing here verifies them; signing 3.6 million records
would take minutes): a bench that needs signed records enrols its own tills through the API.

Written in bulk, one day at a time, without the server's per-row work: on SQLite with
sqlite3's executemany (journal off for the fill, WAL afterwards, as the server runs it),
on PostgreSQL with COPY through psycopg (then the id sequences are moved past the rows).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hcard import cardnumber, keys, signed
from hcard.server.vocabulary import MerchantCategory

LOCAL = ZoneInfo("Europe/Berlin")
IBANS = ("DE89370400440532013000", "DE75512108001245126199", "DE02120300000000202051")


@dataclass(frozen=True)
class TownSize:
    """How big the town is (issue 13: 20,000 cards, 300 merchants, 400 tills, 3.6 million
    payments a year)."""

    cards: int = 20_000
    merchants: int = 300
    tills: int = 400
    payments: int = 3_600_000

    def scaled(self, factor: float) -> TownSize:
        """A smaller town for a quick run: every count times `factor` (at least one)."""
        merchants = max(1, round(self.merchants * factor))
        return TownSize(
            cards=max(1, round(self.cards * factor)),
            merchants=merchants,
            tills=max(merchants, round(self.tills * factor)),
            payments=max(1, round(self.payments * factor)),
        )


class Sink(Protocol):
    """Where the rows go: one database, inside one open transaction."""

    def scalar(self, sql: str) -> Any: ...

    def execute(self, sql: str) -> None: ...

    def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """`sql` with `{0}` for each parameter, once per row."""

    def insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None: ...

    def set_balances(self, rows: list[tuple[int, int]]) -> None: ...


class _DbApiSink:
    """What both drivers do alike: one connection, `execute` on it directly."""

    def __init__(self, db: Any) -> None:  # a sqlite3 or psycopg connection
        self.db = db

    def scalar(self, sql: str) -> Any:
        return self.db.execute(sql).fetchone()[0]

    def execute(self, sql: str) -> None:
        self.db.execute(sql)


class SqliteSink(_DbApiSink):
    def insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(columns))
        self.db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def set_balances(self, rows: list[tuple[int, int]]) -> None:
        self.execute_many("UPDATE accounts SET balance_cents = {0} WHERE id = {0}", rows)

    def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.db.executemany(sql.format("?"), rows)


class PostgresSink(_DbApiSink):
    def insert(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        with self.db.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.db.cursor().executemany(sql.format("%s"), rows)

    def set_balances(self, rows: list[tuple[int, int]]) -> None:
        self.db.execute("CREATE TEMP TABLE year_balances (cents bigint, id bigint) ON COMMIT DROP")
        self.insert("year_balances", ("cents", "id"), rows)
        self.db.execute(
            "UPDATE accounts SET balance_cents = b.cents"
            " FROM year_balances b WHERE accounts.id = b.id"
        )


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
    """The year's rows, made day by day and written in bulk."""

    def __init__(
        self, sink: Sink, issuer_key_path: Path, size: TownSize, journal: bool = False
    ) -> None:
        self.sink = sink
        self.journal = journal
        self.rng = random.Random(11)
        self.size = size
        self.issuer_key_path = issuer_key_path
        self.rows = {"transactions": 0, "postings": 0}
        self.next_txn = 1 + sink.scalar("SELECT coalesce(max(id), 0) FROM transactions")
        self.cash_account = sink.scalar("SELECT id FROM accounts WHERE key = 'cash'")
        self.balance: dict[int, int] = {}

    def static(self, start_s: float) -> None:
        """Merchants, their accounts and tills; cards (issued, signed) and their accounts."""
        rng, size = self.rng, self.size
        issuer = keys.load_private(self.issuer_key_path)
        account = self.sink.scalar("SELECT max(id) FROM accounts") + 1
        categories = list(MerchantCategory)
        self.merchants: list[tuple[int, str]] = []  # (account id, name)
        self.tills: list[list[int]] = []
        terminal = 0
        two_tills = size.tills - size.merchants  # the first ones have two tills
        merchant_rows, account_rows, terminal_rows = [], [], []
        for m in range(1, size.merchants + 1):
            name = f"Geschäft {m} am Markt"
            account_rows.append((account, f"merchant:{m}", "merchant"))
            merchant_rows.append(
                (m, name, IBANS[m % 3], 250 + (m % 4) * 50, account, start_s, f"Inhaber {m}",
                 "Große Weilstraße", str(1 + m % 60), "45525", "Hattingen", m % 3 != 0,
                 categories[m % len(categories)], "Mo–Fr 9–18 Uhr, Sa 9–14 Uhr")
            )  # fmt: skip
            self.merchants.append((account, name))
            tills = []
            for _ in range(2 if m <= two_tills else 1):
                terminal += 1
                seen = time.time() - (3 * 86_400 if terminal % 97 == 0 else rng.random() * 600)
                waiting = 4 if terminal % 61 == 0 else 0
                terminal_rows.append(
                    (terminal, m, f"Kasse {terminal}", f"{terminal:064x}", "active", start_s,
                     seen, waiting)
                )  # fmt: skip
                tills.append(terminal)
            self.tills.append(tills)
            account += 1
        self.card_accounts = []
        card_rows = []
        for serial in range(1, size.cards + 1):
            number = cardnumber.from_serial(serial)
            uid = bytes.fromhex(f"04{serial:012x}")
            signature = signed.sign_card(issuer, number, uid).hex()
            account_rows.append((account, f"card:{number}", "card"))
            card_rows.append((serial, serial, number, uid.hex(), signature, account, start_s))
            self.card_accounts.append(account)
            account += 1
        self.card_numbers = [row[2] for row in card_rows]
        sink = self.sink
        sink.insert("accounts", ("id", "key", "kind"), account_rows)
        sink.insert(
            "merchants",
            ("id", "name", "iban", "fee_bp", "account_id", "created_s", "holder_name", "street",
             "building_number", "postcode", "town", "listed", "category", "opening_hours"),
            merchant_rows,
        )  # fmt: skip
        sink.insert(
            "terminals",
            ("id", "merchant_id", "name", "public_key", "status", "created_s", "last_seen_s",
             "records_waiting"),
            terminal_rows,
        )  # fmt: skip
        sink.insert(
            "cards",
            ("id", "serial", "number", "uid", "issuer_sig", "account_id", "created_s"),
            card_rows,
        )
        sink.execute(f"UPDATE counters SET value = {size.cards} WHERE name = 'card_serial'")
        self.seqs = [0] * (terminal + 1)
        self.heads = [GENESIS] * (terminal + 1)  # each till's last record hash
        self.counters = [0] * (size.cards + 1)  # each card's purse counter, by serial
        self.serial_of = {account: n + 1 for n, account in enumerate(self.card_accounts)}
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
        txns: list[tuple[Any, ...]] = []
        posts: list[tuple[int, int, int]] = []
        records: list[list[Any]] = []
        record = self._record if self.journal else _no_record
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
                    record(records, till, "topup_request", card, topup, txn, when)
                    posts += ((txn, merchant_account, -topup), (txn, card, topup))
                    balance[merchant_account] = balance.get(merchant_account, 0) - topup
                have += topup
                txn += 1
            seqs[till] += 1
            txns.append((txn, "payment", when, till, seqs[till], None, name))
            payment = record(records, till, "payment", card, amount, txn, when, have - amount)
            posts += ((txn, card, -amount), (txn, merchant_account, amount))
            txn += 1
            have -= amount
            paid = amount
            if rng.random() < 0.01:  # voided at the till right away
                seqs[till] += 1
                txns.append((txn, "void", when, till, seqs[till], None, f"Storno {name}"))
                if payment is not None:
                    payment[_VOIDED_BY] = seqs[till]
                    record(records, till, "void", card, amount, txn, when, voids=payment[1])
                posts += ((txn, merchant_account, -amount), (txn, card, amount))
                txn += 1
                have += amount
                paid = 0
            balance[card] = have
            balance[merchant_account] = balance.get(merchant_account, 0) + paid
        self.sink.insert(
            "transactions",
            ("id", "kind", "created_s", "terminal_id", "seq", "user_id", "label"),
            txns,
        )
        self.sink.insert("postings", ("txn_id", "account_id", "amount_cents"), posts)
        if records:
            self.sink.insert("journal", JOURNAL_COLUMNS, [tuple(row) for row in records])
            self.rows["journal"] = self.rows.get("journal", 0) + len(records)
        self.next_txn = txn
        self.rows["transactions"] += len(txns)
        self.rows["postings"] += len(posts)

    def _record(
        self,
        records: list[list[Any]],
        till: int,
        kind: str,
        card_account: int,
        amount_cents: int,
        txn: int,
        when: float,
        purse_cents: int = 0,
        voids: int = 0,
    ) -> list[Any]:
        """The journal row of the till's record just numbered `self.seqs[till]`, as sync
        stores it (canonical bytes written out in key order: this runs millions of times)."""
        seq, prev = self.seqs[till], self.heads[till]
        serial = self.serial_of[card_account]
        card = self.card_numbers[serial - 1]
        counter = None
        if kind == "payment":
            self.counters[serial] = counter = self.counters[serial] + 1
            body = (
                f'{{"amount_cents":{amount_cents},"card":"{card}","counter":{counter},'
                f'"mode":"offline","purse_cents":{purse_cents},"tip_cents":0,'
                f'"uid":"04{serial:012x}"}}'
            )
        elif kind == "void":
            body = f'{{"amount_cents":{amount_cents},"card":"{card}","voids_seq":{voids}}}'
        else:
            body = f'{{"amount_cents":{amount_cents},"card":"{card}"}}'
        signed = (
            f'{{"body":{body},"kind":"{kind}","prev":"{prev}","seq":{seq},'
            f'"terminal_id":{till},"v":1}}'
        )
        digest = hashlib.sha256(signed.encode()).hexdigest()
        self.heads[till] = digest
        mode = "offline" if kind == "payment" else None
        row = [till, seq, digest, kind, card, counter, amount_cents, mode, signed,
               PLACEHOLDER_SIG, "applied", None, txn, None, when + 30, when]  # fmt: skip
        records.append(row)
        return row

    def balances(self) -> None:
        self.sink.set_balances([(cents, account) for account, cents in self.balance.items()])

    def heads_and_counters(self) -> None:
        """Chain heads of the tills and purse counters of the cards the journal leaves."""
        if not self.journal:
            return
        self.sink.execute_many(
            "UPDATE terminals SET last_seq = {0}, last_hash = {0} WHERE id = {0}",
            [(seq, self.heads[t], t) for t, seq in enumerate(self.seqs) if seq],
        )
        self.sink.execute_many(
            "UPDATE cards SET counter = {0} WHERE serial = {0}",
            [(n, serial) for serial, n in enumerate(self.counters) if n],
        )


#: the journal's placeholder signature (see the module's docstring)
PLACEHOLDER_SIG = "0" * 128
GENESIS = "0" * 64
JOURNAL_COLUMNS = (
    "terminal_id", "seq", "hash", "kind", "card", "counter", "amount_cents", "mode", "signed",
    "sig", "status", "code", "txn_id", "voided_by_seq", "received_s", "recorded_s",
)  # fmt: skip
_VOIDED_BY = JOURNAL_COLUMNS.index("voided_by_seq")


def _no_record(*_args: Any, **_kwargs: Any) -> None:
    """Without a journal: no row."""


def fill(sink: Sink, issuer_key_path: Path, size: TownSize, journal: bool) -> dict[str, int]:
    """The whole year into `sink` (inside its transaction); the rows written."""
    now = dt.datetime.now(LOCAL)
    today = now.date()
    first = today - dt.timedelta(days=365)
    town = Town(sink, issuer_key_path, size, journal)
    town.static(dt.datetime.combine(first, dt.time(7), LOCAL).timestamp())
    weights = _day_weights(first, today, now)
    total = sum(weights)
    for n, weight in enumerate(weights):
        day = first + dt.timedelta(days=n)
        town.day(day, round(size.payments * weight / total), now.timestamp() - 60)
    town.balances()
    town.heads_and_counters()
    return town.rows


@contextmanager
def _sqlite(path: Path) -> Iterator[Sink]:
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-1000000")
        db.execute("BEGIN")
        yield SqliteSink(db)
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=WAL")  # no ANALYZE: the server's database has none
    finally:
        db.close()


#: tables whose ids the generator writes itself: PostgreSQL's sequences must move past them
_ID_TABLES = ("accounts", "merchants", "terminals", "cards", "transactions", "postings")


@contextmanager
def _postgres(url: str) -> Iterator[Sink]:
    import psycopg

    plain = sa.make_url(url).set(drivername="postgresql")
    with psycopg.connect(plain.render_as_string(hide_password=False)) as db:
        yield PostgresSink(db)
        for table in _ID_TABLES:
            db.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT coalesce(max(id), 1) FROM {table}))"
            )
        db.execute("ANALYZE")  # as autovacuum would soon after a load this size


def populate(
    database_url: str, issuer_key_path: Path, size: TownSize, journal: bool = False
) -> dict[str, int]:
    """The town's year, written straight into the (initialised, empty) database at
    `database_url`, its journal too if `journal`; the rows written. SQLite or PostgreSQL."""
    if database_url.startswith("postgresql"):
        opened = _postgres(database_url)
    else:
        opened = _sqlite(Path(sa.make_url(database_url).database or ""))
    with opened as sink:
        return fill(sink, issuer_key_path, size, journal)
