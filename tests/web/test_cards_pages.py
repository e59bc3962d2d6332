"""The cards pages on a real server, through their forms: find (number with spaces or dashes,
the card's URL from its QR code), top-up (cash only, German refusals for a bad amount), a
money form sent twice booked once, block and unblock, replace with the balance moved,
correction (admin only, with the below-zero confirmation), a new check code."""

from __future__ import annotations

import html
import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
from fixtures.server import ADMIN_PASSWORD, ADMIN_USER, ServerInfo
from fixtures.web import PageClient

from hcard import cardnumber
from hcard.errors import Code, message


def _admin(server: ServerInfo, language: str = "de") -> PageClient:
    browser = PageClient(server.url, language=language)
    browser.login(ADMIN_USER, ADMIN_PASSWORD)
    return browser


def _marketing(server: ServerInfo) -> PageClient:
    username, password = f"buero{secrets.token_hex(3)}", secrets.token_urlsafe(16)
    server.staff.call(
        "POST", "/v1/users", json={"username": username, "password": password, "role": "marketing"}
    )
    browser = PageClient(server.url, language="de")
    browser.login(username, password)
    return browser


def _errors(page: str) -> list[str]:
    return [
        html.unescape(e) for e in re.findall(r'<p class="error" id="e-[\w]+">([^<]*)</p>', page)
    ]


def _notices(page: str) -> list[str]:
    return [
        html.unescape(n) for n in re.findall(r'<p class="notice ok" role="status">([^<]*)', page)
    ]


def _form_id(page: str, action: str) -> str:
    """The form id the server made for the money form `action` (topup, correction)."""
    form = re.search(rf'action="/office/cards/\d+/{action}".*?</form>', page, re.S)
    assert form, f"no {action} form on the page"
    return re.search(r'name="form_id" value="([\w-]+)"', form.group(0)).group(1)


def _send(browser: PageClient, number: str, action: str, data: dict, **kwargs):
    """Fill in the money form `action` of a freshly shown card page and send it."""
    page = browser.get(f"/office/cards/{number}").text
    form = {**data, "form_id": _form_id(page, action)}
    return browser.post(f"/office/cards/{number}/{action}", form, **kwargs)


def test_find_a_card_by_number_or_url(live_server):
    number, _uid = live_server.new_card(1_000)
    browser = _admin(live_server)
    assert browser.get("/office/cards").status_code == 200
    pretty = cardnumber.pretty(number)
    dashed = "-".join(pretty.split())
    url = f"https://karte.hattingen.example/c/{number}?k=ABCD-EFGH"
    for typed in (number, pretty, f"  {dashed} ", url):
        found = browser.get("/office/cards", params={"q": typed}, allow_redirects=False)
        assert found.status_code == 303, typed
        assert found.headers["location"] == f"/office/cards/{number}"
    page = browser.get(f"/office/cards/{number}")
    assert page.status_code == 200
    assert pretty in page.text
    assert "10,00\u00a0€" in page.text

    unknown = cardnumber.from_serial(99_999_999)
    for typed in (unknown, "1234", "https://example.org/c/garbage"):
        missing = browser.get("/office/cards", params={"q": typed})
        assert missing.status_code == 404, typed
        assert 'aria-invalid="true"' in missing.text
    assert browser.get(f"/office/cards/{unknown}").status_code == 404


