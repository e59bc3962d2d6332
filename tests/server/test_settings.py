"""Settings from the `HCARD_*` environment (pydantic-settings): the same names and defaults,
and a bad value is refused by name, in German and English, before the server starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hcard.server.settings import Limits, Settings, SettingsError
from hcard.server.throttle import ThrottleLimits
from hcard.server.vocabulary import PasswordHashCost

VARIABLES = (
    "HCARD_DATA_DIR",
    "HCARD_DATABASE_URL",
    "HCARD_LIMIT_PER_PAYMENT_CENTS",
    "HCARD_LIMIT_PER_CARD_DAY_CENTS",
    "HCARD_LIMIT_CONSECUTIVE_OFFLINE",
    "HCARD_ENROLMENT_TTL_S",
    "HCARD_BALANCE_PAGE_URL",
    "HCARD_PASSWORD_HASH_COST",
    *(f"HCARD_THROTTLE_{name.upper()}" for name in vars(ThrottleLimits())),
)


@pytest.fixture
def env(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults(env, tmp_path):
    settings = Settings.build(tmp_path)
    assert settings.data_dir == tmp_path.resolve()
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'hcard.db'}"
    assert settings.limits == Limits(2_500, 5_000, 3)
    assert settings.enrolment_ttl_s == 7 * 24 * 3600
    assert settings.balance_page_url == "https://karte.hattingen.de"
    assert settings.throttle == ThrottleLimits()
    # argon2 at RFC 9106's low-memory profile unless told otherwise (the suite tells it)
    assert settings.password_hash_cost == PasswordHashCost.STANDARD


def test_every_variable_is_read(env, tmp_path):
    values = {
        "HCARD_DATA_DIR": str(tmp_path / "data"),
        "HCARD_DATABASE_URL": "postgresql+psycopg://hcard@db/hcard",
        "HCARD_LIMIT_PER_PAYMENT_CENTS": "1000",
        "HCARD_LIMIT_PER_CARD_DAY_CENTS": "3000",
        "HCARD_LIMIT_CONSECUTIVE_OFFLINE": "0",
        "HCARD_ENROLMENT_TTL_S": "60",
        "HCARD_BALANCE_PAGE_URL": "https://karte.example",
        "HCARD_THROTTLE_LOGIN_USER": "5 per 3 seconds",
        "HCARD_THROTTLE_LOGIN_ADDRESS": "6 per minute",
        "HCARD_THROTTLE_ENROL_ADDRESS": "7 per hour",
        "HCARD_THROTTLE_BALANCE_CARD": "8 per day",
        "HCARD_THROTTLE_BALANCE_ADDRESS": "9 per 10 minutes",
        "HCARD_PASSWORD_HASH_COST": "test-only",
    }
    for name, value in values.items():
        env.setenv(name, value)
    settings = Settings.build()
    assert settings.data_dir == (tmp_path / "data").resolve()
    assert settings.database_url == "postgresql+psycopg://hcard@db/hcard"
    assert settings.limits == Limits(1_000, 3_000, 0)
    assert settings.enrolment_ttl_s == 60
    assert settings.balance_page_url == "https://karte.example"
    assert settings.throttle == ThrottleLimits(
        "5 per 3 seconds", "6 per minute", "7 per hour", "8 per day", "9 per 10 minutes"
    )
    assert settings.password_hash_cost == PasswordHashCost.TEST_ONLY
    # the command line's values win over the environment
    chosen = Settings.build(tmp_path / "cli", "sqlite:///elsewhere.db")
    assert (chosen.data_dir, chosen.database_url) == (
        (tmp_path / "cli").resolve(),
        "sqlite:///elsewhere.db",
    )


def test_an_empty_variable_counts_as_unset(env, tmp_path):
    env.setenv("HCARD_DATABASE_URL", "")
    env.setenv("HCARD_LIMIT_PER_PAYMENT_CENTS", "")
    settings = Settings.build(tmp_path)
    assert settings.database_url.startswith("sqlite:///")
    assert settings.limits.per_payment_cents == 2_500


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HCARD_LIMIT_PER_PAYMENT_CENTS", "25,00"),
        ("HCARD_LIMIT_PER_CARD_DAY_CENTS", "-1"),
        ("HCARD_LIMIT_CONSECUTIVE_OFFLINE", "2.5"),
        ("HCARD_ENROLMENT_TTL_S", "7 days"),
        ("HCARD_THROTTLE_LOGIN_USER", "ten per ten minutes"),
        ("HCARD_THROTTLE_BALANCE_ADDRESS", "30"),
        ("HCARD_PASSWORD_HASH_COST", "cheap"),
    ],
)
def test_a_bad_value_is_refused_by_name_in_german_and_english(env, tmp_path, name, value):
    env.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        Settings.build(tmp_path)
    message = str(refused.value)
    german, english = message.split(" / ")
    assert f"Einstellung {name}={value!r} ungültig: erwartet" in german
    assert f"Setting {name}={value!r} is invalid: expected" in english


def test_all_bad_values_are_named_at_once(env, tmp_path):
    env.setenv("HCARD_LIMIT_PER_PAYMENT_CENTS", "viel")
    env.setenv("HCARD_THROTTLE_ENROL_ADDRESS", "oft")
    with pytest.raises(SettingsError) as refused:
        Settings.build(tmp_path)
    lines = str(refused.value).splitlines()
    assert len(lines) == 2
    assert "HCARD_LIMIT_PER_PAYMENT_CENTS" in lines[0]
    assert "HCARD_THROTTLE_ENROL_ADDRESS" in lines[1]


@pytest.mark.parametrize("command", [["init"], ["serve", "--port", "0"], ["ledger", "check"]])
def test_hcard_server_prints_it_and_exits_non_zero(tmp_path, command):
    run = subprocess.run(
        [sys.executable, "-m", "hcard.server.cli", *command, "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": "/usr/bin:/bin",
            "HCARD_ADMIN_PASSWORD": "settings-test-password",
            "HCARD_LIMIT_PER_PAYMENT_CENTS": "zwanzig",
        },
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip() == (
        "Einstellung HCARD_LIMIT_PER_PAYMENT_CENTS='zwanzig' ungültig: erwartet eine ganze Zahl "
        "ab 0 (Cent). / Setting HCARD_LIMIT_PER_PAYMENT_CENTS='zwanzig' is invalid: expected a "
        "whole number from 0 (cents)."
    )
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was made


def test_settlement_settings_and_the_tax_advisers_accounts(env, tmp_path):
    env.setenv("HCARD_VAT_BP", "0")
    env.setenv("HCARD_MINIMUM_PAYOUT_CENTS", "2500")
    env.setenv("HCARD_OPERATOR_IBAN", "DE75 5121 0800 1245 1261 99")
    env.setenv("HCARD_DATEV_ACCOUNTS", '{"bank": 1800, "fees": 8195}')
    settlement = Settings.build(tmp_path).settlement
    assert (settlement.vat_bp, settlement.minimum_payout_cents) == (0, 2500)
    assert settlement.operator_iban == "DE75512108001245126199"
    assert (settlement.datev.bank, settlement.datev.fees, settlement.datev.cash) == (
        1800,
        8195,
        1000,
    )
    for name, value in (
        ("HCARD_DATEV_ACCOUNTS", '{"bnk": 1800}'),
        ("HCARD_DATEV_ACCOUNTS", "1800"),
        ("HCARD_OPERATOR_IBAN", "DE89370400440532013001"),
        ("HCARD_VAT_BP", "20000"),
    ):
        env.setenv(name, value)
        with pytest.raises(SettingsError, match=name):
            Settings.build(tmp_path)
        env.delenv(name)
