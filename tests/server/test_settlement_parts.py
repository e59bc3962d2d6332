"""The pure parts of settlement: rounding, payout decision, SEPA file, bank statements,
DATEV and CSV exports, the statement as PDF. No database here; the service has its own."""

from __future__ import annotations

import csv
import datetime as dt
import io
import xml.etree.ElementTree as ET

import pytest
from fixtures.camt import BankLine, Batch, statement
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfReader

from hcard.server.settlement import camt, exports, rules, sepa
from hcard.server.settlement import statement as statements
from hcard.server.vocabulary import PayoutOutcome

OPERATOR_IBAN = "DE02120300000000202051"
MERCHANT_IBAN = "DE89370400440532013000"

# --- rounding and the payout -----------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "rate", "net"),
    [
        (100, 250, 3),  # 2.5 cents: half up
        (99, 250, 2),  # 2.475
        (20, 250, 1),  # 0.5: half up
        (19, 250, 0),  # 0.475
        (-20, 250, -1),  # a credit: half away from zero
        (150_800, 250, 3_770),
        (0, 250, 0),
        (1_000_000, 10_000, 1_000_000),
    ],
)
def test_fee_is_rounded_once_half_up(base, rate, net):
    assert rules.fee(base, rate, 0).net_cents == net


def test_vat_on_the_rounded_fee():
    charged = rules.fee(150_800, 250, 1_900)
    assert (charged.net_cents, charged.vat_cents, charged.gross_cents) == (3_770, 716, 4_486)
    small_business = rules.fee(150_800, 250, 0)
    assert (small_business.vat_cents, small_business.gross_cents) == (0, 3_770)


def test_one_rounding_per_merchant_not_per_payment():
    # 200 payments of 0,10 € at 2,5 %: 0.25 cent each would round to 0 each; once: 50 cents
    assert rules.fee(200 * 10, 250, 0).net_cents == 50


def _payout(carry=0, payments=10_000, voids=0, topups=0, returns=0, minimum=0, iban=True):
    moves = rules.Movements(
        payments_cents=payments, voids_cents=voids, topups_cents=topups, returns_cents=returns
    )
    return rules.payout(
        carry, moves, rate_bp=300, vat_bp=1_900, minimum_cents=minimum, iban_valid=iban
    )


def test_payout_outcomes():
    paid = _payout()
    assert (paid.outcome, paid.payout_cents, paid.carry_out_cents) == (
        PayoutOutcome.TRANSFER,
        10_000 - 357,
        0,
    )
    negative = _payout(payments=1_000, topups=5_000)
    assert negative.outcome is PayoutOutcome.NOTHING_DUE
    assert negative.payout_cents == 0
    assert negative.carry_out_cents == 1_000 - 5_000 - 36
    small = _payout(payments=1_000, minimum=2_500)
    assert (small.outcome, small.payout_cents, small.carry_out_cents) == (
        PayoutOutcome.BELOW_MINIMUM,
        0,
        1_000 - 36,
    )
    held = _payout(iban=False)
    assert (held.outcome, held.payout_cents, held.carry_out_cents) == (
        PayoutOutcome.NO_VALID_IBAN,
        0,
        10_000 - 357,
    )
    # what was carried forward comes back in the next run
    later = _payout(carry=negative.carry_out_cents, payments=10_000)
    assert later.payout_cents == 10_000 - 357 + negative.carry_out_cents


@given(
    carry=st.integers(-(10**8), 10**8),
    payments=st.integers(0, 10**9),
    voids=st.integers(0, 10**8),
    topups=st.integers(0, 10**8),
    rate=st.integers(0, 10_000),
    vat=st.sampled_from([0, 700, 1_900]),
    minimum=st.integers(0, 10**5),
    iban=st.booleans(),
)
def test_every_payout_adds_up_to_the_cent(carry, payments, voids, topups, rate, vat, minimum, iban):
    moves = rules.Movements(payments_cents=payments, voids_cents=voids, topups_cents=topups)
    result = rules.payout(
        carry, moves, rate_bp=rate, vat_bp=vat, minimum_cents=minimum, iban_valid=iban
    )
    assert carry + moves.net_cents == (
        result.fee.gross_cents + result.payout_cents + result.carry_out_cents
    )
    assert result.payout_cents >= 0
    assert (result.payout_cents > 0) == (result.outcome is PayoutOutcome.TRANSFER)


# --- the SEPA file ---------------------------------------------------------------------

