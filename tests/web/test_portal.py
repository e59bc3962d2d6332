"""The merchant portal on a real server over HTTP: a merchant sees their own, and nothing else.

Two shops with traffic booked on days of the last two months (fixtures/month.py) and a
run for each month: the florist is in both, the pharmacy only in the first. The pharmacy
logs in and reads its payments per day (which add up to its ledger postings), its
statements and its details; every URL of the florist's data, of the office and of the JSON
API is refused. And the payments page stays quick with a year of 12,000 payments.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
import time
from collections import defaultdict

import pytest
import sqlalchemy as sa
from fixtures.month import LOCAL, Town, at, months_ago
from fixtures.server import fresh_postgres_database, start_server
from fixtures.tables import tables
from fixtures.web import PageClient

from hcard.errors import Code, HCardError
from hcard.money import format_cents
from hcard.server.web.pages.settlement import month_period

SHOPS = {"Apotheke am Markt": {"fee_bp": 200}, "Blumen Berg": {"fee_bp": 300}}
PHARMACY, FLORIST = SHOPS


def money(cents: int) -> str:
    return format_cents(cents, "en").replace("\xa0", " ")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def town(request, tmp_path_factory):
    database_url = None
    if request.param == "postgres":
        database_url = fresh_postgres_database(request.getfixturevalue("postgres_url"))
    server = start_server(tmp_path_factory.mktemp(f"portal-{request.param}"), database_url)
    town = Town.start(server, SHOPS, cards=3)
    earlier, later = months_ago(2), months_ago(1)
    town.fund(earlier[0])
    first = [town.pay(PHARMACY, 0, 1_000), town.pay(PHARMACY, 1, 250, mode="offline")]
    town.sync(PHARMACY, first)
    town.booked_on(at(earlier[0].replace(day=3), 9))
    second = [town.pay(PHARMACY, 2, 700)]
    second.append(town.void(PHARMACY, 2, second[0]))
    second.append(town.pay(PHARMACY, 0, 1_999))
    town.sync(PHARMACY, second)
    town.booked_on(at(earlier[0].replace(day=10), 23))  # late evening: still that local day
    town.sync(FLORIST, [town.pay(FLORIST, 1, 999)])
    town.booked_on(at(earlier[0].replace(day=5)))
    town.sync(FLORIST, [town.pay(FLORIST, 1, 1_234)])
    town.booked_on(at(later[0].replace(day=7)))
    town.sync(PHARMACY, [town.pay(PHARMACY, 1, 420)])  # this month, booked now
    staff = server.staff
    town.runs = [
        staff.call("POST", "/v1/settlement/runs", json={"month": f"{month[0]:%Y-%m}"})["run_id"]
        for month in (earlier, later)
    ]
    yield town
    town.close()
    server.stop()


def _portal(town: Town, shop: str) -> PageClient:
    browser = PageClient(town.server.url, language="en")
    landed = browser.login(*town.merchant_user(shop))
    assert landed.headers["location"] == "/portal/"  # a merchant's home
    return browser


def _ledger_days(town: Town, shop: str, first: dt.date, last: dt.date) -> dict[dt.date, int]:
    """Payments less voids of `shop` per local day, straight from the ledger's postings."""
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), LOCAL).timestamp()
    start = dt.datetime.combine(first, dt.time(), LOCAL).timestamp()
    days: dict[dt.date, int] = defaultdict(int)
    with town.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT t.created_s, t.kind, p.amount_cents FROM postings p "
                "JOIN transactions t ON t.id = p.txn_id "
                "JOIN merchants m ON m.account_id = p.account_id "
                "WHERE m.id = :m AND t.created_s >= :a AND t.created_s < :b"
            ),
            {"m": town.merchants[shop], "a": start, "b": end},
        )
        for created_s, kind, cents in rows:
            if kind == "payment" or (kind == "void" and cents < 0):
                days[dt.datetime.fromtimestamp(created_s, LOCAL).date()] += cents
    return days


def test_payments_per_day_are_the_merchants_own_and_add_up_to_the_ledger(town: Town):
    pharmacy = _portal(town, PHARMACY)
    overview = pharmacy.get("/portal/")
    assert overview.status_code == 200
    assert PHARMACY in overview.text
    assert FLORIST not in overview.text
    assert money(420) in overview.text  # this month so far
    assert "Kasse Apotheke am Markt" in overview.text
    assert "Kasse Blumen Berg" not in overview.text
    first, last = months_ago(2)
    page = pharmacy.get(f"/portal/payments?month={first:%Y-%m}")
    assert page.status_code == 200
    (rows,) = [r for caption, r in tables(page.text).items() if caption.startswith("Payments per")]
    _header, *days, total = rows
    assert len(days) == (last - first).days + 1
    ledger = _ledger_days(town, PHARMACY, first, last)
    assert ledger[first.replace(day=3)] == 1_250
    assert ledger[first.replace(day=10)] == 1_999
    expected = [money(ledger.get(first + dt.timedelta(days=n), 0)) for n in range(len(days))]
    assert [row[-1] for row in days] == expected
    assert total[-1] == money(sum(ledger.values())) == money(3_249)
    assert total[1:5] == ["4", money(3_949), "1", money(700)]
    # the chart and its text alternative
    assert '<svg viewBox="0 0' in page.text
    assert 'role="img" aria-labelledby="chart-title chart-desc"' in page.text
    assert page.text.count('class="bar-payment"') == 2
    # the current month by default, and a wrong month said so
    assert money(420) in pharmacy.get("/portal/payments").text
    for month in ("2026-1", "20２６-11"):  # full-width digits are no month either
        wrong = pharmacy.get(f"/portal/payments?month={month}")
        assert wrong.status_code == 400
        assert 'role="alert"' in wrong.text
        assert 'id="f-month"' in wrong.text  # said on the form, not an error page
        assert 'aria-invalid="true"' in wrong.text


