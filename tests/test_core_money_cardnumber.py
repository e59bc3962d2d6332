"""The shared core's money and card-number rules."""

import pytest

from hcard import cardnumber
from hcard.money import MAX_AMOUNT_CENTS, format_cents, is_valid_amount, parse_amount


@pytest.mark.parametrize(
    ("cents", "german", "english"),
    [
        (1250, "12,50\u00a0€", "€12.50"),
        (5, "0,05\u00a0€", "€0.05"),
        (123456789, "1.234.567,89\u00a0€", "€1,234,567.89"),
        (-300, "-3,00\u00a0€", "-€3.00"),
    ],
)
def test_format_cents(cents, german, english):
    assert format_cents(cents) == german
    assert format_cents(cents, "en") == english


def test_format_refuses_float():
    with pytest.raises(TypeError):
        format_cents(12.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "cents"), [("12,50", 1250), ("12.5", 1250), ("3 €", 300), ("0,07", 7)]
)
def test_parse_amount(text, cents):
    assert parse_amount(text) == cents


@pytest.mark.parametrize("text", ["", "abc", "1,234", "12,5,0", "1e3"])
def test_parse_amount_refuses(text):
    with pytest.raises(ValueError, match="not an amount"):
        parse_amount(text)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (1, True),
        (MAX_AMOUNT_CENTS, True),
        (0, False),
        (-1, False),
        (MAX_AMOUNT_CENTS + 1, False),
        (True, False),
        (1.0, False),
        ("1", False),
    ],
)
def test_is_valid_amount(value, ok):
    assert is_valid_amount(value) is ok


def test_card_number_roundtrip_and_check_digit():
    number = cardnumber.from_serial(12)
    assert number == "9276000000000123"
    assert cardnumber.is_valid(number)
    assert cardnumber.pretty(number) == "9276 0000 0000 0123"
    assert cardnumber.normalize("9276 0000 0000 0123") == number


def test_every_single_digit_typo_is_caught():
    number = cardnumber.from_serial(4711)
    for index in range(len(number)):
        for digit in "0123456789":
            if digit != number[index]:
                typo = number[:index] + digit + number[index + 1 :]
                assert not cardnumber.is_valid(typo)


@pytest.mark.parametrize("bad", ["", "92760000000001", "1234000000000125", "92760000000001２3"])
def test_invalid_card_numbers(bad):
    assert not cardnumber.is_valid(bad)
    with pytest.raises(ValueError, match="not a Hattingen Card number"):
        cardnumber.normalize(bad)
