"""Throttling of what can be guessed (passwords, enrolment codes), over real HTTP.

Each server here runs with small limits (`HCARD_THROTTLE_*`) so a window passes within
the test. Addresses are told apart the way the reverse proxy does it, by
`X-Forwarded-For` from 127.0.0.1 (uvicorn trusts it from there only).
"""

from __future__ import annotations

import time

import requests
from fixtures.server import ADMIN_PASSWORD, ADMIN_USER

from hcard import keys
from hcard.errors import MESSAGES, Code


def _login(url: str, password: str, address: str, user: str = ADMIN_USER) -> requests.Response:
    return requests.post(
        f"{url}/v1/auth/login",
        json={"username": user, "password": password},
        headers={"X-Forwarded-For": address},
        timeout=30,
    )


def _assert_throttled(response: requests.Response, window_s: int) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == "too_many_attempts"
    assert (body["message_de"], body["message_en"]) == MESSAGES[Code.TOO_MANY_ATTEMPTS]
    assert 1 <= int(response.headers["retry-after"]) <= window_s
    assert body["details"]["retry_after_s"] == int(response.headers["retry-after"])


def test_wrong_passwords_are_throttled_per_user_and_the_owner_gets_back_in(server_factory):
    server = server_factory(env={"HCARD_THROTTLE_LOGIN_USER": "5 per 3 seconds"})
    # a flood of 20 wrong passwords for one user, from ever new addresses
    answers = [_login(server.url, "wrong-password", f"203.0.113.{i}") for i in range(20)]
    assert [a.status_code for a in answers[:5]] == [401] * 5
    for answer in answers[5:]:
        _assert_throttled(answer, 3)
    # during the flood even the right password waits (it never reaches argon2) ...
    _assert_throttled(_login(server.url, ADMIN_PASSWORD, "192.0.2.1"), 3)
    # ... other users are not affected ...
    server.staff.call(
        "POST",
        "/v1/users",
        json={"username": "buero", "password": "buero-password", "role": "marketing"},
    )
    assert _login(server.url, "buero-password", "203.0.113.1", "buero").status_code == 200
    # ... and once the flood stops, the owner logs in again
    deadline = time.monotonic() + 6
    while (answer := _login(server.url, ADMIN_PASSWORD, "192.0.2.1")).status_code == 429:
        assert time.monotonic() < deadline
        time.sleep(0.25)
    assert answer.status_code == 200, answer.text


def test_wrong_passwords_are_throttled_per_address(server_factory):
    server = server_factory(env={"HCARD_THROTTLE_LOGIN_ADDRESS": "4 per 10 minutes"})
    guesser = "198.51.100.23"
    answers = [_login(server.url, "guess", guesser, f"user{i}") for i in range(6)]
    assert [a.status_code for a in answers] == [401] * 4 + [429] * 2
    _assert_throttled(_login(server.url, ADMIN_PASSWORD, guesser), 600)
    # the office at another address logs in as usual
    assert _login(server.url, ADMIN_PASSWORD, "198.51.100.24").status_code == 200
    # a right password does not count: many logins from one address are fine
    for _ in range(6):
        assert _login(server.url, ADMIN_PASSWORD, "198.51.100.25").status_code == 200


def test_wrong_enrolment_codes_are_throttled_per_address(server_factory):
    server = server_factory(env={"HCARD_THROTTLE_ENROL_ADDRESS": "5 per 10 minutes"})
    code = server.staff.create_terminal(server.staff.create_merchant())

    def enrol(code: str, address: str) -> requests.Response:
        return requests.post(
            f"{server.url}/v1/enrol",
            json={"code": code, "public_key": keys.public_hex(keys.generate())},
            headers={"X-Forwarded-For": address},
            timeout=30,
        )

    guesses = [enrol(f"AAAA-AAA{c}", "198.51.100.50") for c in "ABCDEFGH"]
    assert [g.status_code for g in guesses] == [400] * 5 + [429] * 3
    _assert_throttled(enrol(code, "198.51.100.50"), 600)
    # the till being set up elsewhere enrols with its real code
    assert enrol(code, "198.51.100.51").status_code == 200
