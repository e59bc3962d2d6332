"""Users and roles, one's own account, the audit log: through the pages of a real server.

The admin creates an office user and a merchant login, changes a role (it holds from the
user's next click), deactivates a user (their sessions end at once) and sets a forgotten
password; weak passwords are refused with the rules in words. Everyone changes their own
password (their other sessions end) and logs out everywhere. The audit log shows each of
these actions with who, role, address and result, a page at a time; only admins see it.
"""

from __future__ import annotations

import re

import pytest
import requests
import sqlalchemy as sa
from fixtures.server import ADMIN_PASSWORD, ADMIN_USER
from fixtures.web import PageClient

from hcard.errors import Code, HCardError, message
from hcard.i18n import ntext, text
from hcard.server.services import users

PASSWORD = "Sonnenschein über der Ruhr"
NEW_PASSWORD = "Regen am Henrichsplatz 7"


def _login(url: str, username: str, password: str, language: str = "de") -> PageClient:
    browser = PageClient(url, language=language)
    browser.login(username, password)
    return browser


def _logged_out(browser: PageClient, path: str = "/office/account") -> bool:
    answer = browser.get(path, allow_redirects=False)
    return answer.status_code == 303 and answer.headers["location"].startswith("/office/login")


def _create(office: PageClient, username: str, role: str, merchant_id: int | str = "", **form):
    data = {
        "username": username,
        "role": role,
        "merchant_id": str(merchant_id),
        "password": PASSWORD,
        "repeat": PASSWORD,
        **form,
    }
    return office.post("/office/users", data)


def _user_id(answer: requests.Response) -> int:
    match = re.search(r"/office/users/(\d+)\?done=created$", answer.url)
    assert match, (answer.status_code, answer.url, answer.text[:1000])
    return int(match.group(1))


