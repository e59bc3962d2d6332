"""The public pages in Chromium: what a cardholder and a visitor of the town's website do.

The card's QR code (its URL with `?k=`) shows the balance; so do number and code typed on
the start page; wrong codes are stopped after a few tries with a page that says why; the
acceptance list and its JSON show exactly the listed, active merchants, and its filter
works without JavaScript. Every public page passes axe-core's WCAG 2.1 AA rules in German
and English on a phone and a desktop.
"""

from __future__ import annotations

import pytest
from fixtures.browser import check_axe, log_in
from fixtures.public import add_place
from fixtures.server import ServerInfo
from playwright.sync_api import Page, expect

from hcard import cardnumber
from hcard.i18n import text
from hcard.server.web.security import CONTENT_SECURITY_POLICY

#: three wrong codes per card, then the card's page waits (the right code too)
WRONG_CODES_ALLOWED = 3
LISTED = ["Apotheke am Markt", "Bäckerei Sonne", "Eiscafé Venezia"]


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"HCARD_THROTTLE_BALANCE_CARD": f"{WRONG_CODES_ALLOWED} per 10 minutes"}


@pytest.fixture(scope="module")
def places(server: ServerInfo) -> list[str]:
    """Three listed places, one that did not want to be listed and one that closed."""
    add_place(server, "Eiscafé Venezia", category="restaurant", opening_hours="täglich 11–22")
    add_place(
        server,
        "Bäckerei Sonne",
        category="food",
        street="Große Weilstraße",
        building_number="12a",
        opening_hours="Mo–Fr 7–18\nSa 7–13",
    )
    add_place(server, "Apotheke am Markt", category="health")
    add_place(server, "Geheimladen", category="retail", listed=False)
    add_place(server, "Altes Kino", category="culture", active=False)
    return LISTED


@pytest.fixture(scope="module")
def card(server: ServerInfo) -> tuple[str, str]:
    """(number, check code) of a card with 12,34 € that paid 2,50 € at the Eiscafé."""
    merchant_id = server.staff.create_merchant("Eiscafé Venezia")
    till = server.terminal(merchant_id)
    number, uid = server.new_card(1_484)
    assert till.authorise(till.payment(number, uid, 250)).json()["outcome"] == "approved"
    return number, server.staff.check_code(number)


def _said(msgid: str, lang: str) -> str:
    return text(msgid, lang)


def test_the_cards_qr_code_shows_the_balance(page: Page, card):
    number, code = card
    answer = page.goto(f"/c/{number}?k={code}")
    assert answer is not None
    assert answer.status == 200
    expect(page.locator("#balance .figure")).to_have_text("12,34\u00a0€")
    expect(page.locator("main")).to_contain_text(cardnumber.pretty(number))
    expect(page.locator("main table")).to_contain_text("Eiscafé Venezia")
    expect(page.locator("main table")).to_contain_text("-2,50\u00a0€")
    # the language switch keeps the balance on the screen
    page.click("header .tools a[hreflang=en]")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#balance .figure")).to_have_text("€12.34")


@pytest.mark.parametrize("lang", ["en"])
def test_number_and_code_typed_on_the_start_page(page: Page, card):
    number, code = card
    page.goto("/")
    page.fill("#f-number", "1234 5678")
    page.fill("#f-k", code)
    page.click("main form button[type=submit]")
    expect(page.locator("#e-number")).to_have_text(
        "This is not a card number. Please check the number on the card."
    )
    page.fill("#f-number", cardnumber.pretty(number))
    page.fill("#f-k", code.lower().replace("-", " "))
    page.click("main form button[type=submit]")
    page.wait_for_url(f"**/c/{number}?k=*")
    expect(page.locator("#balance .figure")).to_have_text("€12.34")


