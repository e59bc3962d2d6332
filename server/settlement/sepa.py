"""The SEPA credit-transfer file of a settlement run, built with sepaxml.

- pain.001.001.09 by default (German banks, DFÜ-Abkommen Anlage 3 v3.7), with structured
  addresses (required from November 2026); pain.001.001.03 for older bank software.
- sepaxml's `clean=True` would write "Bäckerei Müller" as "Backerei Muller", and banks now
  check the payee's name against the account (Verification of Payee): umlauts and ß are
  written as ae/oe/ue/ss here first (`transliterate`).
- sepaxml writes an invalid `<AdrTp>` for .09 when `address_type` is given (upstream issue
  72): it is never given.
- Every transfer has a deterministic EndToEndId (`end_to_end_id`), so a line of the bank's
  statement is matched to its payout without a human.
- The requested execution date is a TARGET2 business day (`execution_date`, the ECB
  calendar of the `holidays` library).
- Single bookings, not a batch (`BtchBookg=false`): each payout comes back on the statement
  as its own entry with its EndToEndId.
- A bank may cap the transactions per file: the run is split (`max_per_file`).
- Every file is validated against its XSD before it is offered (`export(validate=True)`);
  one that does not validate raises `SepaFileInvalidError` and is never written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import holidays
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from sepaxml import SepaTransfer
from sepaxml.validation import ValidationError


class Schema(StrEnum):
    PAIN_001_001_09 = "pain.001.001.09"
    PAIN_001_001_03 = "pain.001.001.03"


#: what German banks accept in a SEPA text field without complaint
_GERMAN = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"}
)
NAME_MAX = 70
TEXT_MAX = 140
E2E_MAX = 35


class SepaFileInvalidError(ValueError):
    """The file did not validate against its XSD: never offered to the bank."""


def transliterate(text: str) -> str:
    """`Bäckerei Müller` → `Baeckerei Mueller` (before sepaxml strips what is left)."""
    return text.translate(_GERMAN)


def iban_ok(text: str) -> bool:
    try:
        IBAN(text)
    except SchwiftyException:
        return False
    return True


def end_to_end_id(run_id: int, merchant_id: int) -> str:
    """`HC-R12-M345`: unique per run and merchant, the same every time it is asked."""
    value = f"HC-R{run_id}-M{merchant_id}"
    if len(value) > E2E_MAX:
        raise ValueError("EndToEndId longer than 35 characters")
    return value


@lru_cache(maxsize=8)
def _target2_holidays(year: int) -> frozenset[dt.date]:
    return frozenset(holidays.financial_holidays("XECB", years=year))


def is_business_day(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in _target2_holidays(day.year)


def execution_date(earliest: dt.date) -> dt.date:
    """The first TARGET2 business day on or after `earliest`."""
    day = earliest
    while not is_business_day(day):
        day += dt.timedelta(days=1)
    return day


@dataclass(frozen=True)
class Address:
    """A structured postal address, as the .09 file requires."""

    street: str
    building_number: str
    postcode: str
    town: str
    country: str = "DE"

    def for_sepaxml(self) -> dict[str, str]:
        """The parts as the XSD takes them: written ae/oe/ue/ss first, then cut to their
        lengths (one long street name must not make the whole file invalid)."""
        fields = {
            "street_name": transliterate(self.street)[:70],
            "building_number": transliterate(self.building_number)[:16],
            "postcode": transliterate(self.postcode)[:16],
            "town": transliterate(self.town)[:35],
            "country": self.country,
        }
        return {key: value for key, value in fields.items() if value}


@dataclass(frozen=True)
class Debtor:
    """The operator's account the payouts leave from."""

    name: str
    iban: str
    bic: str
    address: Address | None = None


@dataclass(frozen=True)
class Transfer:
    name: str  # the account holder's name, exactly as the bank knows it
    iban: str
    bic: str
    amount_cents: int
    end_to_end_id: str
    description: str
    address: Address | None = None


def build_files(
    debtor: Debtor,
    transfers: Sequence[Transfer],
    *,
    when: dt.date,
    schema: Schema = Schema.PAIN_001_001_09,
    max_per_file: int = 1000,
) -> list[bytes]:
    """The run's transfers as one validated file per `max_per_file` transfers (none if none).

    Raises SepaFileInvalidError when a file does not validate against its XSD.
    """
    if max_per_file < 1:
        raise ValueError("max_per_file must be at least 1")
    if any(t.amount_cents <= 0 for t in transfers):
        raise ValueError("a transfer moves a positive amount")
    chunks = [transfers[i : i + max_per_file] for i in range(0, len(transfers), max_per_file)]
    return [_file(debtor, chunk, when, schema) for chunk in chunks]


def _file(debtor: Debtor, transfers: Sequence[Transfer], when: dt.date, schema: Schema) -> bytes:
    config: dict[str, object] = {
        "name": transliterate(debtor.name)[:NAME_MAX],
        "IBAN": IBAN(debtor.iban).compact,
        "BIC": debtor.bic,
        # one booking per payout on the bank's statement, each with its EndToEndId: a batch
        # booked as one sum could not be matched to the payouts in it
        "batch": False,
        "currency": "EUR",
    }
    if debtor.address is not None and schema is Schema.PAIN_001_001_09:
        config["address"] = debtor.address.for_sepaxml()
    document = SepaTransfer(config, schema=schema.value, clean=True)
    for transfer in transfers:
        payment: dict[str, object] = {
            "name": transliterate(transfer.name)[:NAME_MAX],
            "IBAN": IBAN(transfer.iban).compact,
            "amount": transfer.amount_cents,
            "execution_date": when,
            "description": transliterate(transfer.description)[:TEXT_MAX],
            "endtoend_id": transfer.end_to_end_id,
        }
        if transfer.bic:
            payment["BIC"] = transfer.bic
        if transfer.address is not None and schema is Schema.PAIN_001_001_09:
            payment["address"] = transfer.address.for_sepaxml()
        document.add_payment(payment)
    try:
        return bytes(document.export(validate=True))
    except ValidationError as error:
        raise SepaFileInvalidError(str(error.__cause__ or error)) from None
