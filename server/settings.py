"""Server settings: where the data lives, the issuer key, and the limits terminals obey.

Read from the command line and the environment (`HCARD_*`), never from the
database, so that an operator sees them in one place (the systemd unit). The
environment is parsed by pydantic-settings (`_Environment`): a value that is not
what its variable needs is refused at start with `SettingsError`, which names
the variable, the value and what it must be, in German and English
(`hcard-server` prints it and exits 2). An empty variable counts as unset.

| variable | what | default |
|---|---|---|
| `HCARD_DATA_DIR` | folder for database and issuer key | `hcard-data` |
| `HCARD_DATABASE_URL` | SQLAlchemy URL | `sqlite:///<data dir>/hcard.db` |
| `HCARD_LIMIT_PER_PAYMENT_CENTS` | offline limit per payment | 2500 |
| `HCARD_LIMIT_PER_CARD_DAY_CENTS` | offline limit per card and day | 5000 |
| `HCARD_LIMIT_CONSECUTIVE_OFFLINE` | offline payments in a row per card | 3 |
| `HCARD_ENROLMENT_TTL_S` | how long an enrolment code works | 7 days |
| `HCARD_BALANCE_PAGE_URL` | the card URL is `<it>/c/<number>` | `https://karte.hattingen.de` |
| `HCARD_THROTTLE_<GUARD>` | failures allowed, as `10 per 10 minutes` | `throttle.py` |
| `HCARD_OPERATOR_NAME`, `…_IBAN`, `…_BIC` | the account payouts leave from | demo |
| `HCARD_OPERATOR_STREET`, `…_BUILDING_NUMBER` | its address (invoice, SEPA) | demo |
| `HCARD_OPERATOR_POSTCODE`, `…_TOWN` | its address (invoice, SEPA) | demo |
| `HCARD_OPERATOR_TAX_NUMBER` | on every fee invoice (UStG § 14) | demo value |
| `HCARD_VAT_BP` | VAT on the fee, basis points (0 under the small-business rule) | 1900 |
| `HCARD_MINIMUM_PAYOUT_CENTS` | smaller payouts are carried forward | 0 |
| `HCARD_SEPA_MAX_PER_FILE` | transfers per bank file (the bank's cap) | 1000 |
| `HCARD_DATEV_ACCOUNTS` | DATEV accounts other than SKR03's, JSON: `{"bank": 1800}` | SKR03 |
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated

import limits
from pydantic import AfterValidator, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from hcard.i18n import N_, Text
from hcard.i18n import both as _
from hcard.server.settlement.exports import DatevAccounts
from hcard.server.settlement.sepa import Address, Debtor, iban_ok
from hcard.server.throttle import ThrottleLimits
from hcard.server.vocabulary import PasswordHashCost

DEFAULT_DATA_DIR = Path("hcard-data")
ENV_PREFIX = "HCARD_"


@dataclass(frozen=True)
class Limits:
    """Offline limits that go out to every terminal in the snapshot."""

    per_payment_cents: int = 2_500
    per_card_day_cents: int = 5_000
    consecutive_offline: int = 3

    def as_json(self) -> dict[str, int]:
        return {
            "per_payment_cents": self.per_payment_cents,
            "per_card_day_cents": self.per_card_day_cents,
            "consecutive_offline": self.consecutive_offline,
        }


@dataclass(frozen=True)
class SettlementSettings:
    """Who pays the merchants out and by which rules (services/settlement.py)."""

    operator_name: str = "Stadtmarketing Hattingen e.V."
    operator_iban: str = "DE02120300000000202051"
    operator_bic: str = "BYLADEM1001"
    operator_street: str = "Rathausplatz"
    operator_building_number: str = "1"
    operator_postcode: str = "45525"
    operator_town: str = "Hattingen"
    operator_tax_number: str = "323/5702/0000"
    #: VAT on the operator's fee, basis points (19 %; 0 under the small-business rule)
    vat_bp: int = 1_900
    #: payouts below this are carried forward
    minimum_payout_cents: int = 0
    #: transfers per SEPA file, where the bank caps them
    max_per_file: int = 1_000
    #: the tax adviser's chart of accounts (SKR03 defaults)
    datev: DatevAccounts = field(default_factory=DatevAccounts)

    @property
    def debtor(self) -> Debtor:
        address = Address(
            self.operator_street,
            self.operator_building_number,
            self.operator_postcode,
            self.operator_town,
        )
        return Debtor(self.operator_name, self.operator_iban, self.operator_bic, address)

    @property
    def operator_address_lines(self) -> tuple[str, str]:
        return (
            f"{self.operator_street} {self.operator_building_number}",
            f"{self.operator_postcode} {self.operator_town}",
        )


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    limits: Limits = field(default_factory=Limits)
    #: protocol.md: 2 MiB per request body, 1000 records per sync batch
    max_body_bytes: int = 2 * 1024 * 1024
    max_batch_records: int = 1000
    #: a code is typed on the till within days of being made, not months
    enrolment_ttl_s: int = 7 * 24 * 3600
    session_ttl_s: int = 12 * 3600
    #: nonces are kept a little longer than the clock skew window they guard
    nonce_keep_s: int = 900
    #: the URL written on cards; the balance page is `<this>/c/<card number>`
    balance_page_url: str = "https://karte.hattingen.de"
    #: failures allowed per user, card and address (server/throttle.py)
    throttle: ThrottleLimits = field(default_factory=ThrottleLimits)
    settlement: SettlementSettings = field(default_factory=SettlementSettings)
    password_hash_cost: PasswordHashCost = PasswordHashCost.STANDARD

    @property
    def issuer_key_path(self) -> Path:
        return self.data_dir / "issuer.key"

    @classmethod
    def build(cls, data_dir: Path | str | None = None, database_url: str | None = None) -> Settings:
        """Settings from explicit values, falling back to the `HCARD_*` environment;
        SettingsError when a variable holds a value it cannot have."""
        env = _Environment.read()
        data_dir = Path(data_dir or env.data_dir)
        database_url = (
            database_url or env.database_url or f"sqlite:///{data_dir.resolve() / 'hcard.db'}"
        )
        return cls(
            data_dir=data_dir.resolve(),
            database_url=database_url,
            limits=Limits(
                per_payment_cents=env.limit_per_payment_cents,
                per_card_day_cents=env.limit_per_card_day_cents,
                consecutive_offline=env.limit_consecutive_offline,
            ),
            enrolment_ttl_s=env.enrolment_ttl_s,
            balance_page_url=env.balance_page_url,
            throttle=ThrottleLimits(
                login_user=env.throttle_login_user,
                login_address=env.throttle_login_address,
                enrol_address=env.throttle_enrol_address,
                balance_card=env.throttle_balance_card,
                balance_address=env.throttle_balance_address,
            ),
            settlement=SettlementSettings(
                **{
                    f.name: getattr(env, f.name)
                    for f in fields(SettlementSettings)
                    if f.name != "datev"
                },
                datev=DatevAccounts(**env.datev_accounts),
            ),
            password_hash_cost=env.password_hash_cost,
        )


class SettingsError(ValueError):
    """One or more `HCARD_*` variables with a value they cannot have: one line each,
    German / English, naming the variable, its value and what it must be."""


def _throttle_limit(value: str) -> str:
    limits.parse(value)  # ValueError for anything that is not `N per <period>`
    return value


def _iban(value: str) -> str:
    if not iban_ok(value):
        raise ValueError("not a valid IBAN")
    return value.replace(" ", "").upper()


def _datev_accounts(value: dict[str, int]) -> dict[str, int]:
    known = {f.name for f in fields(DatevAccounts)}
    if set(value) - known or any(number < 0 for number in value.values()):
        raise ValueError("unknown account or negative number")
    return value


Count = Annotated[int, Field(ge=0)]
OperatorIban = Annotated[str, AfterValidator(_iban)]
ThrottleLimit = Annotated[str, AfterValidator(_throttle_limit)]
_DEFAULT_SETTINGS = Settings(data_dir=DEFAULT_DATA_DIR, database_url="")
_DEFAULT_THROTTLE = ThrottleLimits()
_DEFAULT_SETTLEMENT = SettlementSettings()

#: what each variable must hold (the message of a refused value, in both languages)
_EXPECTED: dict[str, Text] = {
    "limit_per_payment_cents": N_("a whole number from 0 (cents)"),
    "limit_per_card_day_cents": N_("a whole number from 0 (cents)"),
    "limit_consecutive_offline": N_("a whole number from 0"),
    "enrolment_ttl_s": N_("a whole number from 0 (seconds)"),
    "vat_bp": N_("basis points 0 to 10000"),
    "minimum_payout_cents": N_("a whole number from 0 (cents)"),
    "max_per_file": N_("a whole number from 1"),
    "operator_iban": N_("a valid IBAN"),
    "datev_accounts": N_("a JSON object of DATEV account numbers by name (bank, cash, fees ...)"),
    **{
        f"throttle_{name}": N_("a limit such as '10 per 10 minutes'")
        for name in vars(_DEFAULT_THROTTLE)
    },
}


_ANY_VALUE = N_("a valid value")


class _Environment(BaseSettings):
    """The `HCARD_*` variables, flat, each named after its field (`HCARD_` + upper case)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True
    )

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = None
    limit_per_payment_cents: Count = _DEFAULT_SETTINGS.limits.per_payment_cents
    limit_per_card_day_cents: Count = _DEFAULT_SETTINGS.limits.per_card_day_cents
    limit_consecutive_offline: Count = _DEFAULT_SETTINGS.limits.consecutive_offline
    enrolment_ttl_s: Count = _DEFAULT_SETTINGS.enrolment_ttl_s
    balance_page_url: str = _DEFAULT_SETTINGS.balance_page_url
    throttle_login_user: ThrottleLimit = _DEFAULT_THROTTLE.login_user
    throttle_login_address: ThrottleLimit = _DEFAULT_THROTTLE.login_address
    throttle_enrol_address: ThrottleLimit = _DEFAULT_THROTTLE.enrol_address
    throttle_balance_card: ThrottleLimit = _DEFAULT_THROTTLE.balance_card
    throttle_balance_address: ThrottleLimit = _DEFAULT_THROTTLE.balance_address
    operator_name: str = _DEFAULT_SETTLEMENT.operator_name
    operator_iban: OperatorIban = _DEFAULT_SETTLEMENT.operator_iban
    operator_bic: str = _DEFAULT_SETTLEMENT.operator_bic
    operator_street: str = _DEFAULT_SETTLEMENT.operator_street
    operator_building_number: str = _DEFAULT_SETTLEMENT.operator_building_number
    operator_postcode: str = _DEFAULT_SETTLEMENT.operator_postcode
    operator_town: str = _DEFAULT_SETTLEMENT.operator_town
    operator_tax_number: str = _DEFAULT_SETTLEMENT.operator_tax_number
    vat_bp: Annotated[int, Field(ge=0, le=10_000)] = _DEFAULT_SETTLEMENT.vat_bp
    minimum_payout_cents: Count = _DEFAULT_SETTLEMENT.minimum_payout_cents
    max_per_file: Annotated[int, Field(ge=1)] = _DEFAULT_SETTLEMENT.max_per_file
    #: the tax adviser's accounts where they are not SKR03's: `{"bank": 1800, "fees": 8195}`
    datev_accounts: Annotated[dict[str, int], AfterValidator(_datev_accounts)] = Field(
        default_factory=dict
    )
    password_hash_cost: PasswordHashCost = PasswordHashCost.STANDARD

    @classmethod
    def read(cls) -> _Environment:
        try:
            return cls()
        except ValidationError as error:
            raise SettingsError(_explain(error)) from None


def _explain(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        name = str(problem["loc"][0]) if problem["loc"] else "?"
        variable = f"{ENV_PREFIX}{name.upper()}"
        value = str(problem.get("input", ""))[:60]
        lines.append(
            _(
                "Setting {variable}={value!r} is invalid: expected {expected}.",
                variable=variable,
                value=value,
                expected=_EXPECTED.get(name, _ANY_VALUE),
            )
        )
    return "\n".join(lines)
