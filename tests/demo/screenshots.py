"""`make screenshots`: every main page of the office, the portal and the public pages, as a
newcomer sees them in the demo, at 1280×800 (the office PC) and 390×844 (a phone), into
`docs/screenshots/` (shown in the README).

    PYTHONPATH=tests python -m demo.screenshots [--out docs/screenshots] [--lang de]

It seeds a demo server like `make demo ARGS=--server-only` (in a folder of its own) and
drives Debian's Chromium through Playwright (tests/fixtures/browser.py), logging in through
the forms as the demo's admin and merchant.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from fixtures.browser import CHROMIUM, CHROMIUM_ARGS, LOCALES, VIEWPORTS
from playwright.sync_api import Page, sync_playwright

from demo.system import ADMIN_PASSWORD, ADMIN_USER, MERCHANT_PASSWORD, MERCHANT_USER, Demo

#: (file name, path) per role; `{card}`, `{code}`, `{run}`, `{merchant}` are filled in
PUBLIC = (
    ("start", "/"),
    ("acceptance", "/akzeptanzstellen"),
    ("balance", "/c/{card}?k={code}"),
    ("login", "/office/login"),
)
OFFICE = (
    ("office-overview", "/office/"),
    ("office-alerts", "/office/alerts"),
    ("office-card", "/office/cards/{card}"),
    ("office-merchants", "/office/merchants"),
    ("office-merchant", "/office/merchants/{merchant}"),
    ("office-terminals", "/office/terminals"),
    ("office-close", "/office/settlement"),
    ("office-close-run", "/office/settlement/runs/{run}"),
    ("office-users", "/office/users"),
    ("office-audit", "/office/audit"),
)
PORTAL = (
    ("portal-overview", "/portal/"),
    ("portal-payments", "/portal/payments?month={month}"),
    ("portal-statements", "/portal/statements"),
)


def _log_in(page: Page, username: str, password: str) -> None:
    page.goto("/office/login")
    page.fill("#f-username", username)
    page.fill("#f-password", password)
    page.locator("form[action='/office/login'] button").click()
    page.wait_for_load_state()


def _shoot(
    page: Page, pages: tuple[tuple[str, str], ...], values: dict[str, str], out: Path
) -> None:
    size = page.viewport_size or {"width": 0}
    suffix = "desktop" if size["width"] >= 1000 else "phone"
    for name, path in pages:
        page.goto(path.format(**values))
        page.wait_for_load_state("networkidle")
        page.screenshot(path=out / f"{name}-{suffix}.png")
        print(f"  {name}-{suffix}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="PYTHONPATH=tests python -m demo.screenshots")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"), help="folder")
    parser.add_argument("--lang", choices=sorted(LOCALES), default="de", help="page language")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="hcard-screenshots-"))
    for sub in ("server", "cards", "terminal"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    demo = Demo(root, 0)
    try:
        demo.seed_server()
        demo.register_cards()
        assert demo.staff is not None
        assert demo.last_month is not None
        card = demo.cards[0]
        code = demo.staff.request("POST", f"/v1/cards/{card}/check-code", {})["check_code"]
        merchants = demo.staff.request("GET", "/v1/merchants")
        values = {
            "card": card,
            "code": str(code),
            "run": str(demo.last_month.run_id),
            "merchant": str(merchants[0]["id"]),
            "month": demo.last_month.month,
        }
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            for viewport in VIEWPORTS.values():
                for pages, login in (
                    (PUBLIC, None),
                    (OFFICE, (ADMIN_USER, ADMIN_PASSWORD)),
                    (PORTAL, (MERCHANT_USER, MERCHANT_PASSWORD)),
                ):
                    context = browser.new_context(
                        base_url=demo.url, viewport=viewport, locale=LOCALES[args.lang]
                    )
                    page = context.new_page()
                    if login:
                        _log_in(page, *login)
                    _shoot(page, pages, values, args.out)
                    context.close()
            browser.close()
    finally:
        demo.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
