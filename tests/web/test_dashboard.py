"""The office's overview on a real server: money on cards, the day totals the charts are drawn
from (closed days summed once into `daily_totals`, today live), the 12-month volume, the
terminals and alerts that need a look, the float check before any bank statement.

Traffic goes through the real server (office top-ups, a till's online payments and a void);
then its bookings are moved back in time by rewriting `transactions.created_s`, as
tests/server/test_settlement.py does, before the overview is opened for the first time.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import secrets
import time
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from babel.dates import format_skeleton
from fixtures.server import ADMIN_PASSWORD, ADMIN_USER, ServerInfo
from fixtures.web import PageClient

from hcard.server.context import Context
from hcard.server.db.tables import audit_log
from hcard.server.services import dashboard
from hcard.server.settings import Settings
from hcard.server.web import charts

LOCAL = ZoneInfo("Europe/Berlin")


def _at(day: dt.date, hour: int = 12) -> float:
    return dt.datetime.combine(day, dt.time(hour), LOCAL).timestamp()


def _last_txn(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM transactions")).scalar())


def _backdate(engine: sa.Engine, since_txn: int, when: float) -> int:
    """Move every transaction after `since_txn` to `when`; the last id."""
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE transactions SET created_s = :w WHERE id > :i"),
            {"w": when, "i": since_txn},
        )
    return _last_txn(engine)


def _direct_sums(engine: sa.Engine, day: dt.date) -> dict[str, tuple[int, int]]:
    """The day's top-ups and payments (net of voids) summed straight from the ledger."""
    start, end = _at(day, 0), _at(day + dt.timedelta(days=1), 0)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT t.kind, p.amount_cents FROM transactions t"
                " JOIN postings p ON p.txn_id = t.id JOIN accounts a ON a.id = p.account_id"
                " WHERE a.kind = 'card' AND t.created_s >= :s AND t.created_s < :e"
            ),
            {"s": start, "e": end},
        ).all()
    topups = [c for k, c in rows if k in ("topup", "till_topup")]
    payments = [-c for k, c in rows if k == "payment"]
    voided = [c for k, c in rows if k == "void" and c > 0]
    return {
        "topup": (len(topups), sum(topups)),
        "payment": (len(payments) - len(voided), sum(payments) - sum(voided)),
    }