@pytest.mark.parametrize(
    "month", ["20２６-11", "２０２６-１１", "2026-11\n", "2026-11 ", "1999-12"]
)
def test_a_month_is_ascii_digits_as_year_and_month(month):
    with pytest.raises(HCardError) as refused:
        month_period(month)
    assert refused.value.code is Code.PERIOD_INVALID
    assert month_period("2026-11").first.isoformat() == "2026-11-01"


def test_statements_and_details_are_the_merchants_own_and_nothing_else(town: Town):
    pharmacy, staff = _portal(town, PHARMACY), town.server.staff
    both, florist_only = town.runs
    florist_id = town.merchants[FLORIST]
    listed = pharmacy.get("/portal/statements")
    assert f"/portal/statements/{both}.pdf" in listed.text
    assert f"/portal/statements/{florist_only}." not in listed.text
    for kind, media, disposition in (
        ("html", "text/html", "inline"),
        ("pdf", "application/pdf", "inline"),
        ("csv", "text/csv", "attachment"),
    ):
        answer = pharmacy.get(f"/portal/statements/{both}.{kind}")
        assert answer.status_code == 200, kind
        assert answer.headers["content-type"].startswith(media)
        assert answer.headers["content-disposition"].startswith(f"{disposition}; filename=")
        assert answer.headers["cache-control"] == "no-store"
        # a run the pharmacy was not in: nothing, not even that it exists
        assert pharmacy.get(f"/portal/statements/{florist_only}.{kind}").status_code == 404
    html = pharmacy.get(f"/portal/statements/{both}.html").text
    assert PHARMACY in html
    assert FLORIST not in html
    details = pharmacy.get("/portal/details")
    assert PHARMACY in details.text
    assert "DE89370400440532013000" in details.text
    assert details.text.count('method="post"') == 1  # the logout; nothing to change here
    # the office's pages and the florist's data by any URL: refused
    for path in (
        "/office/",
        "/office/settlement",
        f"/office/settlement/runs/{both}",
        f"/office/settlement/runs/{both}/files/1",
        f"/office/settlement/runs/{both}/statements/{florist_id}.pdf",
        f"/office/settlement/runs/{both}/statements/{florist_id}.html",
        f"/office/settlement/preview?month={months_ago(1)[0]:%Y-%m}",
        f"/v1/settlement/runs/{both}/statements/{florist_id}.pdf",
        f"/v1/settlement/runs/{both}/statements/{florist_id}.csv",
        f"/v1/settlement/runs/{both}",
        f"/v1/merchants/{florist_id}",
        f"/v1/merchants/{florist_id}/statements",
        f"/v1/merchants/{florist_id}/payments",
        f"/v1/merchants/{florist_id}/terminals",
    ):
        assert pharmacy.get(path, allow_redirects=False).status_code in (403, 404), path
    mine = pharmacy.get("/v1/merchants").json()
    assert [m["id"] for m in mine] == [town.merchants[PHARMACY]]
    refused = pharmacy.post(f"/office/settlement/runs/{florist_only}/cancel")
    assert refused.status_code == 403
    assert staff.call("GET", f"/v1/settlement/runs/{florist_only}")["status"] == "created"
    # and the florist reads the run the pharmacy could not
    florist = _portal(town, FLORIST)
    assert florist.get(f"/portal/statements/{florist_only}.html").status_code == 200


def test_payments_per_day_are_quick_with_a_year_of_12000_payments(server_factory):
    """The page sums in SQL over the merchant's own postings of the month: a busy shop's
    year (and another shop's) in the database, the page still answers at once."""
    server = server_factory()
    town = Town.start(server, {"Markt-Café": {}, "Nachbar": {}}, cards=0)
    now = time.time()
    with town.engine.begin() as conn:
        accounts = dict(conn.execute(sa.text("SELECT id, account_id FROM merchants")).all())
        online = conn.execute(sa.text("SELECT id FROM accounts WHERE kind = 'online'")).scalar()
        start = town.last_txn() + 1
        txns, postings = [], []
        for n in range(24_000):
            txn_id = start + n
            when = now - 365 * 86_400 + n * (365 * 86_400 / 24_000)
            txns.append({"id": txn_id, "created_s": when})
            merchant_account = accounts[town.merchants["Markt-Café" if n % 2 else "Nachbar"]]
            postings += [
                {"t": txn_id, "a": merchant_account, "c": 500 + n % 700},
                {"t": txn_id, "a": online, "c": -(500 + n % 700)},
            ]
        conn.execute(
            sa.text(
                "INSERT INTO transactions (id, kind, created_s, label) "
                "VALUES (:id, 'payment', :created_s, '')"
            ),
            txns,
        )
        conn.execute(
            sa.text("INSERT INTO postings (txn_id, account_id, amount_cents) VALUES (:t, :a, :c)"),
            postings,
        )
    cafe = _portal(town, "Markt-Café")
    month = months_ago(1)[0]
    timings = []
    for _ in range(7):
        began = time.perf_counter()
        page = cafe.get(f"/portal/payments?month={month:%Y-%m}")
        timings.append(time.perf_counter() - began)
        assert page.status_code == 200
    (rows,) = [r for caption, r in tables(page.text).items() if caption.startswith("Payments per")]
    assert 900 < int(re.sub(r"\D", "", rows[-1][1])) < 1_100  # ~1,000 of the shop's payments
    assert statistics.median(timings) < 0.3, timings
    town.close()
