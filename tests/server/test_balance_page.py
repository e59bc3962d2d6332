"""The cardholder's balance page `GET /c/<number>?k=<check code>` over real HTTP: balance and
last movements with the right code only; without it a page asking for the code that is the
same whether the card exists or not; the code comes from the server's secret, never from
what the chip holds; wrong codes are throttled. The page speaks the visitor's language
(German first): texts are checked in both, as the catalogue says them."""

from __future__ import annotations

import base64
import html
import secrets
import time

import pytest
import requests
import sqlalchemy as sa

from hcard import cardnumber
from hcard.i18n import text
from hcard.server import check_code as codes


def _random_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(5)).decode("ascii")
    return f"{raw[:4]}-{raw[4:]}"


@pytest.fixture(scope="module")
def paid_card(server):
    """A card topped up with 20,00 € that paid 2,50 € at 'Eiscafé <&> Untermarkt'."""
    merchant_id = server.staff.create_merchant("Eiscafé <&> Untermarkt")
    till = server.terminal(merchant_id)
    uid = "04" + secrets.token_hex(6)
    number, _sig = server.staff.issue_card(uid)
    server.staff.topup(number, 2_000)
    answer = till.authorise(till.payment(number, uid, 250)).json()
    assert answer["outcome"] == "approved"
    return number, server.staff.check_code(number)


def _page(server, number: str, code: str | None = None, lang: str = "de") -> requests.Response:
    params = {} if code is None else {"k": code}
    headers = {"Accept-Language": lang}
    return requests.get(f"{server.url}/c/{number}", params=params, headers=headers, timeout=30)


def _said(msgid: str, lang: str) -> str:
    """A text of the page as it appears in the HTML of `lang`."""
    return html.escape(text(msgid, lang), quote=False)


def _unused_number(server) -> str:
    """A well-formed card number the server has never issued."""
    return cardnumber.from_serial(10**11 - 1 - secrets.randbelow(10**6))


def test_the_right_code_shows_balance_and_payments(server, paid_card):
    number, code = paid_card
    for typed in (code, code.lower(), code.replace("-", ""), f" {code[:4]} {code[5:]} "):
        page = _page(server, number, typed)
        assert page.status_code == 200, typed
        assert page.headers["content-type"].startswith("text/html")
        text = page.text
        assert "17,50\u00a0€" in text
        assert "Guthaben" in text
        assert cardnumber.pretty(number) in text
        # the payment with the merchant's name, escaped; the top-up
        assert "Eiscafé &lt;&amp;&gt; Untermarkt" in text
        assert "-2,50\u00a0€" in text
        assert "20,00\u00a0€" in text
        assert "gesperrt" not in text
    english = _page(server, number, code, lang="en")
    assert "Balance" in english.text
    assert "€17.50" in english.text
    # the code is in the URL: never cached, never passed on as a referrer
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_a_wrong_or_missing_code_shows_nothing_and_asks_for_it(server, paid_card):
    number, code = paid_card
    wrong = _random_code()
    assert wrong != code
    asked = _page(server, number)
    refused = _page(server, number, wrong)
    for page in (asked, refused):
        assert page.status_code == 403
        assert page.headers["cache-control"] == "no-store"
        assert "17,50" not in page.text
        assert "Eiscafé" not in page.text
        assert _said("Please enter the check code printed on the card.", "de") in page.text
        assert '<form method="get"' in page.text
    wrong_code = _said("The check code is not right.", "de")
    assert wrong_code not in asked.text
    assert wrong_code in refused.text
    in_english = _page(server, number, wrong, lang="en").text
    assert "Please enter the check code printed on the card." in in_english
    assert "The check code is not right." in in_english
    # Hostile or oversized input is neither echoed nor a server error.
    for typed in ("<script>alert(1)</script>", "A" * 5_000, code + "X", code[:-1], "ÄÖÜ-ßßßß"):
        page = _page(server, number, typed)
        assert page.status_code == 403, typed
        assert "<script>" not in page.text
        assert "17,50" not in page.text


def test_the_refusal_does_not_tell_whether_the_card_exists(server, paid_card):
    number, _code = paid_card
    reserved = server.staff.reserve_cards(1)[0]
    unknown = _unused_number(server)
    some_code = _random_code()
    pages = {n: _page(server, n, some_code) for n in (number, reserved, unknown)}
    bare = {n: _page(server, n) for n in (number, reserved, unknown)}
    for answers in (pages, bare):
        bodies = {
            page.text.replace(cardnumber.pretty(n), "<number>").replace(n, "<number>")
            for n, page in answers.items()
        }
        assert len(bodies) == 1
        assert {page.status_code for page in answers.values()} == {403}
        headers = {
            tuple(sorted((k, v) for k, v in page.headers.items() if k.lower() != "date"))
            for page in answers.values()
        }
        assert len(headers) == 1


