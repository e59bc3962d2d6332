"""The alerts page on a real server: plain words per alert, links to the card or terminal,
handled by the logged-in user with a note, the history; a revoked terminal that calls
again after its alert was handled opens a new alert."""

from __future__ import annotations

import html
import re
import secrets

from fixtures.server import ADMIN_PASSWORD, ADMIN_USER, ServerInfo
from fixtures.web import PageClient

from hcard.errors import Code, message
from hcard.server.vocabulary import AlertKind
from hcard.server.web.pages.alerts import EXPLANATIONS


def _overdraw_alert(server: ServerInfo) -> tuple[str, int]:
    """A card taken below zero by a confirmed correction: (card number, its alert's id)."""
    number, _uid = server.new_card(1_000)
    server.staff.call(
        "POST",
        "/v1/ledger/corrections",
        json={
            "card_number": number,
            "amount_cents": -2_000,
            "reason": "alert test",
            "allow_below_zero": True,
        },
    )
    alert = next(a for a in server.staff.alerts() if a["card"] == number)
    assert alert["kind"] == AlertKind.OVERDRAW
    return number, int(alert["id"])


def _open_ids(page: str) -> list[int]:
    """The ids of the open alerts' forms, in the order shown."""
    return [int(i) for i in re.findall(r'action="/office/alerts/(\d+)/handle"', page)]


def _history(page: str) -> str:
    return html.unescape(page.split('id="handled"', 1)[1])


def test_handle_an_alert_with_a_note(live_server):
    number, alert_id = _overdraw_alert(live_server)
    browser = PageClient(live_server.url, language="en")
    browser.login(ADMIN_USER, ADMIN_PASSWORD)
    page = browser.get("/office/alerts")
    assert page.status_code == 200
    assert alert_id in _open_ids(page.text)
    explained = EXPLANATIONS[AlertKind.OVERDRAW]
    text = html.unescape(page.text)
    assert explained.title in text
    assert explained.meaning in text
    assert explained.todo in text
    assert f'href="/office/cards/{number}"' in page.text

    # a note too short: refused, shown next to the field, the typed note kept
    short = browser.post(f"/office/alerts/{alert_id}/handle", {"note": " ok "})
    assert short.status_code == 400
    assert "Please write a note of 3 to 500 characters" in html.unescape(short.text)
    assert re.search(
        rf'id="note-{alert_id}"[^>]*aria-invalid="true"[^>]*>\s*ok\s*</textarea>', short.text
    )
    assert alert_id in _open_ids(short.text)

    note = "Called the cardholder:\nthey top up tomorrow."
    done = browser.post(f"/office/alerts/{alert_id}/handle", {"note": note}, allow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == "/office/alerts?done=handled#handled"
    page = browser.get(done.headers["location"])
    assert "The alert is marked as handled." in page.text
    assert alert_id not in _open_ids(page.text)
    history = _history(page.text)
    row = re.search(rf'href="/office/cards/{number}".*?</tr>', history, re.S).group(0)
    assert "<td>admin</td>" in row
    assert "Called the cardholder: they top up tomorrow." in row  # one line as stored

    alert = next(a for a in live_server.staff.alerts() if a["id"] == alert_id)
    assert alert["handled_note"] == "Called the cardholder: they top up tomorrow."
    assert alert["handled_by"] is not None
    assert alert["handled_s"] is not None

    # handled already: said so, the first note stands
    again = browser.post(f"/office/alerts/{alert_id}/handle", {"note": "someone else"})
    assert again.status_code == 409
    assert html.escape(message(Code.ALERT_ALREADY_HANDLED, "en")) in again.text
    alert = next(a for a in live_server.staff.alerts() if a["id"] == alert_id)
    assert alert["handled_note"] == "Called the cardholder: they top up tomorrow."
    # no such alert
    assert browser.post("/office/alerts/999999999/handle", {"note": "nothing"}).status_code == 404
    # an id no database holds (beyond 64 bits, or below 1) is a bad request, not a 500
    for beyond in ("99999999999999999999", "0", "-1"):
        refused = browser.post(f"/office/alerts/{beyond}/handle", {"note": "nothing"})
        assert refused.status_code == 400, beyond


def test_marketing_handles_and_the_name_is_kept(live_server):
    _number, alert_id = _overdraw_alert(live_server)
    username, password = f"buero{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    live_server.staff.call(
        "POST", "/v1/users", json={"username": username, "password": password, "role": "marketing"}
    )
    browser = PageClient(live_server.url, language="de")
    browser.login(username, password)
    answer = browser.post(f"/office/alerts/{alert_id}/handle", {"note": "Karte gesperrt gelassen"})
    assert answer.status_code == 200
    assert f"<td>{username}</td>" in answer.text
    assert "Karte gesperrt gelassen" in answer.text


def test_a_revoked_terminal_calling_again_opens_a_new_alert(live_server):
    till = live_server.terminal()
    live_server.staff.revoke_terminal(till.terminal_id)
    assert till.snapshot().status_code == 403

    def revoked_alerts() -> list[dict]:
        return [
            a
            for a in live_server.staff.alerts()
            if a["kind"] == AlertKind.REVOKED_TERMINAL and a["terminal_id"] == till.terminal_id
        ]

    (first,) = revoked_alerts()
    browser = PageClient(live_server.url, language="en")
    browser.login(ADMIN_USER, ADMIN_PASSWORD)
    page = browser.get("/office/alerts")
    assert f'href="/office/merchants/{till.merchant_id}"' in page.text
    handled = browser.post(f"/office/alerts/{first['id']}/handle", {"note": "Shop says stolen."})
    assert handled.status_code == 200

    assert till.snapshot().status_code == 403  # it calls again
    newer, older = sorted(revoked_alerts(), key=lambda a: -a["id"])
    assert older["id"] == first["id"]
    assert older["handled_note"] == "Shop says stolen."
    assert older["count"] == 1
    assert newer["handled_s"] is None
    assert newer["count"] == 1
    page = browser.get("/office/alerts")
    assert newer["id"] in _open_ids(page.text)
    assert "Shop says stolen." in _history(page.text)
