"""The balance page of an NTAG 424 DNA card's link in Chromium, as a phone opens it after a tap:
the balance once; a reload shows that the link is used up; the language switch asks for a
new tap. Each of these pages passes axe-core's WCAG 2.1 AA rules (and the strict CSP)."""

from __future__ import annotations

import pytest
from fixtures.browser import check_axe
from fixtures.server import ServerInfo
from fixtures.sun import TAP, link
from playwright.sync_api import Page, expect

from hcard import ntag424
from hcard.errors import Code, message
from hcard.i18n import text


@pytest.mark.parametrize("viewport", ["phone"])
@pytest.mark.parametrize("lang", ["de", "en"])
def test_a_tap_shows_the_balance_once(server: ServerInfo, page: Page, lang):
    _number, uid = server.new_card(1_234)
    p, m = link(uid, 1)
    answer = page.goto(f"/k?p={p}&m={m}")
    assert answer is not None
    assert answer.status == 200
    balance = "12,34\u00a0€" if lang == "de" else "€12.34"
    expect(page.locator("#balance .figure")).to_have_text(balance)
    check_axe(page)
    answer = page.reload()
    assert answer is not None
    assert answer.status == 410
    expect(page.locator("main [role=status]")).to_have_text(message(Code.SUN_STALE, lang))
    expect(page.locator("#balance")).to_have_count(0)
    check_axe(page)
    page.click("header .tools a[hreflang]")
    other = "en" if lang == "de" else "de"
    expect(page.locator("html")).to_have_attribute("lang", other)
    expect(page.locator("main [role=status]")).to_have_text(text(TAP, other))
    check_axe(page)
    answer = page.goto(f"/k?p={p}&m={ntag424.mirror_ascii(bytes(8)).decode()}")
    assert answer is not None
    assert answer.status == 400
    expect(page.locator("main [role=alert]")).to_have_text(message(Code.SUN_INVALID, other))
    check_axe(page)
