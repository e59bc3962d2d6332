"""The bank's statements in: camt.053 (end of day) and camt.054 (notifications), parsed.

ISO 20022 XML, read with `defusedxml` (no entities, no DTD: a statement file comes from
outside), namespace-agnostic so that the versions German banks send (camt.053.001.02 up
to .08, camt.054 likewise) all read the same. Amounts are decimal strings and become
integer cents exactly (`Decimal`, never a float); a third decimal, a negative amount or a
missing credit/debit indicator makes the whole file `StatementInvalidError`.

A booked entry with a batch of transactions (our payouts are sent as one batch) has one
`TxDtls` per transaction: each becomes its own `Line` with its own EndToEndId and amount.
Every line has a stable `key`, so importing the same statement twice finds the lines it
already booked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

_NS = re.compile(r"^\{urn:iso:std:iso:20022:tech:xsd:(camt\.05[34])\.001\.\d\d\}Document$")
_NOT_PROVIDED = "NOTPROVIDED"
#: references banks write where there is none: never part of a line's identity
_NO_REFERENCE = {"", "NONREF", "NOTPROVIDED"}
#: a booking of a billion euros is a damaged file, not a town's bank account
_MAX_AMOUNT = Decimal(10) ** 9
E2E_MAX = 35


class StatementInvalidError(ValueError):
    """Not a camt.053/054 statement we can read; the message says why (English, for logs)."""


@dataclass(frozen=True)
class Line:
    key: str  # stable identity of this line across imports
    amount_cents: int  # positive
    credit: bool  # money in (CRDT) or out (DBIT)
    booking_date: dt.date | None
    end_to_end_id: str | None
    remittance: str  # all unstructured remittance lines, joined
    return_reason: str | None  # e.g. AC04 (account closed), AC01 (wrong IBAN)
    counterparty: str
    bank_code: str  # domain/family/sub-family or proprietary code
    reversal: bool = False

    @property
    def signed_cents(self) -> int:
        return self.amount_cents if self.credit else -self.amount_cents


@dataclass(frozen=True)
class Statement:
    message: str  # camt.053 or camt.054
    statement_id: str
    iban: str
    closing_balance_cents: int | None  # camt.053 only: CLBD
    closing_date: dt.date | None
    lines: list[Line] = field(default_factory=list)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: Element, name: str) -> Iterator[Element]:
    for child in element:
        if _local(child.tag) == name:
            yield child


def _child(element: Element | None, *path: str) -> Element | None:
    for name in path:
        if element is None:
            return None
        element = next(_children(element, name), None)
    return element


def _text(element: Element | None, *path: str) -> str | None:
    found = _child(element, *path)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def _all(element: Element, name: str) -> Iterator[Element]:
    for child in element.iter():
        if _local(child.tag) == name:
            yield child


def cents(text: str | None, *, zero: bool = False) -> int:
    """`"1234.5"` → 123450; refuse anything that is not a positive amount (or zero, for a
    balance) with ≤ 2 decimals."""
    if text is None:
        raise StatementInvalidError("amount missing")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise StatementInvalidError(f"not an amount: {text!r}") from None
    try:
        exact = value.is_finite() and value == value.quantize(Decimal("0.01"))
    except InvalidOperation:  # 1E+30: more digits than quantize keeps
        exact = False
    if not exact or value < 0 or (value == 0 and not zero) or value >= _MAX_AMOUNT:
        raise StatementInvalidError(f"not an amount in cents: {text!r}")
    return int(value * 100)


def _credit(element: Element) -> bool:
    indicator = _text(element, "CdtDbtInd")
    if indicator not in ("CRDT", "DBIT"):
        raise StatementInvalidError(f"credit/debit indicator missing or wrong: {indicator!r}")
    return indicator == "CRDT"


def _date(element: Element | None, *path: str) -> dt.date | None:
    node = _child(element, *path)
    if node is None:
        return None
    text = _text(node, "Dt") or (_text(node, "DtTm") or "")[:10]
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        raise StatementInvalidError(f"not a date: {text!r}") from None


def _bank_code(element: Element) -> str:
    domain = _child(element, "BkTxCd", "Domn")
    if domain is not None:
        parts = [
            _text(domain, "Cd"),
            _text(domain, "Fmly", "Cd"),
            _text(domain, "Fmly", "SubFmlyCd"),
        ]
        return "/".join(part or "" for part in parts)
    return _text(element, "BkTxCd", "Prtry", "Cd") or ""


def _party_name(details: Element, credit: bool) -> str:
    # the other side: who paid us (debtor) on a credit, whom we paid (creditor) on a debit
    role = "Dbtr" if credit else "Cdtr"
    parties = _child(details, "RltdPties")
    return _text(parties, role, "Nm") or _text(parties, role, "Pty", "Nm") or ""


def _lines(entry: Element) -> Iterator[Line]:
    """The entry's lines; their `key` is set by `parse`, which sees the whole statement."""
    credit = _credit(entry)
    entry_cents = cents(_text(entry, "Amt"))
    reversal = (_text(entry, "RvslInd") or "").lower() == "true"
    booking = _date(entry, "BookgDt")
    code = _bank_code(entry)
    details = list(_all(entry, "TxDtls"))
    if not details:
        details = [entry]
    for detail in details:
        if len(details) == 1:
            amount = entry_cents
        else:  # a batch: each transaction carries its own amount
            amount = cents(_text(detail, "Amt") or _text(detail, "AmtDtls", "TxAmt", "Amt"))
        e2e = _text(detail, "Refs", "EndToEndId")
        if e2e is not None and len(e2e) > E2E_MAX:
            raise StatementInvalidError(f"EndToEndId longer than {E2E_MAX}: {e2e[:50]!r}")
        remittance = " ".join(
            (node.text or "").strip() for node in _all(detail, "Ustrd") if node.text
        )
        yield Line(
            key="",
            amount_cents=amount,
            credit=credit,
            booking_date=booking,
            end_to_end_id=None if e2e in (None, "", _NOT_PROVIDED) else e2e,
            remittance=remittance,
            return_reason=_text(detail, "RtrInf", "Rsn", "Cd"),
            counterparty=_party_name(detail, credit),
            bank_code=code,
            reversal=reversal,
        )


