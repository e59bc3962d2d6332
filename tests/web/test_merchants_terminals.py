"""Merchants and terminals in the office, through their forms, on a real server over HTTP.

What the office worker does: add a merchant (the fee typed as "1,5"), correct it, mistype
an IBAN and read why next to the field (German and English), enrol a terminal and read its
one-time code off the page (a real terminal enrols with it), see when each till last
called, its software and the records it has not uploaded, revoke a till, and deactivate a
merchant once its tills are revoked (not before).
"""

from __future__ import annotations

import re
import secrets
import time

import pytest
import requests
import sqlalchemy as sa
from fixtures.server import ADMIN_PASSWORD, ADMIN_USER, DEMO_IBAN, enrol
from fixtures.web import PageClient

from hcard.errors import Code, message
from hcard.i18n import text
from hcard.server.db.tables import terminals as terminal_table
from hcard.server.web.pages.merchants import fee_bp
from hcard.terminal.client import SOFTWARE_VERSION, Clock, ServerClient

NOT_SEEN = text("Not seen for a day", "de")
_CODE = re.compile(r'<p class="code-big" id="code">([A-Z0-9]{4}-[A-Z0-9]{4})</p>')


def _office(url: str, language: str = "de") -> PageClient:
    browser = PageClient(url, language=language)
    browser.login(ADMIN_USER, ADMIN_PASSWORD)
    return browser


def _merchant_form(name: str, **changes: str) -> dict[str, str]:
    form = {
        "name": name,
        "holder_name": "Eiscafe Dolomiti GmbH",
        "iban": "DE89 3704 0044 0532 0130 00",
        "bic": "",
        "street": "Untermarkt",
        "building_number": "7",
        "postcode": "45525",
        "town": "Hattingen",
        "country": "de",
        "contact": "Frau Rossi, 02324 12345",
        "fee": "1,5",
        "category": "restaurant",
        "listed": "1",
        "opening_hours": "Mo–Fr 10–20 Uhr\r\nSa–So 11–21 Uhr",
    }
    form.update(changes)
    return {key: value for key, value in form.items() if value is not None}


def _merchant_id(answer: requests.Response) -> int:
    match = re.search(r"/office/merchants/(\d+)\?done=", answer.url)
    assert match, answer.url
    return int(match.group(1))


def _set_last_seen(server, terminal_id: int, when_s: float) -> None:
    """What the till told the server with its last call, as if it had been `when_s`."""
    engine = sa.create_engine(server.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.update(terminal_table)
                .where(terminal_table.c.id == terminal_id)
                .values(last_seen_s=when_s)
            )
    finally:
        engine.dispose()


def _no_inline_style(html: str) -> None:
    assert not re.search(r"<[^>]+\sstyle=", html), "an inline style attribute"
    assert "<script>" not in html


def test_a_merchant_is_added_and_corrected_through_the_form(live_server):
    office = _office(live_server.url)
    form_page = office.get("/office/merchants/new")
    assert form_page.status_code == 200
    assert 'data-check-url="/office/merchants/check-bank"' in form_page.text
    _no_inline_style(form_page.text)
    name = f"Eiscafé Dolomiti {secrets.token_hex(3)}"
    added = office.post("/office/merchants/new", _merchant_form(name))
    assert added.status_code == 200, added.text[:2000]
    merchant_id = _merchant_id(added)
    assert name in added.text
    stored = live_server.staff.call("GET", f"/v1/merchants/{merchant_id}")
    assert stored["iban"] == DEMO_IBAN
    assert stored["bic"] == "COBADEFFXXX"  # from the IBAN
    assert (stored["fee_bp"], stored["country"], stored["category"]) == (150, "DE", "restaurant")
    assert (stored["listed"], stored["active"]) == (True, True)
    assert stored["opening_hours"] == "Mo–Fr 10–20 Uhr\nSa–So 11–21 Uhr"
    assert stored["holder_name"] == "Eiscafe Dolomiti GmbH"
    # the edit form shows the fee as it was typed, and saves a correction
    assert 'value="1,5"' in added.text
    corrected = office.post(
        f"/office/merchants/{merchant_id}",
        _merchant_form(name, fee="2,75", listed=None, category="food", street="Obermarkt"),
    )
    assert corrected.status_code == 200
    assert corrected.url.endswith("?done=saved")
    stored = live_server.staff.call("GET", f"/v1/merchants/{merchant_id}")
    assert (stored["fee_bp"], stored["listed"], stored["category"]) == (275, False, "food")
    assert stored["street"] == "Obermarkt"
    listing = office.get("/office/merchants")
    assert name in listing.text
    assert "2,75 %" in listing.text
    # in English the fee has a decimal point
    english = _office(live_server.url, "en")
    assert 'value="2.75"' in english.get(f"/office/merchants/{merchant_id}").text
    assert "2.75 %" in english.get("/office/merchants").text


