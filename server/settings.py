"""Server settings: where the data lives, the issuer key, and the limits terminals obey.

Read from the command line and the environment (`HCARD_*`), never from the
database, so that an operator sees them in one place (the systemd unit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from hcard.server.throttle import ThrottleLimits

DEFAULT_DATA_DIR = Path("hcard-data")


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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Limits:
        env = dict(os.environ) if env is None else env
        default = cls()
        return cls(
            per_payment_cents=int(
                env.get("HCARD_LIMIT_PER_PAYMENT_CENTS", default.per_payment_cents)
            ),
            per_card_day_cents=int(
                env.get("HCARD_LIMIT_PER_CARD_DAY_CENTS", default.per_card_day_cents)
            ),
            consecutive_offline=int(
                env.get("HCARD_LIMIT_CONSECUTIVE_OFFLINE", default.consecutive_offline)
            ),
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

    @property
    def issuer_key_path(self) -> Path:
        return self.data_dir / "issuer.key"

    @classmethod
    def build(cls, data_dir: Path | str | None = None, database_url: str | None = None) -> Settings:
        """Settings from explicit values, falling back to the `HCARD_*` environment."""
        data_dir = Path(data_dir or os.environ.get("HCARD_DATA_DIR") or DEFAULT_DATA_DIR)
        database_url = (
            database_url
            or os.environ.get("HCARD_DATABASE_URL")
            or f"sqlite:///{data_dir.resolve() / 'hcard.db'}"
        )
        return cls(
            data_dir=data_dir.resolve(),
            database_url=database_url,
            limits=Limits.from_env(),
            enrolment_ttl_s=int(os.environ.get("HCARD_ENROLMENT_TTL_S", cls.enrolment_ttl_s)),
            balance_page_url=os.environ.get("HCARD_BALANCE_PAGE_URL", cls.balance_page_url),
            throttle=_throttle_from_env(),
        )


def _throttle_from_env() -> ThrottleLimits:
    """`HCARD_THROTTLE_LOGIN_USER="10 per 10 minutes"` and so on, one per limit."""
    env = {
        f.name: os.environ[f"HCARD_THROTTLE_{f.name.upper()}"]
        for f in fields(ThrottleLimits)
        if f"HCARD_THROTTLE_{f.name.upper()}" in os.environ
    }
    return ThrottleLimits(**env)
