"""Last month in the demo town: merchants, cards and a month of till traffic, ready to settle.

So a newcomer can run the monthly close (`hcard-server settle create --month <last month>`)
the moment the demo is up, the demo seeds the previous calendar month: four merchants with
the master data a SEPA file needs (the account holder as the bank knows it, a structured
address), a dozen cards topped up at the office, and a month of business days at each
merchant's till: online payments (authorised), offline ones (synced), a few voids and, at the
kiosk, cash top-ups at the till.

Everything goes through the real paths: merchants and cards through the staff API, each
till enrolled with its one-time code and its own key pair, every record signed and hash-
chained, online ones through `POST /v1/terminal/authorise`, all of them through
`POST /v1/terminal/sync` (with `hcard.terminal.client`, the till's own client). Only time
is faked: the server books at its own clock, and settlement's cut-off is the booking time, so
the bookings are then moved into last month in the demo's own SQLite file
(`transactions.created_s`, and `journal.received_s` to match), as
tests/server/test_settlement.py does. The structured address and the holder go through the
staff API when it takes them, else into the same file.

The plan is made by a seeded random generator: the same day of the month gives the same
traffic, and no card is ever spent below zero (so no alert, no flagged card).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hcard import keys
from hcard.provisioning.staff import StaffClient
from hcard.records import GENESIS_HASH, Record, RecordKind, make_record
from hcard.terminal.client import Clock, ServerClient, post_json
from hcard.terminal.states import STATEFUL_KINDS

LOCAL = ZoneInfo("Europe/Berlin")
#: the till's own client waits 0.7 s for an online answer (a cashier is waiting); seeding a
#: month at once on a busy machine must not fall over that
TIMEOUT_S = (3.0, 30.0)
#: what a SEPA file needs beyond the name and IBAN (staff API fields, merchants columns)
DETAIL_FIELDS = ("holder_name", "street", "building_number", "postcode", "town")


@dataclass(frozen=True)
class Shop:
    """A merchant of the demo town and how its till is used."""

    key: str
    #: `POST /v1/merchants` fields
    merchant: dict[str, Any]
    #: holder and structured address (DETAIL_FIELDS)
    details: dict[str, str]
    till: str
    #: typical prices, in cents
    prices: tuple[int, ...]
    #: sales per business day, at most
    per_day: int
    #: share of sales decided by the till alone (offline)
    offline_share: float = 0.15
    #: cash top-ups taken at the till per week, at most
    topups_per_week: int = 0


#: the Eiscafé is the demo's own merchant (system.MERCHANT, with the merchant login and the
#: till the demo enrols); these are its SEPA details
EISCAFE_DETAILS = {
    "holder_name": "Eiscafé am Untermarkt GmbH",
    "street": "Untermarkt",
    "building_number": "1",
    "postcode": "45525",
    "town": "Hattingen",
}
EISCAFE = Shop(
    key="eiscafe",
    merchant={},  # created by system.Demo.seed_server
    details=EISCAFE_DETAILS,
    till="Eistheke",
    prices=(250, 350, 450, 480, 690, 820, 1_150),
    per_day=4,
)
OTHER_SHOPS = (
    Shop(
        key="baecker",
        merchant={
            "name": "Bäckerei Schulte",
            "iban": "DE02500105170137075030",
            "address": "Große Weilstraße 12a, 45525 Hattingen",
            "contact": "backstube@schulte.example",
            "fee_bp": 250,
            "listed": True,
            "category": "food",
            "opening_hours": "Mo–Fr 6–18 Uhr, Sa 6–13 Uhr",
        },
        details={
            "holder_name": "Bäckerei Schulte GbR",
            "street": "Große Weilstraße",
            "building_number": "12a",
            "postcode": "45525",
            "town": "Hattingen",
        },
        till="Theke",
        prices=(180, 240, 320, 395, 560, 745, 950),
        per_day=5,
        offline_share=0.2,
    ),
    Shop(
        key="buch",
        merchant={
            "name": "Buchhandlung am Rathaus",
            "iban": "DE75512108001245126199",
            "address": "Rathausplatz 3, 45525 Hattingen",
            "contact": "post@buch-rathaus.example",
            "fee_bp": 300,
            "listed": True,
            "category": "culture",
            "opening_hours": "Mo–Fr 9:30–18:30 Uhr, Sa 9:30–16 Uhr",
        },
        details={
            "holder_name": "Buchhandlung am Rathaus Inh. Jörg Krämer",
            "street": "Rathausplatz",
            "building_number": "3",
            "postcode": "45525",
            "town": "Hattingen",
        },
        till="Kasse",
        prices=(999, 1_200, 1_495, 1_800, 2_200),
        per_day=2,
    ),
    Shop(
        key="kiosk",
        merchant={
            "name": "Kiosk an der Heggerstraße",
            "iban": "DE88100900001234567892",
            "address": "Heggerstraße 24, 45525 Hattingen",
            "contact": "kiosk-hegger@example.org",
            "fee_bp": 200,
        },
        details={
            "holder_name": "Ayşe Demir",
            "street": "Heggerstraße",
            "building_number": "24",
            "postcode": "45525",
            "town": "Hattingen",
        },
        till="Kasse",
        prices=(120, 250, 390, 450, 680),
        per_day=4,
        topups_per_week=3,
    ),
)
SHOPS = (EISCAFE, *OTHER_SHOPS)
#: cards bought at the office at the start of the month: (euros, how paid)
CARDS = (
    (50, "cash"),
    (50, "online"),
    (30, "cash"),
    (100, "online"),
    (25, "cash"),
    (50, "online"),
    (20, "cash"),
    (75, "online"),
    (40, "cash"),
    (60, "online"),
    (30, "cash"),
    (50, "online"),
)
SEED = 10
#: offline: within the tills' default limits (HCARD_LIMIT_PER_PAYMENT_CENTS)
OFFLINE_MAX_CENTS = 2_500


def previous_month(today: dt.date) -> tuple[dt.date, dt.date]:
    """First and last day of the calendar month before `today`'s."""
    last = today.replace(day=1) - dt.timedelta(days=1)
    return last.replace(day=1), last