@pytest.mark.parametrize("language", ["de", "en"])
def test_a_mistyped_iban_is_said_next_to_the_field(live_server, language):
    office = _office(live_server.url, language)
    name = f"Tippfehler {secrets.token_hex(3)}"
    refused = office.post(
        "/office/merchants/new", _merchant_form(name, iban="DE89370400440532013001")
    )
    assert refused.status_code == 400
    expected = message(Code.INVALID_IBAN, language)
    assert f'<p class="error" id="e-iban">{expected}</p>' in refused.text
    assert 'aria-invalid="true"' in refused.text
    assert f'value="{name}"' in refused.text  # what was typed stays
    assert name not in str(live_server.staff.call("GET", "/v1/merchants"))
    # a fee that is no percentage is said at the fee
    bad_fee = office.post("/office/merchants/new", _merchant_form(name, fee="150"))
    assert bad_fee.status_code == 400
    assert 'id="e-fee"' in bad_fee.text
    # the live check as the office types (office.js asks it)
    check = office.get(
        "/office/merchants/check-bank", params={"iban": "DE89370400440532013001", "bic": ""}
    )
    assert check.json() == {"ok": False, "message": expected}
    check = office.get("/office/merchants/check-bank", params={"iban": "DE89370400440532013000"})
    answer = check.json()
    assert answer["ok"] is True
    assert "Commerzbank" in answer["message"]
    assert "COBADEFFXXX" in answer["message"]
    check = office.get("/office/merchants/check-bank", params={"iban": DEMO_IBAN, "bic": "NOTABIC"})
    assert check.json() == {"ok": False, "message": expected}


def test_merchant_pages_are_for_the_office_only(live_server):
    merchant_id = live_server.staff.create_merchant(f"Nur Büro {secrets.token_hex(3)}")
    username = f"laden{secrets.token_hex(3)}"
    password = "ein langes Passwort 42"
    live_server.staff.call(
        "POST",
        "/v1/users",
        json={
            "username": username,
            "password": password,
            "role": "merchant",
            "merchant_id": merchant_id,
        },
    )
    shop = PageClient(live_server.url)
    shop.login(username, password)
    for path in ("/office/merchants", f"/office/merchants/{merchant_id}", "/office/terminals"):
        assert shop.get(path).status_code == 403, path
    answer = shop.post(f"/office/merchants/{merchant_id}/terminals", {"name": "Kasse"})
    assert answer.status_code == 403
    assert shop.get("/office/merchants/check-bank", params={"iban": DEMO_IBAN}).status_code == 403


def _enrol_through_the_page(office: PageClient, merchant_id: int, name: str) -> str:
    page = office.post(f"/office/merchants/{merchant_id}/terminals", {"name": name})
    assert page.status_code == 200, page.text[:2000]
    _no_inline_style(page.text)
    assert '<img src="data:image/svg+xml' in page.text  # the QR code
    match = _CODE.search(page.text)
    assert match, page.text
    assert match.group(1) in page.text.split("<img", 1)[1]  # its alt text names the code
    return match.group(1)


