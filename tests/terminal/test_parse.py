"""Settings the till reads by hand are refused by name, German and English (`hcard.terminal.parse`).

`config.json`, the enrolment answer and `$HCARD_TERMINAL_STATE`; the app's own settings are in
tests/app/test_parts.py.
"""

import json
from pathlib import Path

import pytest

from hcard.errors import Code, HCardError
from hcard.terminal import cli, parse
from hcard.terminal import config as cfg
from hcard.terminal.card import TEST_PUBLIC_KEY_HEX

CONFIG = {
    "server_url": "http://127.0.0.1:8000",
    "terminal_id": 3,
    "merchant_id": 2,
    "merchant_name": "Eiscafe",
    "issuer_public_key": "ab" * 32,
    "name": "Kasse 1",
    "reader": "usb",
    "originality_key": None,
    "card_write_secret": "",
}


def _both_languages(error: Exception, name: str) -> None:
    german, _, english = str(error).partition(" / ")
    assert german.startswith(f"{name}: "), str(error)
    assert english.startswith(f"{name}: "), str(error)


@pytest.mark.parametrize(
    ("value", "number"),
    [(5, 5), ("5", 5), (" 17 ", 17), ("+3", 3), (1, 1), (2**63 - 1, 2**63 - 1)],
)
def test_integer_takes_whole_numbers(value, number):
    assert parse.integer("x", value, minimum=1, maximum=2**63 - 1) == number


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        5.9,
        5.0,
        "5.0",
        "",
        " ",
        "abc",
        "1e3",
        "²",
        "٣",
        "５",
        "--1",
        None,
        [],
        0,
        -4,
        2**63,
    ],
)
def test_integer_refuses_anything_else_by_name(value):
    with pytest.raises(parse.SettingError) as refused:
        parse.integer("terminal_id", value, minimum=1, maximum=2**63 - 1)
    _both_languages(refused.value, "terminal_id")
    assert "ganze Zahl von 1 bis" in str(refused.value)
    assert "whole number from 1 to" in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_text():
    assert parse.text("name", "Kasse") == "Kasse"
    assert parse.optional_text("key", None) is None
    for bad in (5, None, b"Kasse"):
        with pytest.raises(parse.SettingError, match="name: ein Text erwartet"):
            parse.text("name", bad)


@pytest.mark.parametrize(
    ("environment", "value"), [({}, None), ({"X": ""}, None), ({"X": "a"}, "a")]
)
def test_an_empty_variable_counts_as_unset(environment, value):
    assert parse.environ("X", environment) == value


@pytest.mark.parametrize(
    ("value", "folder"), [("", cfg.DEFAULT_STATE_DIR), ("/srv/till", "/srv/till")]
)
def test_state_folder_from_the_environment(monkeypatch, value, folder):
    monkeypatch.setenv(cfg.STATE_ENV, value)
    assert cfg.default_state_dir() == Path(folder)  # empty: not the current folder


def _write(tmp_path: Path, data: object) -> cfg.TerminalState:
    state = cfg.TerminalState(tmp_path)
    state.config_path.write_text(data if isinstance(data, str) else json.dumps(data))
    return state


def test_config_round_trip(tmp_path):
    state = cfg.TerminalState(tmp_path)
    config = cfg.TerminalConfig(**CONFIG)
    state.save_config(config)
    assert state.load_config() == config
    written = {**CONFIG, "terminal_id": "3"}  # a hand-edited number in quotes is still 3
    del written["reader"], written["originality_key"], written["card_write_secret"]
    assert _write(tmp_path, written).load_config() == config


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ("{not json", None, "kein gültiges JSON"),
        ([CONFIG], None, "ein JSON-Objekt erwartet"),
        ({k: v for k, v in CONFIG.items() if k != "terminal_id"}, None, "terminal_id fehlt"),
        ({**CONFIG, "terminl_id": 3}, None, "unbekannte Felder ['terminl_id']"),
        ({**CONFIG, "terminal_id": "drei"}, "terminal_id", "ganze Zahl von 1 bis"),
        ({**CONFIG, "terminal_id": True}, "terminal_id", "ganze Zahl"),
        ({**CONFIG, "terminal_id": 3.5}, "terminal_id", "ganze Zahl"),
        ({**CONFIG, "terminal_id": 0}, "terminal_id", "ganze Zahl von 1 bis"),
        ({**CONFIG, "merchant_id": None}, "merchant_id", "ganze Zahl"),
        ({**CONFIG, "merchant_name": 5}, "merchant_name", "ein Text erwartet"),
        ({**CONFIG, "originality_key": 5}, "originality_key", "ein Text erwartet"),
        ({**CONFIG, "originality_key": "04ABCD"}, "originality_key", "kein gültiger"),
        # an NTAG215 key where the 424's belongs: every 424 tap would fail on it
        ({**CONFIG, "originality_424_key": TEST_PUBLIC_KEY_HEX}, "originality_424_key", "kein"),
    ],
)
def test_a_damaged_config_names_file_and_field(tmp_path, data, field, words):
    state = _write(tmp_path, data)
    with pytest.raises(parse.SettingError) as refused:
        state.load_config()
    name = str(state.config_path) + (f": {field}" if field else "")
    _both_languages(refused.value, name)
    assert words in str(refused.value)


@pytest.mark.parametrize("option", ["--originality-key", "--originality-424-key"])
def test_enrol_refuses_a_bad_originality_key_before_the_code_is_spent(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--state", str(tmp_path), "enrol", "--server", "http://127.0.0.1:9",
                  "--code", "ABCD-EFGH", option, "nonsense"])  # fmt: skip
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "kein gültiger öffentlicher Schlüssel" in error
    assert "not a valid public key" in error
    assert not (tmp_path / "config.json").exists()


def test_the_cli_says_which_field_and_stops(tmp_path, capsys):
    _write(tmp_path, {**CONFIG, "terminal_id": "drei"})
    assert cli.main(["--state", str(tmp_path), "status"]) == cli.EXIT_BROKEN
    error = capsys.readouterr().err
    assert "config.json: terminal_id: eine ganze Zahl von 1 bis" in error
    assert "expected a whole number from 1 to" in error


@pytest.mark.parametrize(
    ("answer", "field"),
    [
        ({"terminal_id": "x", "merchant_id": 2}, "terminal_id"),
        ({"terminal_id": 4.0, "merchant_id": 2}, "terminal_id"),  # int() took 4.0, and 4.9
        ({"terminal_id": 4, "merchant_id": False}, "merchant_id"),
    ],
)
def test_an_enrolment_answer_with_a_bad_id_names_it(tmp_path, monkeypatch, answer, field):
    full = {"merchant_name": "Eiscafe", "issuer_public_key": "ab" * 32, **answer}
    monkeypatch.setattr(cfg, "post_json", lambda url, body: full)
    with pytest.raises(HCardError) as refused:
        cfg.enrol(cfg.TerminalState(tmp_path), "http://127.0.0.1:9", "ABCD-EFGH")
    assert refused.value.code == Code.MALFORMED_REQUEST
    assert f"{field}: eine ganze Zahl" in refused.value.details["reason"]
    assert not cfg.TerminalState(tmp_path).enrolled()
