"""The cardholder's balance page `GET /c/<number>?k=<check code>` over real HTTP: balance and
last movements with the right code only; without it a page asking for the code that is the
same whether the card exists or not."""

from __future__ import annotations

import secrets

import pytest
import requests

from hcard import cardnumber, signed
from hcard.signed import check_code


@pytest.fixture(scope="module")
def paid_card(server):
    """A card topped up with 20,00 € that paid 2,50 € at 'Eiscafé <&> Untermarkt'."""
    merchant_id = server.staff.create_merchant("Eiscafé <&> Untermarkt")
    till = server.terminal(merchant_id)
    uid = "04" + secrets.token_hex(6)
    number, sig = server.staff.issue_card(uid)
    server.staff.topup(number, 2_000)
    answer = till.authorise(till.payment(number, uid, 250)).json()
    assert answer["outcome"] == "approved"
    return number, check_code(bytes.fromhex(sig))


def _page(server, number: str, code: str | None = None) -> requests.Response:
    params = {} if code is None else {"k": code}
    return requests.get(f"{server.url}/c/{number}", params=params, timeout=30)


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
        assert "Balance" in text
        assert cardnumber.pretty(number) in text
        # the payment with the merchant's name, escaped; the top-up
        assert "Eiscafé &lt;&amp;&gt; Untermarkt" in text
        assert "-2,50\u00a0€" in text
        assert "20,00\u00a0€" in text
        assert "gesperrt" not in text
    # the code is in the URL: never cached, never passed on as a referrer
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_a_wrong_or_missing_code_shows_nothing_and_asks_for_it(server, paid_card):
    number, code = paid_card
    wrong = check_code(secrets.token_bytes(64))
    assert wrong != code
    asked = _page(server, number)
    refused = _page(server, number, wrong)
    for page in (asked, refused):
        assert page.status_code == 403
        assert page.headers["cache-control"] == "no-store"
        assert "17,50" not in page.text
        assert "Eiscafé" not in page.text
        assert "Bitte den Prüfcode von der Karte eingeben" in page.text
        assert "Please enter the check code printed on the card" in page.text
        assert '<form method="get"' in page.text
    assert "Der Prüfcode stimmt nicht." not in asked.text
    assert "Der Prüfcode stimmt nicht." in refused.text
    assert "The check code is not right." in refused.text
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
    some_code = check_code(secrets.token_bytes(64))
    pages = {n: _page(server, n, some_code) for n in (number, reserved, unknown)}
    bare = {n: _page(server, n) for n in (number, reserved, unknown)}
    for answers in (pages, bare):
        bodies = {
            page.text.replace(cardnumber.pretty(n), "<number>") for n, page in answers.items()
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
    for text in (bad_luhn, "1234567890123456", "9276abc", "9" * 200, "%3Cb%3E"):
        page = requests.get(f"{server.url}/c/{text}", params={"k": "ABCD-EFGH"}, timeout=30)
        assert page.status_code == 404, text
        assert "Diese Kartennummer gibt es nicht" in page.text
        assert "This is not a card number" in page.text
        assert "<b>" not in page.text


def test_spaces_in_the_number_and_a_blocked_card(server):
    uid = "04" + secrets.token_hex(6)
    number, sig = server.staff.issue_card(uid)
    server.staff.topup(number, 500)
    server.staff.block(number)
    code = signed.check_code(bytes.fromhex(sig))
    page = _page(server, cardnumber.pretty(number), code)
    assert page.status_code == 200
    assert "5,00\u00a0€" in page.text
    assert "Diese Karte ist gesperrt." in page.text
    assert "This card is blocked." in page.text


def test_check_code_is_the_printed_format():
    sig = bytes(range(64))
    code = check_code(sig)
    assert len(code) == 9
    assert code[4] == "-"
    assert signed.check_code_ok(sig, code)
    assert signed.check_code_ok(sig, code.lower().replace("-", " "))
    assert not signed.check_code_ok(sig, code[:-1])
    assert not signed.check_code_ok(bytes(64), code)
