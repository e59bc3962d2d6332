"""Logging in and out of the office through its form, on a real server over HTTP.

What the login form must do for a person: the right password opens the office (or the
portal) and the page asked for; a wrong one says so in their language; repeated failures
lock the name for a while with a clear message; a form from elsewhere (no CSRF token) is
refused; logging out ends the session on the server. And every page carries the strict
headers (CSP and friends) and no page is reachable without a session.
"""

from __future__ import annotations

import re
import warnings

import pytest
from fixtures.server import ADMIN_PASSWORD, ADMIN_USER
from fixtures.web import PageClient, token

from hcard.server.app import create_app
from hcard.server.context import Context
from hcard.server.settings import Settings
from hcard.server.web import security

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _form_login(browser: PageClient, url: str, next_path: str, page_path: str):
    page = browser.get(page_path)
    return browser.http.post(
        url + "/office/login",
        data={
            "csrf": token(page.text),
            "username": ADMIN_USER,
            "password": ADMIN_PASSWORD,
            "next": next_path,
        },
        allow_redirects=False,
        timeout=30,
    )


def test_a_page_without_a_session_goes_to_the_login_and_back(live_server):
    browser = PageClient(live_server.url)
    first = browser.get("/office/alerts", allow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/office/login?next=/office/alerts"
    answer = _form_login(browser, live_server.url, "/office/alerts", first.headers["location"])
    assert answer.status_code == 303
    assert answer.headers["location"] == "/office/alerts"
    set_cookie = answer.headers["set-cookie"].lower()
    assert "hcard_session=" in set_cookie
    assert "httponly" in set_cookie
    assert "samesite=strict" in set_cookie


@pytest.mark.parametrize(
    ("language", "expected"),
    [("de", "Benutzername oder Passwort"), ("en", "Wrong user name or password.")],
)
def test_a_wrong_password_is_said_in_the_visitors_language(live_server, language, expected):
    browser = PageClient(live_server.url, language=language)
    answer = browser.post("/office/login", {"username": ADMIN_USER, "password": "not it at all"})
    assert answer.status_code == 401
    assert expected in answer.text
    assert "hcard_session" not in browser.http.cookies


def test_the_csrf_cookie_survives_a_link_from_elsewhere(live_server):
    """SameSite=Lax: a browser arriving from another site's link sends it, so the page keeps
    it and the forms open in other tabs keep working (it is no credential: Strict is for
    the session cookie)."""
    first = PageClient(live_server.url).get("/office/login")
    set_cookie = first.headers["set-cookie"].lower()
    assert set_cookie.startswith("hcard_csrf=")
    assert "samesite=lax" in set_cookie
    assert "httponly" in set_cookie


def test_a_login_form_from_elsewhere_is_refused(live_server):
    browser = PageClient(live_server.url)
    browser.get("/office/login")  # has a CSRF cookie, but the form carries no token of it
    answer = browser.http.post(
        live_server.url + "/office/login",
        data={"username": ADMIN_USER, "password": ADMIN_PASSWORD, "csrf": "0" * 64},
        timeout=30,
    )
    assert answer.status_code == 403
    assert "hcard_session" not in browser.http.cookies


def test_next_never_leaves_the_site(live_server):
    browser = PageClient(live_server.url)
    answer = _form_login(browser, live_server.url, "//evil.example/", "/office/login")
    assert answer.headers["location"] == "/office/"


def test_repeated_failures_lock_the_name_with_a_clear_message(server_factory):
    server = server_factory(env={"HCARD_THROTTLE_LOGIN_USER": "3 per 10 minutes"})
    browser = PageClient(server.url)
    for _ in range(3):
        wrong = browser.post("/office/login", {"username": ADMIN_USER, "password": "x" * 12})
        assert wrong.status_code == 401
    locked = browser.post("/office/login", {"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert "Zu viele" in locked.text
    assert re.search(r"\d+ min", locked.text)
    assert "hcard_session" not in browser.http.cookies


def test_logout_ends_the_session_on_the_server(live_server):
    browser = PageClient(live_server.url)
    browser.login(ADMIN_USER, ADMIN_PASSWORD)
    session = browser.http.cookies["hcard_session"]
    out = browser.post("/office/logout", allow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"].startswith("/office/login")
    # the old cookie, kept by an attacker, opens nothing any more (page and API alike)
    other = PageClient(live_server.url)
    other.http.cookies.set("hcard_session", session)
    assert other.get("/office/alerts", allow_redirects=False).status_code == 303
    assert other.get("/v1/me").status_code == 401


def test_logging_in_again_ends_the_session_the_browser_had(live_server):
    """A login at a shared desk: whoever was logged in before is logged out on the server,
    not only in this browser's cookie jar."""
    browser = PageClient(live_server.url)
    browser.login(ADMIN_USER, ADMIN_PASSWORD)
    before = browser.http.cookies["hcard_session"]
    browser.login(ADMIN_USER, ADMIN_PASSWORD)
    assert browser.http.cookies["hcard_session"] != before
    assert browser.get("/v1/me").status_code == 200
    other = PageClient(live_server.url)
    other.http.cookies.set("hcard_session", before)
    assert other.get("/v1/me").status_code == 401


def test_logout_needs_the_form_token(live_server):
    browser = PageClient(live_server.url)
    browser.login(ADMIN_USER, ADMIN_PASSWORD)
    refused = browser.http.post(live_server.url + "/office/logout", data={}, timeout=30)
    assert refused.status_code == 403
    assert browser.get("/v1/me").status_code == 200


@pytest.mark.parametrize("path", ["/office/login", "/nowhere", "/v1/health"])
def test_every_answer_has_the_strict_headers(live_server, path):
    answer = PageClient(live_server.url).get(path)
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY"


def test_a_page_that_fails_has_the_strict_headers_too(tmp_path):
    """A bug's 500 page is answered outside the headers middleware: it must carry them itself."""
    ctx = Context.open(Settings.build(data_dir=tmp_path), create_key=True)
    app = create_app(ctx)

    @app.get("/office/broken")
    def broken() -> None:
        raise RuntimeError("a bug")

    try:
        answer = TestClient(app, raise_server_exceptions=False).get("/office/broken")
    finally:
        ctx.engine.dispose()
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["Content-Security-Policy"] == security.CONTENT_SECURITY_POLICY
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY"


def test_an_unknown_page_is_a_page_and_an_unknown_api_path_is_json(live_server):
    browser = PageClient(live_server.url, language="en")
    page = browser.get("/nowhere")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Not found." in page.text
    api = browser.get("/v1/nowhere")
    assert api.status_code == 404
    assert api.json()["code"] == "not_found"


def test_the_language_switch_stays_on_the_site(live_server):
    browser = PageClient(live_server.url)
    answer = browser.get("/lang/en?next=https://evil.example/", allow_redirects=False)
    assert answer.headers["location"] == "/"
    assert "hcard_lang=en" in answer.headers["set-cookie"]
    page = browser.get("/office/login")
    assert '<html lang="en">' in page.text