def _keyed(iban: str, lines: list[Line]) -> list[Line]:
    """Give each line its key: what the booking is (account, day, amount, direction, the
    transfer's reference and text), not where it stands in which file. So the same booking
    in a camt.054 and then in the day's camt.053 is one line, while two equal bookings of
    one day in one file are told apart by their order (`#2`). The bank's own reference is
    left out: banks write "NONREF" or a different one per message type."""
    seen: dict[str, int] = {}
    keyed = []
    for line in lines:
        what = "|".join(
            (
                iban,
                line.booking_date.isoformat() if line.booking_date else "",
                str(line.signed_cents),
                line.end_to_end_id or "",
                line.remittance,
                line.return_reason or "",
                str(line.reversal),
            )
        )
        seen[what] = seen.get(what, 0) + 1
        digest = hashlib.sha256(f"{what}#{seen[what]}".encode()).hexdigest()[:32]
        keyed.append(dataclasses.replace(line, key=digest))
    return keyed


def parse(data: bytes) -> Statement:
    """The statement in `data`; StatementInvalidError for anything else."""
    try:
        root = ElementTree.fromstring(data)
    except (ElementTree.ParseError, DefusedXmlException, ValueError) as error:
        raise StatementInvalidError(f"not well-formed XML: {error}") from None
    match = _NS.match(root.tag)
    if match is None:
        raise StatementInvalidError(f"not a camt.053/054 document: {root.tag[:100]}")
    message = match.group(1)
    body = _child(root, "BkToCstmrStmt" if message == "camt.053" else "BkToCstmrDbtCdtNtfctn")
    part = _child(body, "Stmt" if message == "camt.053" else "Ntfctn")
    if body is None or part is None:
        raise StatementInvalidError("no statement in the document")
    if len(list(_children(body, "Stmt" if message == "camt.053" else "Ntfctn"))) != 1:
        raise StatementInvalidError("one account statement per file, please")
    statement_id = _text(part, "Id") or _text(body, "GrpHdr", "MsgId")
    iban = _text(part, "Acct", "Id", "IBAN")
    if not statement_id or not iban:
        raise StatementInvalidError("statement id or account IBAN missing")
    closing_cents: int | None = None
    closing_date: dt.date | None = None
    for balance in _children(part, "Bal"):
        if _text(balance, "Tp", "CdOrPrtry", "Cd") == "CLBD":
            amount = cents(_text(balance, "Amt"), zero=True)
            closing_cents = amount if _credit(balance) else -amount
            closing_date = _date(balance, "Dt")
    lines: list[Line] = []
    for entry in _children(part, "Ntry"):
        status = _text(entry, "Sts", "Cd") or _text(entry, "Sts")  # .08 nests the code
        if status not in (None, "BOOK"):
            continue  # pending or information only: not money yet
        lines.extend(_lines(entry))
    lines = _keyed(iban.replace(" ", "").upper(), lines)
    return Statement(
        message=message,
        statement_id=statement_id,
        iban=iban.replace(" ", "").upper(),
        closing_balance_cents=closing_cents,
        closing_date=closing_date,
        lines=lines,
    )