def test_users_are_created_given_roles_deactivated_and_given_a_new_password(server_factory):
    server = server_factory()
    office = _login(server.url, ADMIN_USER, ADMIN_PASSWORD)
    merchant_id = server.staff.create_merchant("Buchhandlung am Markt")
    # an office user and a merchant login
    buero = _user_id(_create(office, "buero", "marketing"))
    shop = _user_id(_create(office, "buchladen", "merchant", merchant_id))
    listed = {u["username"]: u for u in server.staff.call("GET", "/v1/users")}
    assert (listed["buero"]["role"], listed["buero"]["merchant_id"]) == ("marketing", None)
    assert (listed["buchladen"]["role"], listed["buchladen"]["merchant_id"]) == (
        "merchant",
        merchant_id,
    )
    page = office.get("/office/users").text
    assert "buero" in page
    assert "Buchhandlung am Markt" in page
    marketing = _login(server.url, "buero", PASSWORD)
    assert marketing.get("/office/merchants").status_code == 200
    assert marketing.get("/office/users").status_code == 403
    assert marketing.get("/office/audit").status_code == 403
    assert marketing.post(f"/office/users/{shop}/deactivate").status_code == 403
    assert _login(server.url, "buchladen", PASSWORD).get("/office/account").status_code == 200
    # what cannot be: a merchant login without its merchant, a name twice
    refused = _create(office, "ohne-laden", "merchant")
    assert refused.status_code == 400
    assert 'id="new-merchant-error"' in refused.text
    taken = _create(office, "buero", "marketing")
    assert taken.status_code == 409
    assert message(Code.USERNAME_TAKEN, "de") in taken.text
    # a new role holds from the user's next click, in the session they have
    changed = office.post(f"/office/users/{buero}/role", {"role": "admin", "merchant_id": ""})
    assert changed.url.endswith("?done=role")
    assert marketing.get("/office/users").status_code == 200
    office.post(f"/office/users/{buero}/role", {"role": "marketing"})
    assert marketing.get("/office/users").status_code == 403
    # an admin neither takes away their own role nor deactivates themself
    me = next(u["id"] for u in server.staff.call("GET", "/v1/users") if u["username"] == "admin")
    for path, form in (
        (f"/office/users/{me}/role", {"role": "marketing"}),
        (f"/office/users/{me}/deactivate", {}),
    ):
        answer = office.post(path, form)
        assert answer.status_code == 409
        assert message(Code.OWN_ACCOUNT, "de") in answer.text
    # nor sets their own password without the current one (a session left open is not
    # enough): the form is not on their own page, and a crafted post is refused
    assert f"/office/users/{me}/password" not in office.get(f"/office/users/{me}").text
    own = {"password": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    refused_own = office.post(f"/office/users/{me}/password", own)
    assert refused_own.status_code == 409
    assert not _logged_out(office)
    assert not _logged_out(_login(server.url, ADMIN_USER, ADMIN_PASSWORD))
    # deactivated: logged out at once, and no new login
    deactivated = office.post(f"/office/users/{buero}/deactivate")
    assert deactivated.url.endswith("?done=deactivated")
    assert _logged_out(marketing, "/office/merchants")
    refused = PageClient(server.url).post(
        "/office/login", {"username": "buero", "password": PASSWORD}
    )
    assert refused.status_code == 401
    office.post(f"/office/users/{buero}/activate")
    marketing = _login(server.url, "buero", PASSWORD)
    # a forgotten password: the admin sets one, the old sessions end
    set_page = office.post(
        f"/office/users/{buero}/password", {"password": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    )
    assert set_page.url.endswith("?done=password")
    assert _logged_out(marketing)
    assert not _logged_out(_login(server.url, "buero", NEW_PASSWORD))
    assert not _logged_out(office)


@pytest.mark.parametrize("language", ["de", "en"])
def test_weak_passwords_are_refused_with_the_rules(live_server, language):
    office = _login(live_server.url, ADMIN_USER, ADMIN_PASSWORD, language)
    username = f"kasse{language}"
    weak_message = message(Code.PASSWORD_TOO_WEAK, language)
    for weak in (
        "kurz",
        "elf Zeichen",  # 11
        f"{username}-password",  # the user name does not count
        "Passwort1234",  # everybody's first try, in any case
        "HATTINGEN123",
        "123456789012",
        "aaaaaaaaaaaaaaaa",
    ):
        answer = _create(office, username, "marketing", password=weak, repeat=weak)
        assert answer.status_code == 400, weak
        assert f'<p class="error" id="new-password-error">{weak_message}</p>' in answer.text, weak
        assert weak not in answer.text  # a password is never shown again
        api = live_server.staff.request(
            "POST",
            "/v1/users",
            json={"username": username, "password": weak, "role": "marketing"},
        )
        assert (api.status_code, api.json()["code"]) == (400, "password_too_weak"), weak
    differ = _create(office, username, "marketing", repeat=PASSWORD + "!")
    assert differ.status_code == 400
    assert 'id="new-repeat-error"' in differ.text
    assert username not in {u["username"] for u in live_server.staff.call("GET", "/v1/users")}


def test_password_rules():
    users.check_password("admin", "admin-test-password")  # 14 characters besides "admin"
    users.check_password("eiscafe", "kugel-und-waffel")
    for username, password in (
        ("buero", "buero-password"),
        ("Laden", "laden laden laden laden"),
        ("x" * 12, "x" * 12),
        ("anna", "passwortpasswort"),
        ("anna", "x" * 1025),
    ):
        with pytest.raises(HCardError) as refused:
            users.check_password(username, password)
        assert refused.value.code in (Code.PASSWORD_TOO_WEAK, Code.MALFORMED_REQUEST), password


def _account_user(server, username: str) -> None:
    server.staff.call(
        "POST", "/v1/users", json={"username": username, "password": PASSWORD, "role": "marketing"}
    )


def test_my_password_change_ends_my_other_sessions(server_factory):
    server = server_factory()
    _account_user(server, "anna")
    here, elsewhere = _login(server.url, "anna", PASSWORD), _login(server.url, "anna", PASSWORD)
    page = here.get("/office/account")
    assert page.status_code == 200
    assert text("This session ends", "de") in page.text
    browsers = ntext(
        "in {count} browser (this one)", "in {count} browsers (this one included)", 2, "de"
    )
    assert browsers in page.text
    wrong = here.post(
        "/office/account/password",
        {"current": "not my password", "password": NEW_PASSWORD, "repeat": NEW_PASSWORD},
    )
    assert wrong.status_code == 400
    assert 'id="e-current"' in wrong.text
    weak = here.post(
        "/office/account/password",
        {"current": PASSWORD, "password": "anna12345678", "repeat": "anna12345678"},
    )
    assert weak.status_code == 400
    assert message(Code.PASSWORD_TOO_WEAK, "de") in weak.text
    changed = here.post(
        "/office/account/password",
        {"current": PASSWORD, "password": NEW_PASSWORD, "repeat": NEW_PASSWORD},
    )
    assert changed.url.endswith("/office/account?done=password")
    assert not _logged_out(here)
    assert _logged_out(elsewhere)
    with pytest.raises(AssertionError):
        _login(server.url, "anna", PASSWORD)
    _login(server.url, "anna", NEW_PASSWORD)


def test_logout_everywhere_ends_every_session_this_one_too(live_server):
    _account_user(live_server, "ueberall")
    here, elsewhere = (_login(live_server.url, "ueberall", PASSWORD) for _ in range(2))
    answer = here.post("/office/account/logout-everywhere")
    assert answer.url.endswith("/office/login?done=logged-out")
    assert text("You are logged out.", "de") in answer.text
    assert _logged_out(here)
    assert _logged_out(elsewhere)


def _row(html: str, action: str, who: str) -> str:
    """The newest row of `who` doing `action`."""
    for row in html.split("<tr>")[1:]:
        if f'<th scope="row">{action}</th>' in row and f"<td>{who}</td>" in row:
            return row.split("</tr>", 1)[0]
    raise AssertionError(f"no row of {who}: {action}")


def test_the_audit_log_shows_who_did_what_from_where(server_factory):
    server = server_factory()
    office = _login(server.url, ADMIN_USER, ADMIN_PASSWORD)
    _account_user(server, "mara")
    PageClient(server.url).post("/office/login", {"username": "mallory", "password": "guess"})
    merchant_id = server.staff.create_merchant("Blumen Berger")
    marketing = _login(server.url, "mara", PASSWORD)
    marketing.post(f"/office/merchants/{merchant_id}/terminals", {"name": "Kasse"})
    page = office.get("/office/audit")
    assert page.status_code == 200
    enrol = _row(page.text, text("Enrol terminal", "de"), "mara")
    assert f"<td>{text('Office', 'de')}</td>" in enrol
    assert "<td>127.0.0.1</td>" in enrol
    assert f'<a href="/office/merchants/{merchant_id}">' in enrol
    assert text("Done", "de") in enrol
    failed = _row(page.text, text("Log in", "de"), "mallory")
    assert text("Refused", "de") in failed
    assert "401" in failed
    added = _row(page.text, text("Add merchant", "de"), "admin")  # through the JSON API
    assert f"<td>{text('Admin', 'de')}</td>" in added
    # a page at a time: the older entries behind a link
    for _ in range(105):
        office.post("/office/users/999999/role", {"role": "nonsense"})
    first = office.get("/office/audit").text
    older = re.search(r'href="/office/audit\?before_id=(\d+)"', first)
    assert older
    assert first.count("<tr>") == 100 + 1  # the head's row too
    second = office.get(f"/office/audit?before_id={older.group(1)}").text
    assert "mallory" in second
    assert "mara" in second
    assert "mallory" not in first
    assert marketing.get("/office/audit").status_code == 403


def test_a_login_name_with_control_characters_is_logged_printable(server_factory):
    """A failed login is logged with the name that was typed, without NUL (PostgreSQL refuses
    it in text: the row would be lost with an error in the log) or other control characters."""
    server = server_factory(engine="postgres")
    answer = PageClient(server.url).post(
        "/office/login", {"username": "adm\x00in\x1b[2J", "password": "not the password"}
    )
    assert answer.status_code == 401
    assert "Traceback" not in server.log()
    engine = sa.create_engine(server.database_url)
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT username FROM audit_log")).scalars().all()
    engine.dispose()
    assert "admin[2J" in names