def _row_of(html: str, terminal_name: str) -> str:
    """The table row of the terminal: its <tr>'s attributes and cells."""
    for row in html.split("<tr")[1:]:
        if f'<th scope="row">{terminal_name} ' in row:
            return row.split("</tr>", 1)[0]
    raise AssertionError(f"no row for {terminal_name}")


def test_a_terminal_is_enrolled_seen_and_revoked_and_then_its_merchant_deactivated(
    server_factory,
):
    server = server_factory()
    office = _office(server.url)
    merchant_id = server.staff.create_merchant("Bäckerei Kortmann", listed=True)
    # enrol: the code as text and as a QR code, and a real till enrols with it
    code = _enrol_through_the_page(office, merchant_id, "Kasse Theke")
    till = enrol(server.url, code, name="")
    assert till.merchant_id == merchant_id
    again = requests.post(
        f"{server.url}/v1/enrol", json={"code": code, "public_key": "00" * 32}, timeout=30
    )
    assert again.status_code == 400  # once only
    # enrolled a moment ago (its first call), not called since: active, nothing to look at
    row = _row_of(office.get("/office/terminals").text, "Kasse Theke")
    assert "Bäckerei Kortmann" in row
    assert NOT_SEEN not in row
    assert not row.startswith(' class="attention"')
    # silent for two days: marked here and on the overview, by the same rule
    _set_last_seen(server, till.terminal_id, time.time() - 2 * 86_400)
    row = _row_of(office.get("/office/terminals").text, "Kasse Theke")
    assert NOT_SEEN in row
    assert row.startswith(' class="attention"')
    assert NOT_SEEN in _row_of(office.get(f"/office/merchants/{merchant_id}").text, "Kasse Theke")
    assert text("silent for a day", "de") in office.get("/office/").text
    # the till's next signed request says what it is and what it still has to upload
    client = ServerClient(
        server.url, till.terminal_id, till.key, Clock(), records_waiting=lambda: 3
    )
    client.snapshot(0)
    stored = server.staff.terminals(merchant_id)[0]
    assert stored["software_version"] == SOFTWARE_VERSION
    assert stored["records_waiting"] == 3
    assert stored["last_seen_s"] is not None
    page = office.get("/office/terminals")
    row = _row_of(page.text, "Kasse Theke")
    assert SOFTWARE_VERSION in row
    assert '<span class="badge warn">3</span>' in row
    assert row.startswith(' class="attention"')  # records waiting
    assert NOT_SEEN not in row
    # what does not parse is ignored, and the request is served as ever
    client = ServerClient(
        server.url, till.terminal_id, till.key, Clock(), records_waiting=lambda: -1
    )
    client.snapshot(0)
    assert server.staff.terminals(merchant_id)[0]["records_waiting"] == 3
    client = ServerClient(
        server.url, till.terminal_id, till.key, Clock(), records_waiting=lambda: 0
    )
    client.snapshot(0)
    assert server.staff.terminals(merchant_id)[0]["records_waiting"] == 0
    # the merchant cannot be deactivated while the till is active
    refused = office.post(f"/office/merchants/{merchant_id}/deactivate")
    assert refused.status_code == 409
    assert message(Code.MERCHANT_HAS_TERMINALS, "de") in refused.text
    assert server.staff.call("GET", f"/v1/merchants/{merchant_id}")["active"] is True
    # revoke it from the merchant's page: back there, the till is refused from now on
    revoked = office.post(
        f"/office/terminals/{till.terminal_id}/revoke", {"back": f"/office/merchants/{merchant_id}"}
    )
    assert revoked.status_code == 200
    assert revoked.url.endswith(f"/office/merchants/{merchant_id}?done=terminal-revoked")
    said = text("The terminal is revoked. Its requests are refused from now on.", "de")
    assert f'<p class="notice ok" role="status">{said}</p>' in revoked.text
    assert till.snapshot().status_code == 403
    # `back` names this list or a merchant's page, nothing else
    elsewhere = office.post(
        f"/office/terminals/{till.terminal_id}/revoke", {"back": "/office/users"}
    )
    assert elsewhere.url.endswith("/office/terminals?done=terminal-revoked")
    assert said in elsewhere.text
    assert server.staff.terminals(merchant_id)[0]["status"] == "revoked"
    # now it can go: deactivated, off the acceptance list, no new terminal
    done = office.post(f"/office/merchants/{merchant_id}/deactivate")
    assert done.status_code == 200
    assert done.url.endswith("?done=deactivated")
    stored = server.staff.call("GET", f"/v1/merchants/{merchant_id}")
    assert (stored["active"], stored["listed"]) == (False, False)
    refused = office.post(f"/office/merchants/{merchant_id}/terminals", {"name": "Kasse 2"})
    assert refused.status_code == 409
    assert message(Code.MERCHANT_INACTIVE, "de") in refused.text
    api = server.staff.request(
        "POST", f"/v1/merchants/{merchant_id}/terminals", json={"name": "Kasse 2"}
    )
    assert (api.status_code, api.json()["code"]) == (409, "merchant_inactive")
    relisted = office.post(
        f"/office/merchants/{merchant_id}", _merchant_form("Bäckerei Kortmann", listed="1")
    )
    assert relisted.status_code == 409
    assert 'id="e-listed"' in relisted.text
    # and back again
    assert office.post(f"/office/merchants/{merchant_id}/activate").url.endswith("done=activated")
    assert server.staff.call("GET", f"/v1/merchants/{merchant_id}")["active"] is True
    _enrol_through_the_page(office, merchant_id, "Kasse 2")
    # a terminal waiting to be set up holds the merchant too, and the refusal says so
    refused = office.post(f"/office/merchants/{merchant_id}/deactivate")
    assert refused.status_code == 409
    assert message(Code.MERCHANT_HAS_TERMINALS, "de") in refused.text
    assert "waiting to be set up" in message(Code.MERCHANT_HAS_TERMINALS, "en")


