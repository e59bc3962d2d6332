"""The guided monthly close, walked through its pages on a real server over HTTP.

A month of traffic is made through the real till protocol and booked on days of last month
(fixtures/month.py); then the office chooses the month, checks the figures, creates the
run, downloads the bank file, uploads the bank's camt.053 that executes the payouts, and
ends with every merchant's statement. What each page shows is compared with what the
server booked (the JSON API and the database), and every refusal with its message.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
import sepaxml
import sqlalchemy as sa
import xmlschema
from fixtures.camt import BankLine, statement
from fixtures.month import OPERATOR_IBAN, Town, at, months_ago
from fixtures.server import ADMIN_PASSWORD, ADMIN_USER
from fixtures.tables import tables
from fixtures.web import PageClient

from hcard.errors import Code, message
from hcard.money import format_cents

XSD = f"{sepaxml.__path__[0]}/schemas/pain.001.001.09.xsd"
PAIN = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
SHOPS = {
    "Bäckerei Müller": {
        "fee_bp": 250,
        "holder_name": "Baeckerei Mueller GbR",
        "street": "Große Weilstraße",
        "building_number": "12a",
        "postcode": "45525",
        "town": "Hattingen",
    },
    "Buchhandlung": {"fee_bp": 300},
    "Eiscafé": {"fee_bp": 200},
}


def money(cents: int) -> str:
    return format_cents(cents, "en").replace("\xa0", " ")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def town(request, server_factory):
    """Three shops, the ice café's IBAN broken since it was entered; last month's traffic."""
    town = Town.start(server_factory(engine=request.param), SHOPS)
    with town.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE merchants SET iban = 'DE00123' WHERE id = :i"),
            {"i": town.merchants["Eiscafé"]},
        )
    first, _last = months_ago(1)
    town.funded_cents = town.fund(first)
    baecker = [town.pay("Bäckerei Müller", 0, 1_250), town.pay("Bäckerei Müller", 1, 830)]
    baecker.append(town.pay("Bäckerei Müller", 2, 2_000, mode="offline"))
    baecker.append(town.void("Bäckerei Müller", 1, baecker[1]))
    town.sync("Bäckerei Müller", baecker)
    town.sync("Buchhandlung", [town.pay("Buchhandlung", 0, 4_599)])
    town.sync("Eiscafé", [town.pay("Eiscafé", 3, 1_500)])
    town.booked_on(at(first.replace(day=10)))
    yield town
    town.close()


def _office(town: Town) -> PageClient:
    """The office in English: the page texts the tests read are the msgids themselves."""
    browser = PageClient(town.server.url, language="en")
    browser.login(ADMIN_USER, ADMIN_PASSWORD)
    return browser


def _current_step(html: str) -> str:
    found = re.search(r'<li aria-current="step">([^<]*)<', html)
    assert found, "no current step"
    return found.group(1)


def _done_steps(html: str) -> int:
    return len(re.findall(r'<li class="done">', html))


def _figures(html: str) -> list[list[str]]:
    (rows,) = [rows for caption, rows in tables(html).items() if "What each merchant" in caption]
    return rows


def _run_id(url: str) -> int:
    found = re.search(r"/office/settlement/runs/(\d+)", url)
    assert found, url
    return int(found.group(1))


def test_the_whole_close_from_the_month_to_the_statements(town: Town):
    office, staff = _office(town), town.server.staff
    month = f"{months_ago(1)[0]:%Y-%m}"
    # -- step 1: last month is suggested, nothing is settled yet ---------------------------
    start = office.get("/office/settlement")
    assert start.status_code == 200
    assert _current_step(start.text) == "Choose the month"
    assert f'<option value="{month}" selected>' in start.text
    before = staff.ledger_check()
    # -- step 2: the figures, booked nowhere -----------------------------------------------
    preview = office.get(f"/office/settlement/preview?month={month}")
    assert preview.status_code == 200, preview.text
    assert _current_step(preview.text) == "Check the figures"
    assert _done_steps(preview.text) == 1
    shown = _figures(preview.text)
    after = staff.ledger_check()
    assert (after["transactions"], after["postings"]) == (
        before["transactions"],
        before["postings"],
    )
    assert staff.call("GET", "/v1/settlement/runs") == []
    # -- step 3: create the run ------------------------------------------------------------
    created = office.post("/office/settlement/runs", {"month": month})
    assert created.status_code == 200, created.text
    run_id = _run_id(created.url)
    assert "done=created" in created.url
    assert _current_step(created.text) == "Download the bank file"
    assert _done_steps(created.text) == 3
    run = staff.call("GET", f"/v1/settlement/runs/{run_id}")
    # the preview showed exactly what the run booked, merchant by merchant and in total
    assert _figures(created.text) == shown
    lines = {line["merchant_name"]: line for line in run["lines"]}
    body, total = shown[1:-1], shown[-1]
    assert [row[0] for row in body] == sorted(lines, key=lambda n: lines[n]["merchant_id"])
    for row in body:
        line = lines[row[0]]
        assert row[1:6] == [
            money(line[key])
            for key in (
                "carry_in_cents",
                "payments_cents",
                "voids_cents",
                "topups_cents",
                "returns_cents",
            )
        ]
        assert row[6].startswith(money(line["fee_net_cents"]))
        assert row[7:10] == [
            money(line[key]) for key in ("vat_cents", "payout_cents", "carry_out_cents")
        ]
    assert total[8] == money(run["payout_cents"])
    baecker, eis = lines["Bäckerei Müller"], lines["Eiscafé"]
    assert (baecker["payments_cents"], baecker["voids_cents"]) == (4_080, 830)
    assert baecker["payout_cents"] == 3_250 - 81 - 15
    assert eis["outcome"] == "no_valid_iban"
    assert "IBAN" in body[[r[0] for r in body].index("Eiscafé")][10]  # the reason, shown
    # -- step 4: the bank file --------------------------------------------------------------
    assert f"/office/settlement/runs/{run_id}/files/1" in created.text
    assert "Cancel this run" in created.text
    bank_file = office.get(f"/office/settlement/runs/{run_id}/files/1")
    assert bank_file.status_code == 200
    assert bank_file.headers["content-type"] == "application/xml"
    assert bank_file.headers["content-disposition"].startswith("attachment; filename=")
    xmlschema.XMLSchema(XSD).validate(bank_file.content.decode())
    root = ET.fromstring(bank_file.content)
    assert root.find(".//p:GrpHdr/p:NbOfTxs", PAIN).text == str(run["transfers"]) == "2"
    assert round(float(root.find(".//p:GrpHdr/p:CtrlSum", PAIN).text) * 100) == run["payout_cents"]
    # -- step 5: the bank's statement ---------------------------------------------------------
    waiting = office.get(f"/office/settlement/runs/{run_id}")
    assert _current_step(waiting.text) == "Upload the bank statement"
    assert "Cancel this run" not in waiting.text
    transfers = [line for line in run["lines"] if line["end_to_end_id"]]
    topped, unknown = town.cards[1][0], town.cards[2][0]
    day = months_ago(0)[0]
    closing = town.funded_cents - run["payout_cents"] + 2_500 + 3_000
    camt = statement(
        OPERATOR_IBAN,
        [
            *(
                BankLine(line["payout_cents"], False, line["end_to_end_id"], booking_date=day)
                for line in transfers
            ),
            BankLine(2_500, True, remittance=f"HC {topped} Oma", booking_date=day),
            BankLine(
                3_000, True, remittance="Gutschein", counterparty="E. Muster", booking_date=day
            ),
        ],
        closing_cents=closing,
        statement_id="STMT-CLOSE",
        day=day,
    )
    card_before = staff.card(unknown)["balance_cents"]
    uploaded = office.post(
        f"/office/settlement/runs/{run_id}/bank-statement",
        files={"statement": ("auszug.xml", camt, "application/xml")},
    )
    assert uploaded.status_code == 200, uploaded.text
    assert _current_step(uploaded.text) == "Done"
    assert _done_steps(uploaded.text) == 5
    (booked,) = [
        rows for caption, rows in tables(uploaded.text).items() if "lines of this" in caption
    ]
    kinds = [row[3] for row in booked[1:]]
    for what, count in (
        ("Payout paid by the bank", 2),
        ("Card topped up by bank transfer", 1),
        ("Not recognised", 1),
    ):
        assert sum(kind.startswith(what) for kind in kinds) == count, kinds
    assert {
        line["payout_status"]
        for line in staff.call("GET", f"/v1/settlement/runs/{run_id}")["lines"]
        if line["end_to_end_id"]
    } == {"executed"}
    # the line nobody recognised: assigned to its card here
    (key,) = re.findall(r"/lines/([0-9a-f]{32})/assign", uploaded.text)
    wrong = office.post(
        f"/office/settlement/runs/{run_id}/lines/{key}/assign", {"card_number": "1234"}
    )
    assert wrong.status_code == 404
    assert message(Code.UNKNOWN_CARD, "en") in wrong.text
    assigned = office.post(
        f"/office/settlement/runs/{run_id}/lines/{key}/assign", {"card_number": unknown}
    )
    assert assigned.status_code == 200
    assert "done=assigned" in assigned.url
    assert staff.card(unknown)["balance_cents"] == card_before + 3_000
    assert "/assign" not in assigned.text
    check = staff.call("GET", "/v1/settlement/float-check")
    assert check["ok"], check
    # -- step 6: the statements ---------------------------------------------------------------
    merchant_id = town.merchants["Bäckerei Müller"]
    base = f"/office/settlement/runs/{run_id}/statements/{merchant_id}"
    for kind in ("html", "pdf", "csv"):
        assert f'href="{base}.{kind}"' in assigned.text
    html = office.get(base + ".html")
    assert html.headers["content-type"].startswith("text/html")
    assert "'sha256-" in html.headers["content-security-policy"]
    assert baecker["invoice_number"] in html.text
    pdf = office.get(base + ".pdf")
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-disposition"].startswith("inline; filename=")
    csv = office.get(base + ".csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.headers["content-disposition"].startswith("attachment; filename=")
    assert len([row for row in csv.text.splitlines()[1:] if row]) == 4  # 3 payments, 1 void
    # -- the month is settled now: shown so, and not offered again ---------------------------
    again = office.get("/office/settlement")
    assert f'<option value="{month}"' not in again.text
    refused = office.post("/office/settlement/runs", {"month": month})
    assert refused.status_code == 409
    assert message(Code.PERIOD_ALREADY_SETTLED, "en") in refused.text
    assert staff.ledger_check()["ok"]


def test_a_run_is_cancelled_before_its_download_and_refused_after(town: Town):
    office, staff = _office(town), town.server.staff
    month = f"{months_ago(1)[0]:%Y-%m}"
    first = office.post("/office/settlement/runs", {"month": month})
    first_id = _run_id(first.url)
    assert 'data-confirm="' in first.text
    cancelled = office.post(f"/office/settlement/runs/{first_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.url.endswith("/office/settlement?done=cancelled")
    assert "reversed" in cancelled.text
    assert staff.call("GET", f"/v1/settlement/runs/{first_id}")["status"] == "cancelled"
    assert f'<option value="{month}" selected>' in cancelled.text  # to settle again
    gone = office.get(f"/office/settlement/runs/{first_id}/files/1")
    assert gone.status_code == 409
    assert message(Code.RUN_CANCELLED, "en") in gone.text
    second = office.post("/office/settlement/runs", {"month": month})
    second_id = _run_id(second.url)
    assert office.get(f"/office/settlement/runs/{second_id}/files/1").status_code == 200
    refused = office.post(f"/office/settlement/runs/{second_id}/cancel")
    assert refused.status_code == 409
    assert message(Code.RUN_DOWNLOADED, "en") in refused.text
    assert "Why this run can no longer be cancelled" in refused.text
    assert staff.call("GET", f"/v1/settlement/runs/{second_id}")["status"] == "downloaded"
    assert staff.ledger_check()["ok"]


@pytest.mark.parametrize("language", ["de", "en"])
def test_refusals_are_shown_on_the_page_in_the_visitors_language(town: Town, language):
    office = PageClient(town.server.url, language=language)
    office.login(ADMIN_USER, ADMIN_PASSWORD)
    this_month = f"{months_ago(0)[0]:%Y-%m}"
    for month, code, status in (
        ("2026-13", Code.PERIOD_INVALID, 400),
        (this_month, Code.PERIOD_IN_FUTURE, 400),
    ):
        answer = office.get(f"/office/settlement/preview?month={month}")
        assert answer.status_code == status, month
        assert message(code, language) in answer.text
        assert 'role="alert"' in answer.text
    run_id = _run_id(
        office.post("/office/settlement/runs", {"month": f"{months_ago(1)[0]:%Y-%m}"}).url
    )
    # the last month the calendar has is no period either (it was a 500 before)
    answer = town.server.staff.request("POST", "/v1/settlement/runs", json={"month": "9999-12"})
    assert (answer.status_code, answer.json()["code"]) == (400, "period_invalid")
    empty = office.post(f"/office/settlement/runs/{run_id}/bank-statement")
    assert empty.status_code == 400
    garbage = office.post(
        f"/office/settlement/runs/{run_id}/bank-statement",
        files={"statement": ("x.xml", b"<xml", "application/xml")},
    )
    assert garbage.status_code == 400
    assert message(Code.STATEMENT_INVALID, language) in garbage.text
