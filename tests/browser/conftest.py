"""Browser tests: the real server, driven by Debian's Chromium through Playwright.

Chromium is `/usr/bin/chromium` (tests/setup/system-packages.sh installs it; Playwright's own
browser download cannot work here, so `playwright install` is never run). One browser for
the whole run, one server per test module, a new browser context (cookies, viewport,
language) per test. Every test in this folder gets the `browser` marker (`-m "not browser"`
leaves them out); they are skipped, with the reason, only where Chromium is missing and
whoever runs them is not root (CI is root and installs it).

Writing one:

    from fixtures.browser import check_axe, log_in

    @pytest.mark.parametrize("viewport", ["phone", "desktop"])
    @pytest.mark.parametrize("lang", ["de", "en"])
    def test_the_cards_page(server, page):
        server.staff.create_merchant("Eiscafé")       # the JSON API, as in every test
        log_in(page)                                   # admin; or log_in(page, user, pw)
        page.goto("/office/cards")                     # relative to the server
        check_axe(page)                                # WCAG 2.1 AA, CSP, script errors

Fixtures:
- `server` (module): a fresh SQLite `ServerInfo` (tests/fixtures/server.py: `url`, `staff`,
  `terminal()`, `new_card()`); a module overrides `server_env` (module fixture, a dict of
  `HCARD_*` settings) to start it with other settings, e.g. lower throttling limits.
- `page`: a Page in a new context at `viewport` ("phone" 390×844 or "desktop" 1280×800,
  default desktop) in `lang` ("de" → de-DE or "en" → en-GB, default de), with the server
  as its base URL. Parametrize `viewport` and `lang` by name to cover both.
- `new_page(viewport="desktop", lang="de")`: another page in another new context (a second
  person: a merchant beside the office), closed after the test.
- `browser` (session): the one Chromium.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fixtures.browser import CHROMIUM, CHROMIUM_ARGS, LOCALES, VIEWPORTS, watch
from fixtures.server import ServerInfo, start_server
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

HERE = Path(__file__).parent
#: how long a step may wait for the page (Playwright's default is 30 s)
STEP_TIMEOUT_MS = 10_000


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this folder's tests `browser`; skip them where Chromium cannot be had."""
    missing = not CHROMIUM.exists() and os.geteuid() != 0
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is missing: sudo apt-get install chromium "
        "(tests/setup/system-packages.sh installs it when run as root)"
    )
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)
            if missing:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    """Settings of the module's server (`HCARD_*`); override it in a module to change them."""
    return {}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[ServerInfo]:
    started = start_server(tmp_path_factory.mktemp("browser-server"), env=server_env)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def viewport() -> str:
    return "desktop"


@pytest.fixture
def lang() -> str:
    return "de"


@pytest.fixture
def new_page(browser: Browser, server: ServerInfo) -> Iterator[Callable[..., Page]]:
    """`new_page(viewport="desktop", lang="de")`: a page in a new context of its own."""
    contexts: list[BrowserContext] = []

    def make(viewport: str = "desktop", lang: str = "de") -> Page:
        context = browser.new_context(
            viewport=VIEWPORTS[viewport],
            locale=LOCALES[lang],
            base_url=server.url,
        )
        context.set_default_timeout(STEP_TIMEOUT_MS)
        contexts.append(context)
        return watch(context.new_page())

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Page], viewport: str, lang: str) -> Page:
    return new_page(viewport, lang)
