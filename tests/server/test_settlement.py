"""A month of a small town settled over real HTTP, on SQLite and on PostgreSQL.

Traffic goes through the real server (office top-ups, online payments authorised, offline
payments and voids synced, till top-ups); then its bookings are moved back in time by
rewriting `transactions.created_s` (the cut-off is the server's booking time, so that is
what a month ago means). Offline payments the tills recorded in that month but synced
after its end stay in the following month, with the till's own date (`recorded_s`).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import secrets
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sepaxml
import sqlalchemy as sa
import xmlschema
from fixtures.camt import BankLine, Batch, statement
from fixtures.month import at, months_ago
from fixtures.server import ADMIN_PASSWORD, ADMIN_USER, ApiError, ServerInfo, StaffClient
from fixtures.web import PageClient
from pypdf import PdfReader

pytestmark = pytest.mark.slow  # minutes on one worker: started first (conftest.py)

LOCAL = ZoneInfo("Europe/Berlin")
OPERATOR_IBAN = "DE02120300000000202051"
GOOD_IBAN = "DE89370400440532013000"
OTHER_IBAN = "DE75512108001245126199"
XSD = f"{sepaxml.__path__[0]}/schemas/pain.001.001.09.xsd"


@dataclass
class Town:
    server: ServerInfo
    engine: sa.Engine
    month: tuple[dt.date, dt.date]  # the month settled first
    later: tuple[dt.date, dt.date]  # the month after it
    merchants: dict[str, int]
    late_seqs: list[tuple[int, int]]  # (terminal id, seq) of offline payments synced late
    late_total_cents: int

    def backdate(self, since_txn: int, when: float) -> int:
        """Move every transaction after `since_txn` to `when`; the last id."""
        with self.engine.begin() as conn:
            last = conn.execute(sa.text("SELECT max(id) FROM transactions")).scalar_one()
            conn.execute(
                sa.text("UPDATE transactions SET created_s = :w WHERE id > :i"),
                {"w": when, "i": since_txn},
            )
        return int(last or 0)

    def last_txn(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM transactions")).scalar_one()
            )

    def payable(self, merchant_id: int) -> int:
        return int(self.server.staff.call("GET", f"/v1/merchants/{merchant_id}")["payable_cents"])


def _statuses(response) -> list[str]:
    return [r["status"] for r in response.json()["results"]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def town(request, server_factory) -> Town:
    server = server_factory(engine=request.param)
    engine = sa.create_engine(server.database_url)
    staff = server.staff
    month, later = months_ago(2), months_ago(1)
    ids = {
        "baecker": staff.call(
            "POST",
            "/v1/merchants",
            json={"name": "Bäckerei Müller", "iban": GOOD_IBAN, "fee_bp": 250},
        )["id"],
        "buch": staff.call(
            "POST", "/v1/merchants", json={"name": "Buchhandlung", "iban": GOOD_IBAN, "fee_bp": 300}
        )["id"],
        "kiosk": staff.call(
            "POST",
            "/v1/merchants",
            json={"name": "Kiosk am Markt", "iban": GOOD_IBAN, "fee_bp": 300},
        )["id"],
        "noiban": staff.call(
            "POST", "/v1/merchants", json={"name": "Eiscafé", "iban": GOOD_IBAN, "fee_bp": 200}
        )["id"],
    }
    town = Town(server, engine, month, later, ids, [], 0)
    staff.call(
        "PATCH",
        f"/v1/merchants/{ids['baecker']}",
        json={
            "holder_name": "Baeckerei Mueller GbR",
            "street": "Große Weilstraße",
            "building_number": "12a",
            "postcode": "45525",
            "town": "Hattingen",
        },
    )
    with engine.begin() as conn:  # an IBAN that became invalid since it was entered
        conn.execute(
            sa.text("UPDATE merchants SET iban = 'DE00123' WHERE id = :i"), {"i": ids["noiban"]}
        )
    tills = {name: server.terminal(merchant_id, name) for name, merchant_id in ids.items()}
    cards = [server.new_card() for _ in range(4)]
    start = town.last_txn()
    # the cards were bought by bank transfer: the bank's statement books them
    day = month[0] + dt.timedelta(days=1)
    funding = statement(
        OPERATOR_IBAN,
        [
            BankLine(20_000, True, remittance=f"HC {number} Karte", booking_date=day)
            for number, _uid in cards
        ],
        closing_cents=80_000,
        statement_id="FUNDING",
        day=day,
    )
    booked = staff.call(
        "POST", "/v1/bank/statements", data=funding, headers={"Content-Type": "application/xml"}
    )
    assert booked["booked"] == {"card_topup": 4}
    start = town.backdate(start, at(day, 9))
    counters = {number: 0 for number, _ in cards}

    def pay(till, card, amount, mode="online"):
        number, uid = card
        counters[number] += 1
        record = till.payment(number, uid, amount, mode=mode, counter=counters[number])
        if mode == "online":
            assert till.authorise(record).json()["outcome"] == "approved"
        return record

    # the month: online and offline payments, a void, till top-ups
    baecker, buch, kiosk, noiban = (tills[n] for n in ("baecker", "buch", "kiosk", "noiban"))
    records = {name: [] for name in tills}
    records["baecker"] += [pay(baecker, cards[0], 1_250), pay(baecker, cards[1], 830)]
    records["baecker"].append(pay(baecker, cards[2], 2_000, mode="offline"))
    voided = records["baecker"][1]
    records["baecker"].append(
        baecker.record("void", {"card": cards[1][0], "voids_seq": voided.seq, "amount_cents": 830})
    )
    records["buch"] += [pay(buch, cards[0], 4_599), pay(buch, cards[3], 1_000, mode="offline")]
    topup = kiosk.record("topup_request", {"card": cards[2][0], "amount_cents": 5_000})
    assert kiosk.authorise(topup).json()["outcome"] == "approved"
    records["kiosk"] += [topup, pay(kiosk, cards[1], 700)]  # more cash taken than paid
    records["noiban"] += [pay(noiban, cards[3], 1_500)]
    for name, till in tills.items():
        assert set(_statuses(till.sync(records[name]))) == {"applied"}, name
    start = town.backdate(start, at(day + dt.timedelta(days=10)))
    # offline payments recorded on the month's last day, synced after its end: late
    late = [pay(buch, cards[2], 450, mode="offline"), pay(buch, cards[0], 120, mode="offline")]
    recorded = {r.seq: int(at(month[1], 18)) for r in late}
    assert _statuses(buch.sync(late, recorded_s=recorded)) == ["applied", "applied"]
    town.backdate(start, at(later[0] + dt.timedelta(days=2)))
    town.late_seqs = [(buch.terminal_id, r.seq) for r in late]
    town.late_total_cents = 570
    yield town
    engine.dispose()


def _merchant_login(town: Town, merchant_id: int) -> StaffClient:
    """A new merchant user of `merchant_id`, logged in."""
    username, password = f"shop{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    town.server.staff.call(
        "POST",
        "/v1/users",
        json={
            "username": username,
            "password": password,
            "role": "merchant",
            "merchant_id": merchant_id,
        },
    )
    return StaffClient(town.server.url, username, password)


def _create(server: ServerInfo, first_last: tuple[dt.date, dt.date]) -> dict:
    return server.staff.call(
        "POST", "/v1/settlement/runs", json={"month": f"{first_last[0]:%Y-%m}"}
    )


def test_a_month_settles_to_the_cent_pays_by_sepa_and_the_bank_closes_the_loop(town: Town):
    server, staff = town.server, town.server.staff
    run = _create(server, town.month)
    lines = {
        line["merchant_id"]: line
        for line in staff.call("GET", f"/v1/settlement/runs/{run['run_id']}")["lines"]
    }
    m = town.merchants
    # -- each merchant, to the cent -------------------------------------------------------
    baecker = lines[m["baecker"]]
    assert (baecker["payments_cents"], baecker["voids_cents"], baecker["topups_cents"]) == (
        4_080,
        830,
        0,
    )
    assert (baecker["fee_net_cents"], baecker["vat_cents"]) == (81, 15)  # 2,5 % of 32,50; 19 %
    assert baecker["payout_cents"] == 3_250 - 96
    assert baecker["outcome"] == "transfer"
    assert baecker["payout_status"] == "pending"  # sent once its file is downloaded
    buch = lines[m["buch"]]
    assert buch["payments_cents"] == 5_599  # not the late 5,70 €
    assert buch["payout_cents"] == 5_599 - 168 - 32
    kiosk = lines[m["kiosk"]]
    assert (kiosk["payments_cents"], kiosk["topups_cents"]) == (700, 5_000)
    assert kiosk["outcome"] == "nothing_due"
    assert kiosk["payout_cents"] == 0
    assert kiosk["carry_out_cents"] == 700 - 5_000 - 21 - 4  # carried forward, negative
    noiban = lines[m["noiban"]]
    assert noiban["outcome"] == "no_valid_iban"
    assert noiban["hold_reason"].startswith("IBAN ungültig")
    assert noiban["payout_cents"] == 0
    assert noiban["carry_out_cents"] == 1_500 - 30 - 6
    for line in lines.values():
        assert line["carry_in_cents"] + line["payments_cents"] - line["voids_cents"] - line[
            "topups_cents"
        ] + line["returns_cents"] == (
            line["fee_net_cents"]
            + line["vat_cents"]
            + line["payout_cents"]
            + line["carry_out_cents"]
        )
    # -- against the ledger -----------------------------------------------------------------
    for name, merchant_id in m.items():
        expected = lines[merchant_id]["carry_out_cents"]
        if name == "buch":
            expected += town.late_total_cents  # booked after the cut-off, not yet settled
        assert town.payable(merchant_id) == expected, name
    assert staff.ledger_check()["ok"]
    transfers = [line for line in lines.values() if line["outcome"] == "transfer"]
    assert run["transfers"] == len(transfers) == 2
    assert run["payout_cents"] == sum(line["payout_cents"] for line in transfers)
    # -- the bank file ----------------------------------------------------------------------
    assert run["files"] == [1]
    xml = staff.request("GET", f"/v1/settlement/runs/{run['run_id']}/files/1").content
    xmlschema.XMLSchema(XSD).validate(xml.decode())
    ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}
    root = ET.fromstring(xml)
    assert root.find(".//p:GrpHdr/p:NbOfTxs", ns).text == "2"
    ctrl = root.find(".//p:GrpHdr/p:CtrlSum", ns).text
    assert round(float(ctrl) * 100) == run["payout_cents"]
    names = {n.text for n in root.findall(".//p:Cdtr/p:Nm", ns)}
    assert "Baeckerei Mueller GbR" in names
    ids = {n.text for n in root.findall(".//p:EndToEndId", ns)}
    assert ids == {line["end_to_end_id"] for line in transfers}
    # -- the same period twice, an overlap, a future month, a downloaded run: refused --------
    for body, code in (
        ({"month": f"{town.month[0]:%Y-%m}"}, "period_already_settled"),
        (
            {"first_day": str(town.month[1]), "last_day": str(town.later[0])},
            "period_already_settled",
        ),
        ({"month": f"{dt.date.today():%Y-%m}"}, "period_in_future"),
        ({"month": "2026-13"}, "period_invalid"),
    ):
        with pytest.raises(ApiError) as refused:
            staff.call("POST", "/v1/settlement/runs", json=body)
        assert refused.value.code == code, body
    with pytest.raises(ApiError) as refused:
        staff.call("POST", f"/v1/settlement/runs/{run['run_id']}/cancel")
    assert refused.value.code == "run_downloaded"
    # -- the next month holds exactly the late ones ---------------------------------------
    following = _create(server, town.later)
    next_lines = staff.call("GET", f"/v1/settlement/runs/{following['run_id']}")["lines"]
    assert {line["merchant_id"] for line in next_lines} == {m["kiosk"], m["noiban"], m["buch"]}
    (buch_next,) = [line for line in next_lines if line["merchant_id"] == m["buch"]]
    assert buch_next["payments_cents"] == town.late_total_cents
    csv_text = staff.request(
        "GET", f"/v1/settlement/runs/{following['run_id']}/statements/{m['buch']}.csv"
    ).text
    late_rows = [row for row in csv_text.splitlines()[1:] if row]
    assert len(late_rows) == 2
    assert all(row.endswith(town.month[1].isoformat()) for row in late_rows)  # the till's date
    # carried forward amounts come back
    (kiosk_next,) = [line for line in next_lines if line["merchant_id"] == m["kiosk"]]
    assert kiosk_next["carry_in_cents"] == kiosk["carry_out_cents"]
    # -- the statement: an invoice with the sums --------------------------------------------
    pdf = staff.request(
        "GET", f"/v1/settlement/runs/{run['run_id']}/statements/{m['baecker']}.pdf"
    ).content
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    for needed in (baecker["invoice_number"], "Bäckerei Müller", "31,54\u00a0€", "0,81\u00a0€"):
        assert needed in text, needed
    # -- the bank's statement ---------------------------------------------------------------
    baecker_e2e, buch_e2e = baecker["end_to_end_id"], buch["end_to_end_id"]
    card_for_transfer = staff.call("GET", f"/v1/cards/{_card_numbers(town)[0]}")
    closing = 80_000 - baecker["payout_cents"] + 2_500 + 999
    camt = statement(
        OPERATOR_IBAN,
        [
            Batch([BankLine(baecker["payout_cents"], False, baecker_e2e)], reference="B-1"),
            BankLine(buch["payout_cents"], True, buch_e2e, return_reason="AC04", reference="R-1"),
            BankLine(
                2_500,
                True,
                remittance=f"HC {card_for_transfer['card_number']} Aufladung Oma",
                counterparty="Erika Mustermann",
                reference="T-1",
            ),
            BankLine(999, True, remittance="Irgendwas", reference="U-1"),
        ],
        closing_cents=closing,
    )
    # before the import: the bank's balance is not what the ledger expects yet
    first = staff.call(
        "POST", "/v1/bank/statements", data=camt, headers={"Content-Type": "application/xml"}
    )
    assert first["booked"] == {
        "payout_executed": 1,
        "payout_returned": 1,
        "card_topup": 1,
        "unmatched": 1,
    }
    again = staff.call(
        "POST", "/v1/bank/statements", data=camt, headers={"Content-Type": "application/xml"}
    )
    assert (again["already_imported"], again["booked"]) == (4, {})
    assert staff.call("GET", f"/v1/cards/{card_for_transfer['card_number']}")["balance_cents"] == (
        card_for_transfer["balance_cents"] + 2_500
    )
    returned = staff.call("GET", f"/v1/settlement/runs/{run['run_id']}")["lines"]
    (buch_after,) = [line for line in returned if line["merchant_id"] == m["buch"]]
    assert (buch_after["payout_status"], buch_after["return_reason"]) == ("returned", "AC04")
    assert any(a["kind"] == "payout_returned" for a in staff.alerts())
    assert (
        town.payable(m["buch"])
        == buch["payout_cents"]
        + town.late_total_cents
        - buch_next["payments_cents"]
        + buch_next["carry_out_cents"]
    )
    (unmatched,) = staff.call("GET", "/v1/bank/unmatched")
    assert (unmatched["amount_cents"], unmatched["remittance"]) == (999, "Irgendwas")
    check = staff.call("GET", "/v1/settlement/float-check")
    assert check["ok"], check
    assert check["bank_closing_cents"] == closing
    assert staff.ledger_check()["ok"]
    # -- one posting missing: the float check names it --------------------------------------
    with town.engine.begin() as conn:
        txn_id, bank_id, cents = conn.execute(
            sa.text(
                "SELECT p.txn_id, p.account_id, p.amount_cents FROM postings p "
                "JOIN transactions t ON t.id = p.txn_id JOIN accounts a ON a.id = p.account_id "
                "WHERE t.kind = 'payout' AND a.kind = 'bank'"
            )
        ).one()
        conn.execute(
            sa.text("DELETE FROM postings WHERE txn_id = :t AND account_id = :a"),
            {"t": txn_id, "a": bank_id},
        )
        conn.execute(
            sa.text("UPDATE accounts SET balance_cents = balance_cents - :c WHERE id = :a"),
            {"c": cents, "a": bank_id},
        )
    broken = staff.call("GET", "/v1/settlement/float-check")
    assert not broken["ok"]
    names = {d["name"]: d for d in broken["differences"]}
    assert names["bank_balance"]["cents"] == -baecker["payout_cents"]
    assert "ledger" in names  # the transaction no longer sums to zero


def _card_numbers(town: Town) -> list[str]:
    with town.engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT number FROM cards WHERE uid IS NOT NULL ORDER BY id")
            ).scalars()
        )


def test_a_run_can_be_cancelled_until_its_file_is_downloaded(town: Town):
    staff = town.server.staff
    run = _create(town.server, town.month)
    before = {name: town.payable(mid) for name, mid in town.merchants.items()}
    cancelled = staff.call("POST", f"/v1/settlement/runs/{run['run_id']}/cancel")
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_by"] is not None
    after = {name: town.payable(mid) for name, mid in town.merchants.items()}
    paid = next(line for line in run["lines"] if line["merchant_id"] == town.merchants["baecker"])
    assert after["baecker"] == before["baecker"] + paid["payout_cents"] + 96
    with pytest.raises(ApiError) as refused:
        staff.call("GET", f"/v1/settlement/runs/{run['run_id']}/files/1")
    assert refused.value.code == "run_cancelled"
    # the same period can be settled again, with the same figures
    again = _create(town.server, town.month)
    assert again["payout_cents"] == run["payout_cents"]
    assert staff.ledger_check()["ok"]


def test_merchants_read_only_their_own_statements(town: Town):
    run = _create(town.server, town.month)
    mine, other = town.merchants["baecker"], town.merchants["buch"]
    shop = _merchant_login(town, mine)
    assert (
        shop.request(
            "GET", f"/v1/settlement/runs/{run['run_id']}/statements/{mine}.pdf"
        ).status_code
        == 200
    )
    for path in (
        f"/v1/settlement/runs/{run['run_id']}/statements/{other}.pdf",
        f"/v1/settlement/runs/{run['run_id']}/statements/{other}.csv",
        f"/v1/merchants/{other}/statements",
        f"/v1/settlement/runs/{run['run_id']}",
        f"/v1/settlement/runs/{run['run_id']}/files/1",
        "/v1/settlement/float-check",
    ):
        assert shop.request("GET", path).status_code == 403, path
    assert [s["run_id"] for s in shop.call("GET", f"/v1/merchants/{mine}/statements")] == [
        run["run_id"]
    ]


def test_bad_statements_change_nothing(town: Town):
    staff = town.server.staff
    run = _create(town.server, town.month)
    lines = staff.call("GET", f"/v1/settlement/runs/{run['run_id']}")["lines"]
    ids = [line["end_to_end_id"] for line in lines if line["end_to_end_id"]]
    before = staff.ledger_check()
    for data, code in (
        (b"<xml", "statement_invalid"),
        (statement(OTHER_IBAN, [], closing_cents=0), "statement_other_account"),
        (
            statement(
                OPERATOR_IBAN,
                [BankLine(100, False, None, remittance=f"Sammel {ids[0]} {ids[1]}")],
                closing_cents=0,
            ),
            "statement_ambiguous",
        ),
    ):
        response = staff.request(
            "POST", "/v1/bank/statements", data=data, headers={"Content-Type": "application/xml"}
        )
        assert response.json()["code"] == code
        assert response.status_code in (400, 409)
    after = staff.ledger_check()
    assert (after["transactions"], after["postings"]) == (
        before["transactions"],
        before["postings"],
    )
    assert staff.call("GET", "/v1/bank/unmatched") == []


def test_exports_and_the_bafin_figure(town: Town):
    staff = town.server.staff
    month = f"{town.month[0]:%Y-%m}"
    datev = staff.request("GET", "/v1/exports/datev", params={"month": month})
    text = datev.content.decode("cp1252")
    header, _columns, *rows = text.strip().split("\r\n")
    assert header.startswith("EXTF;700;21;Buchungsstapel")
    assert rows
    assert all(";S;EUR;" in row for row in rows)
    csv_text = staff.request("GET", "/v1/exports/transactions.csv", params={"month": month}).text
    assert csv_text.splitlines()[0].startswith("txn_id,date,time,kind")
    figure = staff.call("GET", "/v1/figures/payments-12-months")
    assert figure["payments_12_months_cents"] == 4_080 - 830 + 5_599 + 700 + 1_500 + 570
    assert figure["threshold_cents"] == 100_000_000
    assert figure["above_threshold"] is False


def _settle(town: Town, *args: str) -> subprocess.CompletedProcess[str]:
    server = town.server
    return subprocess.run(
        [sys.executable, "-m", "hcard.server.cli", "settle", *args, "--data-dir",
         str(server.data_dir), "--database-url", server.database_url],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_the_command_line_settles_too(town: Town, tmp_path):
    month = f"{town.month[0]:%Y-%m}"
    created = _settle(town, "create", "--month", month, "--user", "admin")
    assert created.returncode == 0, created.stderr
    run_id = json.loads(created.stdout[: created.stdout.index("\n}") + 2])["run_id"]
    assert "Abrechnungen / statements 4/4" in created.stdout
    bank_file = tmp_path / "bank.xml"
    saved = _settle(town, "file", str(run_id), "--out", str(bank_file), "--user", "admin")
    assert saved.returncode == 0, saved.stderr
    xmlschema.XMLSchema(XSD).validate(bank_file.read_text())
    folder = tmp_path / "statements"
    written = _settle(town, "statements", str(run_id), "--out", str(folder), "--user", "admin")
    assert written.returncode == 0, written.stderr
    assert len(list(folder.glob("*.pdf"))) == 4
    again = _settle(town, "create", "--month", month, "--user", "admin")
    assert again.returncode == 1
    assert "period_already_settled" in again.stderr
    assert "Dieser Zeitraum ist" in again.stderr
    check = _settle(town, "float-check")  # the funding statement matches the ledger
    assert check.returncode == 0, check.stdout
    assert json.loads(check.stdout)["ok"] is True
    # the nightly run sums the closed days for the office's overview, each day once
    assert json.loads(check.stdout)["days_summed"] > 0
    assert json.loads(_settle(town, "float-check").stdout)["days_summed"] == 0
    nobody = _settle(town, "cancel", str(run_id), "--user", "nobody")
    assert nobody.returncode != 0
    assert "no such account" in nobody.stderr


def test_two_runs_of_one_period_at_once_make_one(town: Town):
    """Both would pass the overlap check alone; the settlement lock lets exactly one win."""
    body = {"month": f"{town.month[0]:%Y-%m}"}
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(
            pool.map(
                lambda _: town.server.staff.request("POST", "/v1/settlement/runs", json=body),
                range(2),
            )
        )
    assert sorted(a.status_code for a in answers) == [200, 409]
    (refused,) = [a for a in answers if a.status_code == 409]
    assert refused.json()["code"] == "period_already_settled"
    with town.engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT count(*) FROM settlement_runs")).scalar_one()
    assert runs == 1
    assert town.server.staff.ledger_check()["ok"]


# --- what the review of the money logic found -----------------------------------------


def _import(staff, data: bytes):
    return staff.request(
        "POST", "/v1/bank/statements", data=data, headers={"Content-Type": "application/xml"}
    )


def test_a_bank_transfer_is_never_booked_by_hand_so_never_twice(town: Town):
    """The bank account moves only with the bank's statement: an office top-up 'bank' would
    top the card up a second time when the statement names the card."""
    number = _card_numbers(town)[0]
    refused = town.server.staff.request(
        "POST", f"/v1/cards/{number}/topup", json={"amount_cents": 5_000, "source": "bank"}
    )
    assert refused.status_code == 400
    assert refused.json()["code"] == "topup_by_statement"
    # a transfer without the card in its text waits for a person, then tops the card up once
    staff = town.server.staff
    before = staff.card(number)["balance_cents"]
    data = statement(
        OPERATOR_IBAN,
        [
            BankLine(
                3_000,
                True,
                remittance="Gutschein für Oma",
                counterparty="E. Muster",
                booking_date=town.later[1],
            )
        ],
        closing_cents=83_000,
        statement_id="S-2",
        day=town.later[1],
    )
    assert _import(staff, data).json()["booked"] == {"unmatched": 1}
    (line,) = staff.call("GET", "/v1/bank/unmatched")
    assigned = staff.call(
        "POST", f"/v1/bank/lines/{line['key']}/assign", json={"card_number": number}
    )
    assert assigned["match"] == "card_topup"
    assert staff.card(number)["balance_cents"] == before + 3_000
    again = staff.request(
        "POST", f"/v1/bank/lines/{line['key']}/assign", json={"card_number": number}
    )
    assert again.json()["code"] == "line_already_booked"
    assert staff.card(number)["balance_cents"] == before + 3_000
    assert staff.call("GET", "/v1/bank/unmatched") == []
    check = staff.call("GET", "/v1/settlement/float-check")
    assert check["ok"], check


def test_bank_charges_are_booked_as_the_operators_money(town: Town):
    staff = town.server.staff
    data = statement(
        OPERATOR_IBAN,
        [BankLine(850, False, remittance="Kontoführung 11/2026", booking_date=town.later[1])],
        closing_cents=80_000 - 850,
        statement_id="S-3",
        day=town.later[1],
    )
    _import(staff, data)
    check = staff.call("GET", "/v1/settlement/float-check")
    assert {d["name"] for d in check["differences"]} == {"unmatched_outflow"}
    (line,) = staff.call("GET", "/v1/bank/unmatched")
    staff.call("POST", f"/v1/bank/lines/{line['key']}/fee-withdrawal")
    check = staff.call("GET", "/v1/settlement/float-check")
    assert check["ok"], check
    assert staff.ledger_check()["ok"]


def test_the_same_booking_in_a_camt054_and_the_days_camt053_is_booked_once(town: Town):
    staff = town.server.staff
    number = _card_numbers(town)[1]
    before = staff.card(number)["balance_cents"]
    line = BankLine(2_500, True, remittance=f"HC {number}", booking_date=town.later[1])
    notice = (
        statement(OPERATOR_IBAN, [line], closing_cents=0, statement_id="N-1", day=town.later[1])
        .replace(b"camt.053.001.08", b"camt.054.001.08")
        .replace(b"BkToCstmrStmt", b"BkToCstmrDbtCdtNtfctn")
        .replace(b"<Stmt>", b"<Ntfctn>")
        .replace(b"</Stmt>", b"</Ntfctn>")
    )
    day_end = statement(
        OPERATOR_IBAN,
        [BankLine(2_500, True, remittance=f"HC {number}", booking_date=town.later[1],
                  reference="ANOTHER-REF")],
        closing_cents=82_500,
        statement_id="S-4",
        day=town.later[1],
    )  # fmt: skip
    assert _import(staff, notice).json()["booked"] == {"card_topup": 1}
    second = _import(staff, day_end).json()
    assert (second["already_imported"], second["booked"]) == (1, {})
    assert staff.card(number)["balance_cents"] == before + 2_500
    # two different transfers with the bank's "NONREF" on two days are two bookings
    nonref = [
        statement(
            OPERATOR_IBAN,
            [
                BankLine(
                    1_000,
                    True,
                    remittance=f"HC {number}",
                    reference="NONREF",
                    booking_date=town.later[1] + dt.timedelta(days=d),
                )
            ],
            closing_cents=82_500 + 1_000 * d,
            statement_id=f"S-NR-{d}",
            day=town.later[1] + dt.timedelta(days=d),
        )
        for d in (1, 2)
    ]
    for data in nonref:
        assert _import(staff, data).json()["booked"] == {"card_topup": 1}
    assert staff.card(number)["balance_cents"] == before + 4_500
    check = staff.call("GET", "/v1/settlement/float-check")
    assert check["ok"], check


def test_a_payout_not_yet_downloaded_cannot_be_executed_or_returned(town: Town):
    staff = town.server.staff
    run = _create(town.server, town.month)
    (line,) = [x for x in run["lines"] if x["merchant_id"] == town.merchants["baecker"]]
    data = statement(
        OPERATOR_IBAN,
        [
            BankLine(line["payout_cents"], True, line["end_to_end_id"], return_reason="AC04"),
            BankLine(line["payout_cents"], False, line["end_to_end_id"]),
        ],
        closing_cents=80_000,
        statement_id="S-5",
    )
    assert _import(staff, data).json()["booked"] == {"unmatched": 2}
    after = staff.call("GET", f"/v1/settlement/runs/{run['run_id']}")["lines"]
    assert {x["payout_status"] for x in after if x["end_to_end_id"]} == {"pending"}
    # and the run can still be cancelled, leaving nothing in transit
    staff.call("POST", f"/v1/settlement/runs/{run['run_id']}/cancel")
    check = staff.call("GET", "/v1/settlement/float-check")
    assert check["owed_cents"]["in_transit"] == 0


def test_runs_go_in_order_and_only_the_last_is_cancelled(town: Town):
    staff = town.server.staff
    later = _create(town.server, town.later)  # the later month first...
    with pytest.raises(ApiError) as refused:
        _create(town.server, town.month)  # ... and the earlier one is refused
    assert refused.value.code == "period_out_of_order"
    staff.call("POST", f"/v1/settlement/runs/{later['run_id']}/cancel")
    first = _create(town.server, town.month)
    second = _create(town.server, town.later)
    with pytest.raises(ApiError) as refused:
        staff.call("POST", f"/v1/settlement/runs/{first['run_id']}/cancel")
    assert refused.value.code == "run_not_last"
    staff.call("POST", f"/v1/settlement/runs/{second['run_id']}/cancel")
    staff.call("POST", f"/v1/settlement/runs/{first['run_id']}/cancel")
    for merchant_id in town.merchants.values():  # everything back to unsettled
        assert town.payable(merchant_id) >= 0 or merchant_id == town.merchants["kiosk"]
    assert staff.ledger_check()["ok"]


def test_a_long_town_name_with_umlauts_does_not_break_the_bank_file(town: Town):
    staff = town.server.staff
    staff.call(
        "PATCH",
        f"/v1/merchants/{town.merchants['buch']}",
        json={"town": "Ä" * 35, "street": "Ü" * 70, "holder_name": "Büchergilde"},
    )
    run = _create(town.server, town.month)
    xml = staff.request("GET", f"/v1/settlement/runs/{run['run_id']}/files/1").content
    xmlschema.XMLSchema(XSD).validate(xml.decode())


def test_a_cancelled_runs_statement_is_no_invoice(town: Town):
    staff = town.server.staff
    run = _create(town.server, town.month)
    mine = town.merchants["baecker"]
    shop = _merchant_login(town, mine)
    path = f"/v1/settlement/runs/{run['run_id']}/statements/{mine}"
    assert shop.request("GET", f"{path}.pdf").status_code == 200
    staff.call("POST", f"/v1/settlement/runs/{run['run_id']}/cancel")
    assert shop.request("GET", f"{path}.pdf").status_code == 404
    assert shop.call("GET", f"/v1/merchants/{mine}/statements") == []
    assert "STORNIERT" in staff.request("GET", f"{path}.html").text
    pdf = staff.request("GET", f"{path}.pdf").content
    assert "STORNIERT" in " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.parametrize(
    ("amount", "e2e"),
    [("0.00", None), ("1E+30", None), ("10.00", "X" * 36)],
)
def test_odd_statement_lines_are_refused_not_a_500(town: Town, amount, e2e):
    data = statement(OPERATOR_IBAN, [BankLine(1_000, True, e2e)], closing_cents=0).replace(
        b'<Amt Ccy="EUR">10.00</Amt>', f'<Amt Ccy="EUR">{amount}</Amt>'.encode()
    )
    response = _import(town.server.staff, data)
    assert response.status_code == 400
    assert response.json()["code"] == "statement_invalid"


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_statement_workers_die_with_a_server_stopped_mid_run(town: Town):
    """The statements are made by spawned workers after a run: a server killed meanwhile
    (kill -9, a crash) must not leave them behind (they once filled the machine's memory)."""
    server = town.server
    _create(server, town.month)
    deadline = time.monotonic() + 30
    while not (workers := _children(server.process.pid)):
        assert time.monotonic() < deadline, "no statement workers started"
        time.sleep(0.05)
    server.process.kill()
    server.process.wait(timeout=15)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "statement workers outlived their server"
        time.sleep(0.1)


def test_a_deactivated_merchant_is_paid_out_below_the_minimum(server_factory):
    """The minimum payout waits for more to come; a deactivated merchant takes no more, so
    its small amount is paid, not carried forward for ever."""
    server = server_factory(env={"HCARD_MINIMUM_PAYOUT_CENTS": "2500"})
    staff = server.staff
    open_shop = staff.create_merchant("Offener Laden", GOOD_IBAN, fee_bp=0)
    closed_shop = staff.create_merchant("Geschlossener Laden", GOOD_IBAN, fee_bp=0)
    tills = [server.terminal(open_shop), server.terminal(closed_shop)]
    number, uid = server.new_card(5_000)
    for counter, till in enumerate(tills, start=1):
        record = till.payment(number, uid, 1_000, counter=counter)
        assert till.authorise(record).json()["outcome"] == "approved"
        assert _statuses(till.sync([record])) == ["applied"]
    month = months_ago(1)
    engine = sa.create_engine(server.database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE transactions SET created_s = :w"), {"w": at(month[0])})
    engine.dispose()
    staff.revoke_terminal(tills[1].terminal_id)
    browser = PageClient(server.url)
    browser.login(ADMIN_USER, ADMIN_PASSWORD)
    browser.post(f"/office/merchants/{closed_shop}/deactivate")
    assert staff.call("GET", f"/v1/merchants/{closed_shop}")["active"] is False

    lines = {line["merchant_id"]: line for line in _create(server, month)["lines"]}
    assert lines[open_shop]["outcome"] == "below_minimum"
    assert lines[open_shop]["carry_out_cents"] == 1_000
    assert lines[closed_shop]["outcome"] == "transfer"
    assert (lines[closed_shop]["payout_cents"], lines[closed_shop]["carry_out_cents"]) == (1_000, 0)


def test_a_transfer_naming_an_old_card_tops_up_the_card_that_replaced_it(server_factory):
    """The cardholder may quote the card they lost: the money goes to its replacement. A
    blocked or flagged card without one gets nothing by itself: the line waits for a person,
    who may book it onto a card like a top-up at the office (not onto a blocked card)."""
    server = server_factory()
    staff = server.staff
    lost, _ = server.new_card(0)
    middle, _ = server.new_card(0)
    live, _ = server.new_card(0)
    staff.transfer(lost, middle)
    staff.transfer(middle, live)  # replaced twice: lost → middle → live
    stolen, _ = server.new_card(0)
    staff.block(stolen)
    overdrawn, _ = server.new_card(100)
    correction = {"card_number": overdrawn, "amount_cents": -200, "reason": "test"}
    staff.call("POST", "/v1/ledger/corrections", json={**correction, "allow_below_zero": True})
    gone, _ = server.new_card(0)
    successor, _ = server.new_card(0)
    staff.transfer(gone, successor)
    staff.block(successor)  # its replacement was lost too: nobody to top up by itself

    named = {lost: 1_000, stolen: 2_000, overdrawn: 3_000, gone: 4_000}
    data = statement(
        OPERATOR_IBAN,
        [BankLine(cents, True, remittance=f"HC {number}") for number, cents in named.items()],
        closing_cents=10_000,
    )
    assert _import(staff, data).json()["booked"] == {"card_topup": 1, "unmatched": 3}
    balances = {number: staff.card(number)["balance_cents"] for number in named}
    assert balances == {lost: 0, stolen: 0, overdrawn: -100, gone: 0}
    assert staff.card(live)["balance_cents"] == 1_000
    assert staff.card(successor)["balance_cents"] == 0

    waiting = {
        line["amount_cents"]: line["key"] for line in staff.call("GET", "/v1/bank/unmatched")
    }
    assert set(waiting) == {2_000, 3_000, 4_000}
    for cents, card in ((2_000, stolen), (4_000, successor)):
        refused = staff.request(
            "POST", f"/v1/bank/lines/{waiting[cents]}/assign", json={"card_number": card}
        )
        assert refused.json()["code"] == "card_blocked", card
    staff.call("POST", f"/v1/bank/lines/{waiting[3_000]}/assign", json={"card_number": overdrawn})
    assert staff.card(overdrawn)["balance_cents"] == 2_900  # its debt paid from the transfer
    staff.call("POST", f"/v1/bank/lines/{waiting[2_000]}/assign", json={"card_number": live})
    assert staff.card(live)["balance_cents"] == 3_000
