"""The monthly close and the merchant portal in Chromium, with axe-core on every page.

The office walks last month's close as a person would: picks the month, reads the figures,
creates the run, downloads the bank file (a real download), uploads the bank's statement
with the file input, and ends on the statements. Every page on the way, and every portal
page of a merchant, passes WCAG 2.1 AA in German and English on a phone and a desktop.
"""

from __future__ import annotations

import re

import pytest
from fixtures.browser import check_axe, log_in
from fixtures.camt import BankLine, statement
from fixtures.month import OPERATOR_IBAN, Town, at, months_ago
from fixtures.server import ServerInfo
from playwright.sync_api import Page, expect


@pytest.fixture(scope="module")
def town(server: ServerInfo) -> Town:
    """Two shops (the ice café's IBAN no longer valid) with last month's traffic."""
    town = Town.start(server, {"Bäckerei Sonne": {"fee_bp": 250}, "Eiscafé": {"fee_bp": 200}})
    with town.engine.begin() as conn:
        conn.exec_driver_sql(
            f"UPDATE merchants SET iban = 'DE00123' WHERE id = {town.merchants['Eiscafé']}"
        )
    first, _last = months_ago(1)
    town.fund(first)
    records = [town.pay("Bäckerei Sonne", 0, 1_250), town.pay("Bäckerei Sonne", 1, 830)]
    records.append(town.void("Bäckerei Sonne", 1, records[1]))
    town.sync("Bäckerei Sonne", records)
    town.sync("Eiscafé", [town.pay("Eiscafé", 2, 1_500)])
    town.booked_on(at(first.replace(day=12)))
    town.user = town.merchant_user("Bäckerei Sonne")
    yield town
    town.close()


def _step(page: Page) -> str:
    return page.locator('ol.steps li[aria-current="step"]').inner_text()


def test_the_office_closes_last_month_in_the_browser(town: Town, new_page):
    page = new_page("desktop", "en")
    log_in(page, next_path="/office/settlement")
    expect(page.locator("h1")).to_have_text("Monthly close")
    assert _step(page) == "Choose the month"
    check_axe(page)
    page.click("main form button[type=submit]")
    assert _step(page) == "Check the figures"
    expect(page.locator("table caption").first).to_contain_text("What each merchant gets")
    check_axe(page)
    page.click("text=Create the run for")
    assert _step(page) == "Download the bank file"
    check_axe(page)
    with page.expect_download() as download:
        page.click("text=Download bank file 1 (XML)")
    xml = download.value.path().read_bytes()
    assert b"pain.001.001.09" in xml
    page.click("text=I have uploaded the file in the online banking")
    assert _step(page) == "Upload the bank statement"
    check_axe(page)
    run_id = int(re.search(r"/runs/(\d+)", page.url).group(1))
    (line,) = [
        x
        for x in town.server.staff.call("GET", f"/v1/settlement/runs/{run_id}")["lines"]
        if x["end_to_end_id"]
    ]
    day = months_ago(0)[0]
    camt = statement(
        OPERATOR_IBAN,
        [
            BankLine(line["payout_cents"], False, line["end_to_end_id"], booking_date=day),
            BankLine(
                1_000, True, remittance="Gutschein", counterparty="E. Muster", booking_date=day
            ),
            BankLine(450, False, remittance="Kontoführung", booking_date=day),
        ],
        closing_cents=80_000 - line["payout_cents"] + 1_000 - 450,
        statement_id="BROWSER-1",
        day=day,
    )
    page.set_input_files(
        "#f-statement",
        files=[{"name": "auszug.xml", "mimeType": "application/xml", "buffer": camt}],
    )
    page.click("text=Upload and book the statement")
    assert _step(page) == "Done"
    expect(page.locator("h2#imported")).to_be_visible()
    check_axe(page)
    page.once("dialog", lambda dialog: dialog.accept())  # data-confirm asks first
    page.click("text=Book as the operator's own money")
    expect(page.locator("p.notice.ok")).to_contain_text("operator's own money")
    check_axe(page)


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
@pytest.mark.parametrize("lang", ["de", "en"])
def test_every_close_and_portal_page_passes_axe(
    town: Town, server: ServerInfo, new_page, viewport, lang
):
    office = new_page(viewport, lang)
    log_in(office)
    runs = server.staff.call("GET", "/v1/settlement/runs")
    paths = ["/office/settlement", f"/office/settlement/preview?month={months_ago(1)[0]:%Y-%m}"]
    paths += [f"/office/settlement/runs/{run['run_id']}" for run in runs[:1]]
    for path in paths:
        office.goto(path)
        check_axe(office)
    merchant = new_page(viewport, lang)
    log_in(merchant, *town.user)
    for path in ("/portal/", "/portal/payments", f"/portal/payments?month={months_ago(1)[0]:%Y-%m}",
                 "/portal/statements", "/portal/details", "/portal/payments?month=x"):  # fmt: skip
        merchant.goto(path)
        check_axe(merchant)