DEBTOR = sepa.Debtor(
    "Stadtmarketing Hattingen e.V.",
    OPERATOR_IBAN,
    "BYLADEM1001",
    sepa.Address("Rathausplatz", "1", "45525", "Hattingen"),
)


def _transfers(count: int) -> list[sepa.Transfer]:
    return [
        sepa.Transfer(
            name="Bäckerei Müller & Söhne GbR",
            iban=MERCHANT_IBAN,
            bic="",
            amount_cents=1_000 + i,
            end_to_end_id=sepa.end_to_end_id(7, i + 1),
            description="Hattingen Card Abrechnung 11/2026",
            address=sepa.Address("Große Weilstraße", "12a", "45525", "Hattingen"),
        )
        for i in range(count)
    ]


def _ns(xml: bytes) -> dict[str, str]:
    return {"p": ET.fromstring(xml).tag[1:].split("}")[0]}


def test_sepa_file_pain_001_001_09_validates_with_structured_addresses():
    (data,) = sepa.build_files(DEBTOR, _transfers(3), when=dt.date(2026, 12, 2))
    root = ET.fromstring(data)
    ns = _ns(data)
    assert ns["p"] == "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
    assert root.find(".//p:GrpHdr/p:NbOfTxs", ns).text == "3"
    assert root.find(".//p:GrpHdr/p:CtrlSum", ns).text == "30.03"
    names = [node.text for node in root.findall(".//p:Cdtr/p:Nm", ns)]
    assert names == ["Baeckerei Mueller & Soehne GbR"] * 3  # not "Backerei Muller"
    streets = [node.text for node in root.findall(".//p:Cdtr/p:PstlAdr/p:StrtNm", ns)]
    assert streets == ["Grosse Weilstrasse"] * 3
    assert root.find(".//p:AdrTp", ns) is None  # sepaxml's invalid AdrTp for .09
    ids = [node.text for node in root.findall(".//p:EndToEndId", ns)]
    assert ids == ["HC-R7-M1", "HC-R7-M2", "HC-R7-M3"]
    assert root.find(".//p:ReqdExctnDt/p:Dt", ns).text == "2026-12-02"


def test_sepa_file_pain_001_001_03_for_older_bank_software():
    (data,) = sepa.build_files(
        DEBTOR, _transfers(2), when=dt.date(2026, 12, 2), schema=sepa.Schema.PAIN_001_001_03
    )
    assert _ns(data)["p"] == "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"


def test_sepa_files_split_at_the_banks_cap():
    files = sepa.build_files(DEBTOR, _transfers(5), when=dt.date(2026, 12, 2), max_per_file=2)
    counts = [ET.fromstring(f).find(".//p:GrpHdr/p:NbOfTxs", _ns(f)).text for f in files]
    assert counts == ["2", "2", "1"]
    assert sepa.build_files(DEBTOR, [], when=dt.date(2026, 12, 2)) == []


def test_a_file_that_does_not_validate_is_never_offered():
    bad = [
        sepa.Transfer(
            name="X",
            iban=MERCHANT_IBAN,
            bic="NOT A BIC",
            amount_cents=100,
            end_to_end_id="HC-R1-M1",
            description="x",
        )
    ]
    with pytest.raises(sepa.SepaFileInvalidError):
        sepa.build_files(DEBTOR, bad, when=dt.date(2026, 12, 2))


@pytest.mark.parametrize(
    ("earliest", "expected"),
    [
        (dt.date(2026, 12, 2), dt.date(2026, 12, 2)),  # a Wednesday
        (dt.date(2026, 12, 5), dt.date(2026, 12, 7)),  # Saturday → Monday
        (dt.date(2026, 12, 24), dt.date(2026, 12, 24)),  # Christmas Eve is a TARGET2 day
        (dt.date(2026, 12, 25), dt.date(2026, 12, 28)),  # 25th, 26th closed, then a Sunday
        (dt.date(2027, 3, 26), dt.date(2027, 3, 30)),  # Good Friday, Easter Monday 2027
        (dt.date(2027, 5, 1), dt.date(2027, 5, 3)),  # Labour Day (a Saturday)
    ],
)
def test_execution_date_is_a_target2_business_day(earliest, expected):
    assert sepa.execution_date(earliest) == expected


def test_iban_check():
    assert sepa.iban_ok(MERCHANT_IBAN)
    assert not sepa.iban_ok("DE89370400440532013001")
    assert not sepa.iban_ok("")


# --- bank statements -------------------------------------------------------------------