@dataclass
class Summary:
    """What was seeded, for the start message and the tests."""

    month: str  # YYYY-MM
    merchants: int = 0
    cards: int = 0
    payments: int = 0
    offline: int = 0
    voids: int = 0
    till_topups: int = 0
    #: the settlement run the demo made for the month (system.Demo.seed_server)
    run_id: int | None = None


class DemoTill:
    """One enrolled till of the demo town: its key, its record chain, its signed client."""

    def __init__(self, url: str, code: str, name: str) -> None:
        key = keys.generate()
        answer = post_json(
            f"{url}/v1/enrol", {"code": code, "public_key": keys.public_hex(key), "name": name}
        )
        self.terminal_id = int(answer["terminal_id"])
        self.key = key
        self.client = ServerClient(url, self.terminal_id, key, Clock())
        self.prev = GENESIS_HASH
        self.records: list[Record] = []
        self.sent = 0  # records uploaded so far
        #: seq → when it happened (epoch seconds), for the backdating
        self.times: dict[int, float] = {}

    def record(self, kind: str, body: dict[str, Any], when: float) -> Record:
        record = make_record(
            self.key, self.terminal_id, len(self.records) + 1, self.prev, kind, body
        )
        self.prev = record.hash
        self.records.append(record)
        self.times[record.seq] = when
        return record

    def authorise(self, record: Record) -> None:
        answer = self.client.request(
            "POST", "/v1/terminal/authorise", {"record": record.to_wire()}, TIMEOUT_S
        )
        if answer["outcome"] != "approved":
            raise RuntimeError(f"Vormonat / last month: {record.kind} declined: {answer}")

    def sync(self) -> None:
        """Upload the records not sent yet, the payments and top-ups among them named as
        shown (the demo's tills show every one), as the till's sync agent does."""
        fresh = self.records[self.sent :]
        if not fresh:
            return
        shown = [r.seq for r in fresh if r.kind in STATEFUL_KINDS]
        answer = self.client.request(
            "POST",
            "/v1/terminal/sync",
            {"records": [r.to_wire() for r in fresh], "shown": shown},
            TIMEOUT_S,
        )
        self.sent = len(self.records)
        refused = [r for r in answer["results"] if r["status"] != "applied"]
        if refused:
            raise RuntimeError(f"Vormonat / last month: records refused: {refused}")


