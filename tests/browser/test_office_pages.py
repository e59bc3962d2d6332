"""The office in Chromium: what the marketing office does in a day, through the pages only.

Log in; add a merchant and enrol its till, reading the one-time code off the page (a real
till enrols with it); find a card, top it up, block it, unblock it, replace it with a new
card (the balance moves); a merchant who types another merchant's addresses sees nothing of
theirs. And every office page passes axe-core's WCAG 2.1 AA rules in German and English, on a
phone and on the office PC. (The monthly close: test_settlement_portal_pages.py; the public
pages: test_public_pages.py.)
"""

from __future__ import annotations

import re

import pytest
from fixtures.browser import check_axe, log_in
from fixtures.server import ServerInfo, enrol
from playwright.sync_api import Page, expect

MERCHANT_PASSWORD = "ein langes Händlerpasswort"


def _confirming(page: Page) -> Page:
    """Answer the pages' "are you sure?" questions with yes, as the office worker would."""
    page.on("dialog", lambda dialog: dialog.accept())
    return page


def test_a_merchant_and_its_till_are_added_through_the_pages(server: ServerInfo, page: Page):
    log_in(page)
    page.goto("/office/merchants/new")
    page.fill("#f-name", "Blumen Hoffmann")
    page.fill("#f-holder_name", "Hoffmann Blumen GmbH")
    page.fill("#f-iban", "DE89 3704 0044 0532 0130 00")
    page.fill("#f-street", "Heggerstraße")
    page.fill("#f-building_number", "12")
    page.fill("#f-postcode", "45525")
    page.fill("#f-town", "Hattingen")
    page.fill("#f-fee", "1,5")
    page.check("#f-listed")
    page.select_option("#f-category", "retail")
    page.fill("#f-opening_hours", "Mo–Fr 9–18, Sa 9–14")
    page.get_by_role("button", name=re.compile("Händler hinzufügen|Add merchant")).click()
    expect(page.locator("h1")).to_contain_text("Blumen Hoffmann")
    merchant_url = page.url

    page.fill("#f-name", "Kasse Laden")
    page.locator("form[action$='/terminals'] button").click()
    code = page.locator("#code").inner_text().strip()
    assert re.fullmatch(r"[0-9A-Z-]{6,}", code), code
    till = enrol(server.url, code, "Kasse Laden")  # the till on the counter takes the code
    assert till.snapshot().status_code == 200
    page.goto("/office/terminals")
    expect(page.locator("main")).to_contain_text("Kasse Laden")
    page.goto(merchant_url)
    expect(page.locator("main")).to_contain_text("Kasse Laden")


def test_a_card_is_found_topped_up_blocked_and_replaced(server: ServerInfo, page: Page):
    _confirming(page)
    number, _uid = server.new_card(500)
    new_number, _ = server.new_card(0)
    log_in(page)
    page.goto("/office/cards")
    page.fill("#f-q", f"{number[:4]} {number[4:8]} {number[8:12]} {number[12:]}")
    page.locator("form[role=search] button").click()
    expect(page).to_have_url(re.compile(f"/office/cards/{number}"))

    page.fill("#f-amount", "12,50")
    page.locator(f"form[action='/office/cards/{number}/topup'] button").click()
    expect(page.locator("main")).to_contain_text("17,50")
    assert server.staff.card(number)["balance_cents"] == 1_750

    page.locator(f"form[action='/office/cards/{number}/block'] button").click()
    expect(page.locator(f"form[action='/office/cards/{number}/unblock']")).to_be_visible()
    assert server.staff.card(number)["blocked"] is True
    page.locator(f"form[action='/office/cards/{number}/unblock'] button").click()
    expect(page.locator(f"form[action='/office/cards/{number}/block']")).to_be_visible()
    assert server.staff.card(number)["blocked"] is False

    page.fill("#f-new_number", new_number)
    page.locator(f"form[action='/office/cards/{number}/replace'] button").click()
    assert server.staff.card(new_number)["balance_cents"] == 1_750
    old = server.staff.card(number)
    assert old["balance_cents"] == 0
    assert old["blocked"] is True


def test_a_bad_amount_is_said_next_to_the_field(server: ServerInfo, page: Page):
    number, _uid = server.new_card(0)
    log_in(page)
    page.goto(f"/office/cards/{number}")
    page.fill("#f-amount", "zwölf")
    page.locator(f"form[action='/office/cards/{number}/topup'] button").click()
    expect(page.locator("#e-amount")).to_be_visible()
    assert server.staff.card(number)["balance_cents"] == 0
    check_axe(page)


def test_a_merchant_sees_nothing_of_another_merchant(server: ServerInfo, new_page):
    own = server.staff.create_merchant("Eigener Laden")
    other = server.staff.create_merchant("Fremder Laden")
    server.staff.call(
        "POST",
        "/v1/users",
        json={"username": "eigen", "password": MERCHANT_PASSWORD, "role": "merchant",
              "merchant_id": own},
    )  # fmt: skip
    page = new_page()
    log_in(page, "eigen", MERCHANT_PASSWORD)
    expect(page).to_have_url(re.compile("/portal/"))
    for path in (
        f"/office/merchants/{other}",
        "/office/cards",
        "/office/",
        f"/v1/merchants/{other}",
        f"/v1/merchants/{other}/payments",
        f"/v1/merchants/{other}/statements",
        "/portal/statements/1.pdf",
    ):
        answer = page.goto(path)
        assert answer is not None
        assert answer.status in (403, 404), (path, answer.status)
        assert "Fremder Laden" not in page.content()


OFFICE_PAGES = (
    "/office/",
    "/office/alerts",
    "/office/cards",
    "/office/cards/{card}",
    "/office/merchants",
    "/office/merchants/new",
    "/office/merchants/{merchant}",
    "/office/terminals",
    "/office/users",
    "/office/users/1",
    "/office/audit",
    "/office/account",
    "/office/settlement",
)


@pytest.fixture(scope="module")
def filled(server: ServerInfo) -> dict[str, str]:
    """Something on every page: a merchant with a till, a card with movements, an alert."""
    merchant = server.staff.create_merchant("Eiscafé Venezia")
    till = server.terminal(merchant)
    number, _uid = server.new_card(2_000)
    server.staff.block(number)
    server.staff.unblock(number)
    server.staff.revoke_terminal(server.staff.terminals(merchant)[0]["id"])
    till.snapshot()  # a revoked till calling: an open alert
    return {"card": number, "merchant": str(merchant)}


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
@pytest.mark.parametrize("lang", ["de", "en"])
def test_every_office_page_passes_axe(page: Page, filled, lang, viewport):
    log_in(page)
    problems = []
    for path in OFFICE_PAGES:
        page.goto(path.format(**filled))
        try:
            check_axe(page)
        except AssertionError as problem:
            problems.append(str(problem))
    assert not problems, "\n\n".join(problems)