def test_camt053_lines_batch_return_and_closing_balance():
    data = statement(
        OPERATOR_IBAN,
        [
            Batch(
                [
                    BankLine(1_000, False, "HC-R7-M1"),
                    BankLine(2_500, False, "HC-R7-M2"),
                ],
                reference="BATCH-1",
            ),
            BankLine(2_500, True, "HC-R7-M2", return_reason="AC04", reference="RET-1"),
            BankLine(5_000, True, None, "HC 9276 0000 0000 0018 Aufladung", counterparty="Erika"),
            BankLine(12_345, True, None, "Bareinzahlung", bank_code=("PMNT", "CNTR", "CDPT")),
        ],
        closing_cents=1_234_567,
    )
    parsed = camt.parse(data)
    assert (parsed.message, parsed.iban, parsed.closing_balance_cents) == (
        "camt.053",
        OPERATOR_IBAN,
        1_234_567,
    )
    assert parsed.closing_date == dt.date(2026, 12, 2)
    batch_a, batch_b, returned, topup, deposit = parsed.lines
    assert (batch_a.amount_cents, batch_a.credit, batch_a.end_to_end_id) == (
        1_000,
        False,
        "HC-R7-M1",
    )
    assert (batch_b.amount_cents, batch_b.end_to_end_id) == (2_500, "HC-R7-M2")
    assert batch_a.key != batch_b.key
    assert (returned.credit, returned.return_reason, returned.end_to_end_id) == (
        True,
        "AC04",
        "HC-R7-M2",
    )
    assert topup.end_to_end_id is None  # NOTPROVIDED
    assert "9276 0000 0000 0018" in topup.remittance
    assert topup.counterparty == "Erika"
    assert deposit.bank_code == "PMNT/CNTR/CDPT"
    # the same file again: the same keys
    assert [line.key for line in camt.parse(data).lines] == [line.key for line in parsed.lines]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<not xml",
        b"<Document/>",
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"/>',
        # an entity expansion (billion laughs) is refused, not expanded
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
        b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">&b;</Document>',
    ],
)
def test_not_a_statement_is_refused(data):
    with pytest.raises(camt.StatementInvalidError):
        camt.parse(data)


def test_amounts_are_exact_cents_or_refused():
    assert camt.cents("1234.5") == 123_450
    assert camt.cents("0.01") == 1
    for text in ("1.001", "-5.00", "NaN", "1e3x", None):
        with pytest.raises(camt.StatementInvalidError):
            camt.cents(text)
    wrong_sign = statement(OPERATOR_IBAN, [BankLine(100, True)], closing_cents=0).replace(
        b"<CdtDbtInd>CRDT</CdtDbtInd>", b"<CdtDbtInd>PLUS</CdtDbtInd>"
    )
    with pytest.raises(camt.StatementInvalidError):
        camt.parse(wrong_sign)


# --- exports ---------------------------------------------------------------------------

BOOKINGS = [
    exports.Booking(
        1,
        dt.datetime(2026, 11, 30, 23, 30, tzinfo=exports.LOCAL).timestamp(),
        "settlement",
        "Abrechnung 11/2026",
        [
            exports.Entry("merchant:3", -11_000),
            exports.Entry("fees", 1_000),
            exports.Entry("in_transit", 10_000),
        ],
    ),
    exports.Booking(
        2,
        dt.datetime(2026, 11, 2, 9, 0, tzinfo=exports.LOCAL).timestamp(),
        "topup",
        "Aufladung (bar)",
        [exports.Entry("cash", -5_000), exports.Entry("card:9276000000000018", 5_000)],
        user="buero",
    ),
]


def test_datev_buchungsstapel():
    text = exports.datev(
        BOOKINGS,
        exports.DatevAccounts(),
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 11, 30),
        created=dt.datetime(2026, 12, 1, 8, 0),
        fiscal_year_start=dt.date(2026, 1, 1),
    )
    header, columns, *lines = text.strip().split("\r\n")
    assert header.startswith("EXTF;700;21;Buchungsstapel;13;")
    assert ";20261101;20261130;" in header
    assert columns.startswith("Umsatz (ohne Soll/Haben-Kz);Soll/Haben-Kennzeichen")
    assert lines == [
        "10,00;S;EUR;;;;70003;8400;;3011;1;;;Abrechnung 11/2026",
        "100,00;S;EUR;;;;70003;1360;;3011;1;;;Abrechnung 11/2026",
        "50,00;S;EUR;;;;1000;1700;;0211;2;;;Aufladung (bar)",
    ]