def test_not_a_card_number(server):
    good = _unused_number(server)
    bad_luhn = good[:-1] + str((int(good[-1]) + 1) % 10)
    not_a_card = "This is not a card number. Please check the number on the card."
    for typed in (bad_luhn, "1234567890123456", "9276abc", "9" * 200, "%3Cb%3E"):
        for lang in ("de", "en"):
            page = requests.get(
                f"{server.url}/c/{typed}",
                params={"k": "ABCD-EFGH"},
                headers={"Accept-Language": lang},
                timeout=30,
            )
            assert page.status_code == 404, typed
            assert _said(not_a_card, lang) in page.text
            assert "<b>" not in page.text


def test_spaces_in_the_number_and_a_blocked_card(server):
    uid = "04" + secrets.token_hex(6)
    number, _sig = server.staff.issue_card(uid)
    server.staff.topup(number, 500)
    server.staff.block(number)
    code = server.staff.check_code(number)
    page = _page(server, cardnumber.pretty(number), code)
    assert page.status_code == 200
    assert "5,00\u00a0€" in page.text
    blocked = "This card is blocked. Please ask the town marketing office."
    assert _said(blocked, "de") in page.text
    assert blocked in _page(server, number, code, lang="en").text


def test_check_code_is_the_printed_format():
    key = secrets.token_bytes(32)
    code = codes.check_code(key, "9276000000000018")
    assert len(code) == 9
    assert code[4] == "-"
    assert codes.matches(code, code)
    assert codes.matches(code, code.lower().replace("-", " "))
    assert not codes.matches(code, code[:-1])
    assert code != codes.check_code(secrets.token_bytes(32), "9276000000000018")
    assert code != codes.check_code(key, "9276000000000026")


def test_the_code_cannot_be_derived_from_what_the_chip_holds(server):
    """The chip holds the number, the UID and the issuer signature; the old code came from
    the signature. A card issued now opens only with the code from the server's secret."""
    uid = "04" + secrets.token_hex(6)
    number, sig = server.staff.issue_card(uid)
    from_chip = codes.legacy_check_code(bytes.fromhex(sig))
    assert _page(server, number, from_chip).status_code == 403
    printed = server.staff.check_code(number)
    assert printed != from_chip
    assert _page(server, number, printed).status_code == 200


def test_a_card_issued_before_keeps_its_old_code_until_a_new_one_is_printed(server):
    """Migration 0004 marks every card issued before it `legacy_check_code`: the code
    printed on it then (from the signature) still works, and so does the new one, until
    staff print the new code (`POST /v1/cards/<n>/check-code`), which ends the old one."""
    uid = "04" + secrets.token_hex(6)
    number, sig = server.staff.issue_card(uid)
    old = codes.legacy_check_code(bytes.fromhex(sig))
    engine = sa.create_engine(server.database_url)
    with engine.begin() as conn:  # what the migration does to a card issued before it
        conn.execute(
            sa.text("UPDATE cards SET legacy_check_code = TRUE WHERE number = :n"), {"n": number}
        )
    engine.dispose()
    assert _page(server, number, old).status_code == 200
    new = server.staff.check_code(number)
    assert _page(server, number, new).status_code == 200
    assert _page(server, number, old).status_code == 403


def test_wrong_codes_are_throttled_per_card(server_factory):
    server = server_factory(env={"HCARD_THROTTLE_BALANCE_CARD": "3 per 2 seconds"})
    uid = "04" + secrets.token_hex(6)
    number, _sig = server.staff.issue_card(uid)
    right = server.staff.check_code(number)
    for _ in range(3):
        assert _page(server, number, _random_code()).status_code == 403
    throttled = _page(server, number, right)  # even the right code waits now
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 2
    assert _said("Too many wrong check codes.", "de") in throttled.text
    assert "Too many wrong check codes." in _page(server, number, right, lang="en").text
    assert 'id="balance"' not in throttled.text
    # another card from the same address is not affected
    other, _ = server.new_card(100)
    assert _page(server, other, server.staff.check_code(other)).status_code == 200
    # the guessing stops: the right code works again once the window has passed
    deadline = time.monotonic() + 5
    while _page(server, number, right).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_wrong_codes_are_throttled_per_address(server_factory):
    server = server_factory(env={"HCARD_THROTTLE_BALANCE_ADDRESS": "5 per 10 minutes"})
    cards = [server.new_card(100)[0] for _ in range(3)]
    guesser = {"X-Forwarded-For": "198.51.100.7"}
    statuses = [
        requests.get(
            f"{server.url}/c/{cards[i % 3]}",
            params={"k": _random_code()},
            headers=guesser,
            timeout=30,
        ).status_code
        for i in range(8)
    ]
    assert statuses == [403] * 5 + [429] * 3
    # a cardholder at another address still sees their balance
    neighbour = requests.get(
        f"{server.url}/c/{cards[0]}",
        params={"k": server.staff.check_code(cards[0])},
        headers={"X-Forwarded-For": "198.51.100.8"},
        timeout=30,
    )
    assert neighbour.status_code == 200
