"""The card write secret parser: what office, server and till all accept, and what they all
refuse, without ever repeating the text in the message."""

import secrets

import pytest

from hcard import cardsecret
from hcard.terminal.card import layout

GOOD = "00112233445566778899aabbccddeeff"


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        GOOD.upper(),
        f"  {GOOD}\n",
        "00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff",
        GOOD + "0011",  # longer is fine
    ],
)
def test_hex_of_at_least_min_bytes_is_accepted(text):
    secret = cardsecret.parse(text)
    assert len(secret) >= cardsecret.MIN_BYTES
    assert secret[: cardsecret.MIN_BYTES] == bytes.fromhex(GOOD)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        GOOD[:-2],  # one byte short
        GOOD[:-1],  # odd number of digits
        "zz" * cardsecret.MIN_BYTES,
        "0x" + GOOD,
    ],
)
def test_anything_else_is_refused_in_german_and_english(text):
    with pytest.raises(ValueError, match="Kartenschreibgeheimnis ungültig") as info:
        cardsecret.parse(text)
    message = str(info.value)
    assert "card write secret invalid" in message
    assert f"{cardsecret.MIN_BYTES} " in message
    assert info.value.__cause__ is None


def test_the_message_never_shows_the_secret():
    text = secrets.token_hex(cardsecret.MIN_BYTES - 1)
    with pytest.raises(ValueError, match="card write secret invalid") as info:
        cardsecret.parse(text)
    assert text not in str(info.value)
    assert text[:8] not in repr(info.value)


def test_the_card_layer_uses_the_same_minimum():
    uid = bytes(7)
    secret = cardsecret.parse(secrets.token_hex(cardsecret.MIN_BYTES))
    password, pack = layout.card_password(secret, uid)
    assert (len(password), len(pack)) == (4, 2)
    with pytest.raises(ValueError, match="card write secret invalid"):
        layout.card_password(secret[:-1], uid)