def test_a_terminal_name_is_needed_and_said_at_the_field(live_server):
    office = _office(live_server.url, "en")
    merchant_id = live_server.staff.create_merchant(f"Namenlos {secrets.token_hex(3)}")
    refused = office.post(f"/office/merchants/{merchant_id}/terminals", {"name": "  "})
    assert refused.status_code == 400
    assert f'<p class="error" id="e-name">{message(Code.INVALID_NAME, "en")}</p>' in refused.text
    assert live_server.staff.terminals(merchant_id) == []


def test_a_real_till_says_its_software_and_the_records_it_has_not_uploaded(
    live_server, card_emulator, terminal_factory
):
    """The till's own client (its journal counts the records waiting), not a test double."""
    terminal = terminal_factory(live_server, card_emulator.reader_path, name="Kasse Echt")
    till = terminal.till()  # its sync agent is off: the test decides when it calls

    def stored() -> dict:
        tills = live_server.staff.terminals(terminal.merchant_id)
        return next(t for t in tills if t["id"] == terminal.terminal_id)

    till.day_close()  # a journal record the server does not have yet
    till.client.snapshot(0)
    assert (stored()["software_version"], stored()["records_waiting"]) == (SOFTWARE_VERSION, 1)
    till.sync_now()  # uploads it, then asks for the snapshot: nothing waits any more
    assert stored()["records_waiting"] == 0
    office = _office(live_server.url)
    row = _row_of(office.get("/office/terminals").text, "Kasse Echt")
    assert NOT_SEEN not in row
    assert not row.startswith(' class="attention"')


@pytest.mark.parametrize(
    ("typed", "bp"), [("1,5", 150), ("2.25 %", 225), ("", 0), ("100", 10_000), (" 0,05 ", 5)]
)
def test_a_fee_is_read_in_percent(typed, bp):
    assert fee_bp(typed) == bp


@pytest.mark.parametrize("typed", ["１,5", "1,５", "٣", "100,01", "1,555", "-1", "1e2"])
def test_a_fee_in_other_digits_or_out_of_range_is_refused(typed):
    """ASCII digits only: `\\d` would take full-width or Arabic-Indic ones (and `int` reads
    them)."""
    with pytest.raises(ValueError, match=re.escape(typed)):
        fee_bp(typed)