def test_plain_csv_has_every_posting():
    rows = exports.plain_csv(BOOKINGS).strip().split("\r\n")
    assert rows[0] == ",".join(exports.CSV_COLUMNS)
    assert len(rows) == 1 + 5
    assert "2,2026-11-02,09:00:00,topup,Aufladung (bar),cash,-5000,-50.00,,,buero," in rows


# --- the statement ---------------------------------------------------------------------


def test_statement_pdf_is_an_invoice_with_the_sums():
    data = statements.StatementData(
        invoice_number="2026-000042",
        issued=dt.date(2026, 12, 1),
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 11, 30),
        operator=statements.Party(
            "Stadtmarketing Hattingen e.V.", ["Rathausplatz 1", "45525 Hattingen"], "323/5702/1234"
        ),
        merchant=statements.Party(
            "Bäckerei Müller", ["Große Weilstraße 12a", "45525 Hattingen"], iban=MERCHANT_IBAN
        ),
        merchant_id=3,
        items=[
            statements.Item(
                dt.datetime(2026, 11, 3, 12, 0),
                statements.ItemKind.PAYMENT,
                "",
                1_250,
                "Kasse 1",
                "7",
            ),
            statements.Item(
                dt.datetime(2026, 11, 3, 12, 5),
                statements.ItemKind.VOID,
                "",
                -1_250,
                "Kasse 1",
                "7",
            ),
            statements.Item(
                dt.datetime(2026, 11, 2, 8, 0),
                "payment",
                "",
                800,
                "Kasse 2",
                "3",
                dt.date(2026, 10, 31),
            ),
        ],
        payments_cents=2_050,
        voids_cents=1_250,
        topups_cents=0,
        returns_cents=0,
        carry_in_cents=0,
        fee_rate_bp=250,
        fee_net_cents=20,
        vat_bp=1_900,
        vat_cents=4,
        payout_cents=776,
        carry_out_cents=0,
        outcome="transfer",
        execution_date=dt.date(2026, 12, 2),
        end_to_end_id="HC-R7-M3",
    )
    pdf = statements.render_pdf(data)
    assert pdf.startswith(b"%PDF")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    for needed in (
        "2026-000042",  # sequential invoice number
        "01.12.2026",  # invoice date
        "Stadtmarketing Hattingen e.V.",
        "Rathausplatz 1",
        "323/5702/1234",  # the operator's tax number
        "Bäckerei Müller",
        "Große Weilstraße 12a",
        "01.11.2026 – 30.11.2026",  # the service period
        "0,20\u00a0€",  # net
        "19\u00a0%",  # rate
        "0,04\u00a0€",  # VAT
        "0,24\u00a0€",  # gross
        "7,76\u00a0€",  # payout
        "HC-R7-M3",
        "31.10.2026",  # a late payment, with the date its till recorded
    ):
        assert needed in text, needed
    html = statements.render_html(data)
    assert "Bäckerei Müller" in html


def test_statement_csv_cells_are_never_formulas():
    """A till's name is typed by people: in the merchant's spreadsheet it stays text."""
    names = ['=HYPERLINK("https://evil.example","Kasse")', "+1", "-1", "@SUM(A1)", "\tx"]
    data = statements.StatementData(
        invoice_number="2026-000043",
        issued=dt.date(2026, 12, 1),
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 11, 30),
        operator=statements.Party("Stadtmarketing Hattingen e.V.", ["Rathausplatz 1"]),
        merchant=statements.Party("Laden", ["Markt 1"], iban=MERCHANT_IBAN),
        merchant_id=4,
        items=[
            statements.Item(
                dt.datetime(2026, 11, 3, 12, n), statements.ItemKind.VOID, "", -500, name, "=1"
            )
            for n, name in enumerate(["Kasse 1", *names])
        ],
        payments_cents=0,
        voids_cents=2_500,
        topups_cents=0,
        returns_cents=0,
        carry_in_cents=0,
        fee_rate_bp=250,
        fee_net_cents=0,
        vat_bp=1_900,
        vat_cents=0,
        payout_cents=0,
        carry_out_cents=0,
        outcome=PayoutOutcome.NOTHING_DUE,
    )
    rows = list(csv.reader(io.StringIO(statements.render_csv(data))))
    tills = [row[2] for row in rows[1:]]
    assert tills == ["Kasse 1", *(f"'{name}" for name in names)]
    assert {row[3] for row in rows[1:]} == {"'=1"}
    assert {row[4] for row in rows[1:]} == {"-500"}  # amounts stay numbers