def _stored(engine: sa.Engine) -> dict[tuple[str, str], tuple[int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT day, kind, count, amount_cents FROM daily_totals"))
        return {(day, kind): (count, cents) for day, kind, count, cents in rows}


def _table_row(page: str, day: dt.date) -> list[str]:
    """The cells of the day table's row of `day` (English: 'Mon, 30 Nov 2026')."""
    label = html.escape(format_skeleton("yMMMEd", day, locale="en_GB"))
    match = re.search(rf'<th scope="row">{re.escape(label)}</th>(.*?)</tr>', page, re.S)
    assert match, f"no row for {label}"
    return [html.unescape(cell) for cell in re.findall(r">([^<]*)</td>", match.group(1))]


def _figure(page: str, heading_id: str) -> str:
    match = re.search(rf'id="{heading_id}".*?<p class="figure">([^<]*)</p>', page, re.S)
    assert match, heading_id
    return html.unescape(match.group(1))


@pytest.fixture
def town(server_factory):
    """A fresh server with two days of traffic in the past and some today."""
    server: ServerInfo = server_factory()
    engine = sa.create_engine(server.database_url)
    today = dt.datetime.now(LOCAL).date()
    three_ago, two_ago = today - dt.timedelta(days=3), today - dt.timedelta(days=2)
    till = server.terminal()
    start = _last_txn(engine)
    first, first_uid = server.new_card(10_000)
    second, second_uid = server.new_card(5_000)
    start = _backdate(engine, start, _at(three_ago, 10))
    records = [till.payment(first, first_uid, 1_250, counter=1)]
    records.append(till.payment(second, second_uid, 830, counter=1))
    for record in records:
        assert till.authorise(record).json()["outcome"] == "approved"
    records.append(
        till.record("void", {"card": second, "voids_seq": records[1].seq, "amount_cents": 830})
    )
    assert {r["status"] for r in till.sync(records).json()["results"]} == {"applied"}
    _backdate(engine, start, _at(two_ago, 15))
    # today, live: a top-up and a payment
    server.staff.topup(first, 2_000)
    paid_today = till.payment(first, first_uid, 499, counter=2)
    assert till.authorise(paid_today).json()["outcome"] == "approved"
    yield server, engine, till, (first, second), (three_ago, two_ago, today)
    engine.dispose()


def test_overview_shows_the_money_and_the_day_totals(town):
    server, engine, _till, (first, second), (three_ago, two_ago, today) = town
    assert _stored(engine) == {}  # nothing summed before the first look
    browser = PageClient(server.url, language="en")
    browser.login(ADMIN_USER, ADMIN_PASSWORD)
    page = browser.get("/office/")
    assert page.status_code == 200
    text = page.text

    # the liability: what is on the cards
    on_cards = sum(server.staff.card(n)["balance_cents"] for n in (first, second))
    assert on_cards == 10_000 + 5_000 - 1_250 + 2_000 - 499
    assert _figure(text, "h-liability") == "€152.51"
    # payments owed to the merchant, not yet paid out
    assert "Owed to merchants, not yet paid out: €17.49" in html.unescape(text)

    # closed days: summed once, stored, equal to the ledger's own sums
    stored = _stored(engine)
    for day in (three_ago, two_ago):
        direct = _direct_sums(engine, day)
        for kind in ("topup", "payment"):
            assert stored[(day.isoformat(), kind)] == direct[kind], (day, kind)
    assert stored[(three_ago.isoformat(), "topup")] == (2, 15_000)
    assert stored[(three_ago.isoformat(), "payment")] == (0, 0)
    assert stored[(two_ago.isoformat(), "payment")] == (1, 1_250)  # 830 paid and voided
    assert stored[(two_ago.isoformat(), "topup")] == (0, 0)
    # every closed day of the 12 months has its rows (quiet days as zeros); today has none
    last_closed = (dt.datetime.now(LOCAL) - dt.timedelta(seconds=600)).date() - dt.timedelta(days=1)
    first_day = today - dt.timedelta(days=364)
    days = {day for day, _kind in stored}
    assert min(days) == first_day.isoformat()
    assert max(days) == last_closed.isoformat()
    assert len(stored) == 2 * ((last_closed - first_day).days + 1)
    assert today.isoformat() not in days

    # the chart's table: closed days and today (live)
    assert _table_row(text, three_ago) == ["2", "€150.00", "0", "€0.00"]
    assert _table_row(text, two_ago) == ["0", "€0.00", "1", "€12.50"]
    assert _table_row(text, today) == ["1", "€20.00", "1", "€4.99"]
    # both charts are drawn: a bar per non-zero value, with an accessible name
    assert 'role="img" aria-labelledby="chart-days-title"' in text
    assert len(re.findall(r'<rect class="bar-topup"', text)) >= 2
    assert len(re.findall(r'<rect class="bar-payment"', text)) >= 2

    # the 12-month volume: from daily_totals and today, the same as settlement's live sum
    figures = server.staff.call("GET", "/v1/figures/payments-12-months")
    assert figures["payments_12_months_cents"] == 1_250 + 499
    assert _figure(text, "h-bafin") == "€17.49"
    assert '<meter id="bafin-meter"' in text
    assert 'value="1749"' in text

    # the nightly job finds nothing left to do; a second look reads the same rows
    ctx = Context.open(Settings.build(server.data_dir, server.database_url))
    try:
        assert dashboard.fill_daily_totals(ctx) == 0
    finally:
        ctx.engine.dispose()
    assert browser.get("/office/").status_code == 200
    assert _stored(engine) == stored


def test_nightly_fill_sums_closed_days_as_the_overview_would(town):
    server, engine, _till, _cards, (three_ago, two_ago, _today) = town
    ctx = Context.open(Settings.build(server.data_dir, server.database_url))
    try:
        written = dashboard.fill_daily_totals(ctx)
        assert written >= 363
        assert dashboard.fill_daily_totals(ctx) == 0  # idempotent
    finally:
        ctx.engine.dispose()
    stored = _stored(engine)
    for day in (three_ago, two_ago):
        direct = _direct_sums(engine, day)
        assert stored[(day.isoformat(), "topup")] == direct["topup"]
        assert stored[(day.isoformat(), "payment")] == direct["payment"]


def test_terminals_alerts_and_float_check_on_a_new_server(town):
    server, engine, till, (first, _second), _days = town
    other = server.terminal(name="Kasse hinten")
    with engine.begin() as conn:  # what the tills told the server with their last call
        conn.execute(
            sa.text("UPDATE terminals SET last_seen_s = :s WHERE id = :i"),
            {"s": time.time() - 2 * 86_400, "i": till.terminal_id},
        )
        conn.execute(
            sa.text("UPDATE terminals SET last_seen_s = :s, records_waiting = 3 WHERE id = :i"),
            {"s": time.time(), "i": other.terminal_id},
        )
    server.staff.call(
        "POST",
        "/v1/ledger/corrections",
        json={
            "card_number": first,
            "amount_cents": -20_000,
            "reason": "test overdraw",
            "allow_below_zero": True,
        },
    )
    username, password = f"office{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    server.staff.call(
        "POST", "/v1/users", json={"username": username, "password": password, "role": "marketing"}
    )
    browser = PageClient(server.url, language="en")
    browser.login(username, password)
    page = browser.get("/office/")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "2 terminals have not called the server for a day" in text
    assert f'href="/office/merchants/{till.merchant_id}"' in text
    assert "silent for a day" in text
    listed = text.split('id="h-terminals"', 1)[1]
    rows = re.findall(r'<tr>\s*<th scope="row">([^<]*)</th>', listed)
    assert rows == ["Kasse", "Kasse hinten"]  # the longest silent first
    assert _figure(text, "h-alerts") == "1"
    assert "Look at the open alert" in text
    assert 'href="/office/alerts"' in text
    assert re.search(r"<dt>Terminals</dt><dd>2</dd>", text)
    assert re.search(r"<dt>Cards</dt><dd>1</dd>", text)  # the overdrawn card is blocked

    # no bank statement yet: said plainly, and the full check says the same
    assert "No bank statement has been uploaded yet" in text
    check = browser.post("/office/float-check")
    assert check.status_code == 200
    assert "No bank statement has been uploaded yet." in html.unescape(check.text)
    # a form, not a link: its token is needed, and it is in the audit log
    assert browser.get("/office/float-check").status_code != 200
    assert browser.http.post(server.url + "/office/float-check", timeout=30).status_code == 403
    with engine.connect() as conn:
        audited = conn.execute(
            sa.select(audit_log.c.username, audit_log.c.status)
            .where(audit_log.c.action == "office_float_check")
            .order_by(audit_log.c.id)
        ).all()
    assert [(row.username, row.status) for row in audited] == [(username, 200), (username, 403)]


def test_charts_are_geometry_from_numbers():
    chart = charts.bar_chart([[0, 150, 90], [200, -5, 0]], width=600, height=240, unit=100)
    assert [t.value for t in chart.ticks] == [0, 100, 200]
    assert chart.ticks[0].y == chart.bottom
    assert chart.ticks[-1].y == charts.TOP
    heights = {(b.series, b.group): b.height for b in chart.bars}
    assert set(heights) == {(0, 1), (0, 2), (1, 0)}  # zero and negative values: no bar
    assert heights[(1, 0)] == pytest.approx(chart.bottom - charts.TOP)
    assert heights[(0, 1)] == pytest.approx(heights[(1, 0)] * 0.75)
    for bar in chart.bars:
        assert chart.left <= bar.x
        assert bar.x + bar.width <= chart.right
        assert bar.y + bar.height == pytest.approx(chart.bottom)
    assert [label.group for label in charts.bar_chart([[1] * 30], label_every=5).labels] == [
        4,
        9,
        14,
        19,
        24,
        29,
    ]
    assert [charts.nice_step(v, 100) for v in (0, 1, 450, 123_456, 1_000_000)] == [
        100,
        100,
        200,
        50_000,
        250_000,
    ]