@pytest.mark.parametrize("lang", ["de", "en"])
def test_wrong_codes_are_stopped_with_a_clear_page(server: ServerInfo, page: Page, lang):
    number, _uid = server.new_card(500)
    right = server.staff.check_code(number)
    page.goto(f"/c/{number}")
    for _ in range(WRONG_CODES_ALLOWED):
        page.fill("#f-k", "AAAA-AAAA" if right != "AAAA-AAAA" else "BBBB-BBBB")
        with page.expect_response(lambda r: f"/c/{number}?k=" in r.url) as answer:
            page.click("main form button[type=submit]")
        assert answer.value.status == 403
        expect(page.locator("#e-k")).to_have_text(_said("The check code is not right.", lang))
    check_axe(page)  # the form with its error
    page.fill("#f-k", right)  # too late: even the right code waits now
    with page.expect_response(lambda r: f"/c/{number}?k=" in r.url) as answer:
        page.click("main form button[type=submit]")
    assert answer.value.status == 429
    assert 0 < int(answer.value.headers["retry-after"]) <= 600
    expect(page.locator("main [role=alert]")).to_contain_text(
        _said("Too many wrong check codes.", lang)
    )
    expect(page.locator("#balance")).to_have_count(0)
    check_axe(page)


def test_the_acceptance_list_shows_exactly_the_listed_places(page: Page, places):
    page.goto("/akzeptanzstellen")
    expect(page.locator("main article h3")).to_have_text(
        ["Eiscafé Venezia", "Bäckerei Sonne", "Apotheke am Markt"]  # by category
    )
    bakery = page.locator("article", has_text="Bäckerei Sonne")
    link = bakery.get_by_role("link")
    expect(link).to_have_text("Große Weilstraße 12a, 45525 Hattingen")
    expect(link).to_have_attribute(
        "href",
        "https://www.openstreetmap.org/search?query=Gro%C3%9Fe+Weilstra%C3%9Fe+12a%2C+45525+Hattingen",
    )
    expect(link).to_have_attribute("rel", "noopener external")
    expect(bakery).to_contain_text("Sa 7–13")
    # the filter works without JavaScript: a GET form, and a list of links
    page.select_option("#f-category", "food")
    page.click("main form.filter button[type=submit]")
    page.wait_for_url("**/akzeptanzstellen?category=food")
    expect(page.locator("main article h3")).to_have_text(["Bäckerei Sonne"])
    page.locator("main nav a").first.click()
    expect(page.locator("main article h3")).to_have_count(len(places))
    # the same list as JSON
    answer = page.request.get("/v1/acceptance-points")
    assert answer.headers["access-control-allow-origin"] == "*"
    assert [p["name"] for p in answer.json()["acceptance_points"]] == places
    food = page.request.get("/v1/acceptance-points?category=food").json()
    assert [p["name"] for p in food["acceptance_points"]] == ["Bäckerei Sonne"]


@pytest.mark.parametrize("viewport", ["phone", "desktop"])
@pytest.mark.parametrize("lang", ["de", "en"])
def test_every_public_page_passes_axe(server: ServerInfo, page: Page, places, card, lang):
    number, code = card
    paths = [
        "/",
        "/c?number=1234&k=",  # the start page with its error
        "/akzeptanzstellen",
        "/akzeptanzstellen?category=fashion",  # none there yet
        f"/c/{number}?k={code}",
        f"/c/{number}",
        "/c/1234",  # not a card number
        "/office/login",
    ]
    failures = []
    for path in paths:
        page.goto(path)
        expect(page.locator("html")).to_have_attribute("lang", lang)
        try:
            check_axe(page)
        except AssertionError as failure:
            failures.append(str(failure))
    assert not failures, "\n\n".join(failures)


def test_log_in_goes_through_the_form(page: Page):
    log_in(page, next_path="/office/account")
    assert page.url.endswith("/office/account")
    assert "hcard_session" in {cookie["name"] for cookie in page.context.cookies()}


def test_check_axe_names_what_is_wrong(server: ServerInfo, page: Page):
    """The checker itself: a page with an unlabelled field, an inline style the CSP
    refuses and a failing script does not pass, and the failure says where and why."""
    bad = (
        '<!doctype html><html lang="en"><head><title>Bad</title></head><body><main>'
        '<h1 style="color: red">Bad</h1><input name="q">'
        "</main></body></html>"
    )
    page.route(
        "**/bad-page",
        lambda route: route.fulfill(
            status=200,
            content_type="text/html",
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
            body=bad,
        ),
    )
    page.goto("/bad-page")
    page.evaluate("setTimeout(() => { throw new Error('broken on purpose'); })")
    page.wait_for_timeout(100)
    with pytest.raises(AssertionError) as failed:
        check_axe(page)
    report = str(failed.value)
    assert "/bad-page at 1280×800" in report
    assert "- label (critical)" in report
    assert "input" in report
    assert "CSP: " in report
    assert "script error: broken on purpose" in report