def test_top_up_with_typed_amounts_and_german_refusals(live_server):
    number, _uid = live_server.new_card()
    browser = _admin(live_server)
    done = _send(browser, number, "topup", {"amount": "12,50"}, allow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == f"/office/cards/{number}?done=topped_up"
    page = browser.get(done.headers["location"])
    assert _notices(page.text) == ["Die Aufladung ist gebucht."]
    assert live_server.staff.card(number)["balance_cents"] == 1_250
    assert "Aufladung (bar)" in page.text  # the history

    # "１２" (full-width) and "٣" (Arabic-Indic) are digits to `\d`, not amounts
    for typed in ("12,5x", "", "0", "-3", "10001", "\uff11\uff12", "\u0663"):
        bad = _send(browser, number, "topup", {"amount": typed})
        assert bad.status_code == 400, typed
        assert _errors(bad.text) == ["Ungültiger Betrag (1 Cent bis 10.000 €)."], typed
        assert f'value="{typed}"' in bad.text  # the typed amount stays in the field
    # cash only: the form offers no other way, and a source sent anyway changes nothing
    assert 'name="source"' not in page.text
    for source in ("online", "bank"):
        sent = _send(browser, number, "topup", {"amount": "1", "source": source})
        assert sent.status_code == 200, source
        assert live_server.staff.history(number)[0]["label"] == "Aufladung (bar)", source
    assert live_server.staff.card(number)["balance_cents"] == 1_450
    # never text from the URL: an unknown notice shows nothing
    assert _notices(browser.get(f"/office/cards/{number}?done=<b>hacked</b>").text) == []


def test_block_and_unblock(live_server):
    number, _uid = live_server.new_card(500)
    browser = _admin(live_server, "en")
    page = browser.get(f"/office/cards/{number}")
    assert 'data-confirm="Block this card?"' in page.text
    blocked = browser.post(f"/office/cards/{number}/block")
    assert _notices(blocked.text) == [
        "The card is blocked. The tills refuse it from their next update."
    ]
    assert live_server.staff.card(number)["blocked"] is True
    assert 'data-confirm="Unblock this card?"' in blocked.text
    unblocked = browser.post(f"/office/cards/{number}/unblock")
    assert _notices(unblocked.text) == ["The card is unblocked and can pay again."]
    assert live_server.staff.card(number)["blocked"] is False


def test_replace_moves_the_balance(live_server):
    old, _ = live_server.new_card(3_210)
    new, _ = live_server.new_card(100)
    browser = _admin(live_server, "en")
    same = browser.post(f"/office/cards/{old}/replace", {"new_number": old})
    assert same.status_code == 400
    assert _errors(same.text) == [message(Code.SAME_CARD, "en")]
    other_last = "1" if new.endswith("0") else "0"  # a number ending in 0 was its own typo
    typo = browser.post(f"/office/cards/{old}/replace", {"new_number": new[:-1] + other_last})
    assert typo.status_code == 404
    assert _errors(typo.text) == [message(Code.UNKNOWN_CARD, "en")]

    done = browser.post(f"/office/cards/{old}/replace", {"new_number": cardnumber.pretty(new)})
    assert done.url.endswith(f"/office/cards/{old}?done=replaced")
    assert _notices(done.text) == ["The balance is moved to the new card. This card is blocked."]
    assert f'<a href="/office/cards/{new}">{cardnumber.pretty(new)}</a>' in done.text
    assert (
        live_server.staff.card(old)["balance_cents"],
        live_server.staff.card(new)["balance_cents"],
    ) == (0, 3_310)
    assert live_server.staff.card(old)["blocked"] is True
    page = browser.get(f"/office/cards/{new}")
    assert "Replaces card" in page.text
    assert f'href="/office/cards/{old}"' in page.text
    assert f"/office/cards/{old}/replace" not in done.text  # replaced once: no form

    # replaced once: a second replacement would lose where the first went
    third, _ = live_server.new_card(0)
    again = browser.post(f"/office/cards/{old}/replace", {"new_number": third})
    assert again.status_code == 409
    assert _errors(again.text) == [message(Code.CARD_ALREADY_REPLACED, "en")]
    assert f'<a href="/office/cards/{new}">{cardnumber.pretty(new)}</a>' in again.text
    # nor onto a card that was replaced itself
    onto_old = browser.post(f"/office/cards/{third}/replace", {"new_number": old})
    assert _errors(onto_old.text) == [message(Code.CARD_ALREADY_REPLACED, "en")]


def test_replace_onto_a_card_the_server_blocked_is_refused(live_server):
    """A flagged card (overdrawn, copied) is on the tills' deny-list: the balance must not
    move onto it."""
    old, _ = live_server.new_card(1_000)
    flagged, _ = live_server.new_card(100)
    live_server.staff.call(
        "POST",
        "/v1/ledger/corrections",
        json={
            "card_number": flagged,
            "amount_cents": -200,
            "reason": "test",
            "allow_below_zero": True,
        },
    )
    assert live_server.staff.card(flagged)["flagged"] is True
    browser = _admin(live_server, "en")
    refused = browser.post(f"/office/cards/{old}/replace", {"new_number": flagged})
    assert refused.status_code == 409
    assert _errors(refused.text) == [message(Code.CARD_BLOCKED, "en")]
    assert live_server.staff.card(old)["balance_cents"] == 1_000
    assert live_server.staff.card(flagged)["balance_cents"] == -100


def test_correction_by_admin_with_the_below_zero_confirmation(live_server):
    number, _uid = live_server.new_card(1_000)
    browser = _admin(live_server, "en")
    done = _send(
        browser,
        number,
        "correction",
        {"correction_amount": "5,00", "reason": "Aufladung vergessen"},
    )
    assert _notices(done.text) == ["The correction is booked."]
    assert live_server.staff.card(number)["balance_cents"] == 1_500

    no_reason = _send(browser, number, "correction", {"correction_amount": "1", "reason": "  "})
    assert no_reason.status_code == 400
    assert "Please give a reason" in _errors(no_reason.text)[0]
    below = _send(browser, number, "correction", {"correction_amount": "-20", "reason": "Storno"})
    assert below.status_code == 400
    (shown,) = _errors(below.text)
    assert shown.startswith(message(Code.BELOW_ZERO_NOT_CONFIRMED, "en"))
    assert 'id="f-allow_below_zero"' in below.text
    assert live_server.staff.card(number)["balance_cents"] == 1_500
    confirmed = browser.post(
        f"/office/cards/{number}/correction",
        {
            "correction_amount": "-20",
            "reason": "Storno",
            "allow_below_zero": "true",
            "form_id": _form_id(below.text, "correction"),  # the refused form, sent again
        },
    )
    assert _notices(confirmed.text) == ["The correction is booked."]
    card = live_server.staff.card(number)
    assert card["balance_cents"] == -500
    assert card["flagged"] is True
    assert "Blocked by the server" in confirmed.text


def test_marketing_cannot_correct(live_server):
    number, _uid = live_server.new_card(1_000)
    browser = _marketing(live_server)
    page = browser.get(f"/office/cards/{number}")
    assert page.status_code == 200
    assert "/correction" not in page.text  # no form
    refused = browser.post(
        f"/office/cards/{number}/correction", {"correction_amount": "5", "reason": "versucht"}
    )
    assert refused.status_code == 403
    assert live_server.staff.card(number)["balance_cents"] == 1_000
    # the rest of the card's actions are theirs
    topped = _send(browser, number, "topup", {"amount": "1"})
    assert topped.status_code == 200
    assert live_server.staff.card(number)["balance_cents"] == 1_100


@pytest.mark.parametrize("language", ["de", "en"])
def test_new_check_code(live_server, language):
    number, _uid = live_server.new_card()
    browser = _admin(live_server, language)
    page = browser.post(f"/office/cards/{number}/check-code")
    assert page.status_code == 200
    code = re.search(r'<p class="code-big">([A-Z2-7]{4}-[A-Z2-7]{4})</p>', page.text).group(1)
    assert code == live_server.staff.check_code(number)
    assert f"/c/{number}?k={code}" in page.text
    # the code opens the balance page
    assert browser.get(f"/c/{number}", params={"k": code}).status_code == 200


def test_a_money_form_sent_twice_books_once(live_server):
    """A double click or a reload of the answer sends the same form again: it books nothing
    and answers like the first time. A form shown afresh is a new booking."""
    _books_once(live_server)


@pytest.mark.postgres
def test_a_money_form_sent_twice_books_once_on_postgres(server_factory):
    """PostgreSQL runs the sends side by side: they meet at the form id's primary key."""
    _books_once(server_factory(engine="postgres"))


def _books_once(live_server: ServerInfo) -> None:
    number, _uid = live_server.new_card()
    browser = _admin(live_server, "en")
    page = browser.get(f"/office/cards/{number}").text
    assert "data-once" in page  # office.js disables its button once sent
    form = {"amount": "20,00", "form_id": _form_id(page, "topup")}
    url = f"/office/cards/{number}/topup"
    answers = [browser.post(url, form, allow_redirects=False) for _ in range(2)]
    assert [a.status_code for a in answers] == [303, 303]
    assert {a.headers["location"] for a in answers} == {f"/office/cards/{number}?done=topped_up"}
    with ThreadPoolExecutor(4) as pool:  # at the same moment, too
        again = list(pool.map(lambda _: browser.post(url, form), range(4)))
    assert {a.status_code for a in again} == {200}
    assert live_server.staff.card(number)["balance_cents"] == 2_000
    assert [h["kind"] for h in live_server.staff.history(number)] == ["topup"]

    fresh = _send(browser, number, "topup", {"amount": "20,00"}, allow_redirects=False)
    assert fresh.status_code == 303
    assert live_server.staff.card(number)["balance_cents"] == 4_000

    correction = {
        "correction_amount": "5",
        "reason": "Aufladung vergessen",
        "form_id": _form_id(page, "correction"),
    }
    for _ in range(2):
        sent = browser.post(f"/office/cards/{number}/correction", correction)
        assert _notices(sent.text) == ["The correction is booked."]
    assert live_server.staff.card(number)["balance_cents"] == 4_500

    # a form without the id the server made for it is refused, said next to the amount
    for form_id in (None, "", "short", "x" * 31 + "!"):
        sent = {"amount": "1"} if form_id is None else {"amount": "1", "form_id": form_id}
        refused = browser.post(url, sent)
        assert refused.status_code == 400, form_id
        assert _errors(refused.text) == [message(Code.FORM_INVALID, "en")], form_id
    assert live_server.staff.card(number)["balance_cents"] == 4_500