@dataclass
class _Card:
    number: str
    uid: str
    #: what the card may still spend in the plan; void refunds are left out, so the server's
    #: balance is never below it, whatever order the tills' records arrive in
    spendable: int
    counter: int = 0


@dataclass
class _Sale:
    till: DemoTill
    card: _Card
    amount: int
    seq: int


@dataclass
class _Plan:
    rng: random.Random
    cards: list[_Card]
    summary: Summary
    office_topups: list[tuple[int, float]] = field(default_factory=list)  # (txn id, when)
    #: per shop: payments less voids less cash taken for top-ups, so far
    takings: dict[str, int] = field(default_factory=dict)


def _at(day: dt.date, minutes: int) -> float:
    """`minutes` after 09:00 local time on `day`, as epoch seconds."""
    start = dt.datetime.combine(day, dt.time(9), LOCAL)
    return (start + dt.timedelta(minutes=minutes)).timestamp()


def _business_days(first: dt.date, last: dt.date) -> list[dt.date]:
    days = []
    day = first
    while day <= last:
        if day.weekday() != 6:  # the town's shops close on Sundays
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def _sell(plan: _Plan, shop: Shop, till: DemoTill, when: float) -> _Sale | None:
    """One sale at `till`: a card that can pay it, online (authorised now) or offline."""
    amount = plan.rng.choice(shop.prices)
    offline = plan.rng.random() < shop.offline_share and amount <= OFFLINE_MAX_CENTS
    payers = [card for card in plan.cards if card.spendable >= amount]
    if not payers:
        return None
    card = plan.rng.choice(payers)
    card.spendable -= amount
    card.counter += 1
    record = till.record(
        RecordKind.PAYMENT,
        {
            "card": card.number,
            "uid": card.uid,
            "amount_cents": amount,
            "tip_cents": 0,
            "mode": "offline" if offline else "online",
            "counter": card.counter,
            "purse_cents": card.spendable,
        },
        when,
    )
    if offline:
        plan.summary.offline += 1
    else:
        till.authorise(record)
    plan.summary.payments += 1
    return _Sale(till, card, amount, record.seq)


def _till_topup(plan: _Plan, shop: Shop, till: DemoTill, when: float) -> None:
    """Cash taken at the till for a card: authorised online, as the till app does. Only
    while the shop's takings stay well above the cash it holds for the operator, so every
    merchant of the demo gets a payout (a month ending negative is tests/server's case)."""
    amount = plan.rng.choice((1_000, 2_000, 2_000, 5_000))
    if plan.takings.get(shop.key, 0) < 2 * amount:
        return
    card = plan.rng.choice(plan.cards)
    record = till.record(
        RecordKind.TOPUP_REQUEST, {"card": card.number, "amount_cents": amount}, when
    )
    till.authorise(record)
    # a till wakes its sync at once: until the server hears the top-up was shown, other
    # tills may not spend it (its card write may have been torn)
    till.sync()
    card.spendable += amount
    plan.takings[shop.key] -= amount
    plan.summary.till_topups += 1


def _void(plan: _Plan, sale: _Sale, when: float) -> None:
    """The cashier takes a sale back a few minutes later, on the same till."""
    sale.till.record(
        RecordKind.VOID,
        {"card": sale.card.number, "voids_seq": sale.seq, "amount_cents": sale.amount},
        when,
    )
    plan.summary.voids += 1


def _day(plan: _Plan, day: dt.date, tills: dict[str, DemoTill]) -> None:
    rng = plan.rng
    for shop in SHOPS:
        till = tills[shop.key]
        # a sale every so often between 09:00 and 18:30, in order of time
        minutes = sorted(rng.randrange(0, 570) for _ in range(rng.randint(0, shop.per_day)))
        if shop.topups_per_week and rng.random() < shop.topups_per_week / 6:
            _till_topup(plan, shop, till, _at(day, rng.randrange(0, 60)))
        for minute in minutes:
            sale = _sell(plan, shop, till, _at(day, minute))
            if sale is None:
                continue
            plan.takings[shop.key] = plan.takings.get(shop.key, 0) + sale.amount
            if rng.random() < 0.03:
                _void(plan, sale, _at(day, minute + 2))
                plan.takings[shop.key] -= sale.amount


def _merchant_details_in_api(staff: StaffClient) -> bool:
    """Whether `POST /v1/merchants` takes the holder and the structured address."""
    schema = staff.request("GET", "/openapi.json")["components"]["schemas"]
    return set(DETAIL_FIELDS) <= set(schema.get("MerchantIn", {}).get("properties", {}))


def create_merchant(
    staff: StaffClient, database: Path, fields: dict[str, Any], details: dict[str, str]
) -> dict[str, Any]:
    """A merchant through the staff API with its SEPA details (`DETAIL_FIELDS`): through the
    API as well when it takes them, else written into the demo's database."""
    if _merchant_details_in_api(staff):
        return staff.create_merchant(**fields, **details)
    merchant = staff.create_merchant(**fields)
    columns = ", ".join(f"{name} = ?" for name in DETAIL_FIELDS)
    with _database(database) as db:
        db.execute(
            f"UPDATE merchants SET {columns} WHERE id = ?",
            (*(details[name] for name in DETAIL_FIELDS), int(merchant["id"])),
        )
    return merchant


@contextlib.contextmanager
def _database(path: Path) -> Iterator[sqlite3.Connection]:
    """The demo server's SQLite file, written beside the running server (WAL, busy wait);
    committed when the block ends without an error."""
    db = sqlite3.connect(path, timeout=30)
    try:
        with db:
            yield db
    finally:
        db.close()


def seed(
    url: str,
    staff: StaffClient,
    database: Path,
    eiscafe_id: int,
    today: dt.date | None = None,
) -> Summary:
    """The other merchants, cards and the previous calendar month of traffic; `eiscafe_id`
    is the demo's merchant, made with `create_merchant` and `EISCAFE_DETAILS` before."""
    first, last = previous_month(today or dt.datetime.now(LOCAL).date())
    days = _business_days(first, last)
    summary = Summary(month=f"{first:%Y-%m}")
    merchant_ids = {EISCAFE.key: eiscafe_id}
    for shop in OTHER_SHOPS:
        merchant_ids[shop.key] = int(
            create_merchant(staff, database, shop.merchant, shop.details)["id"]
        )
    summary.merchants = len(merchant_ids)
    tills = {
        shop.key: DemoTill(
            url,
            str(staff.create_terminal(merchant_ids[shop.key], shop.till)["code"]),
            shop.till,
        )
        for shop in SHOPS
    }
    plan = _Plan(random.Random(SEED), [], summary)
    numbers = staff.reserve_cards(len(CARDS))
    for index, (number, (euros, source)) in enumerate(zip(numbers, CARDS, strict=True)):
        uid = f"04de3000{index:06x}"
        staff.issue_card(uid, number)
        answer = staff.topup(number, euros * 100, source)
        # bought at the office over the month's first business days
        plan.office_topups.append((int(answer["txn_id"]), _at(days[index % 3], 15 * index)))
        plan.cards.append(_Card(number, uid, euros * 100))
    summary.cards = len(plan.cards)
    for day in days:
        _day(plan, day, tills)
    for till in tills.values():
        till.sync()
    _backdate(database, plan, tills.values())
    return summary


def _backdate(database: Path, plan: _Plan, tills: Iterable[DemoTill]) -> None:
    """Move every booking of the plan to when it happened in last month."""
    with _database(database) as db:
        db.executemany(
            "UPDATE transactions SET created_s = ? WHERE id = ?",
            [(when, txn_id) for txn_id, when in plan.office_topups],
        )
        for till in tills:
            rows = [(when, till.terminal_id, seq) for seq, when in till.times.items()]
            db.executemany(
                "UPDATE transactions SET created_s = ? WHERE terminal_id = ? AND seq = ?", rows
            )
            db.executemany(
                "UPDATE journal SET received_s = ? WHERE terminal_id = ? AND seq = ?", rows
            )
