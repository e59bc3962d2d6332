"""The balance page of an NTAG 424 DNA card's own link, `GET /k?p=<PICCData>&m=<SDMMAC>`, over
real HTTP on SQLite and PostgreSQL.

The links are made as the chip makes them (`fixtures.sun.link`: `hcard.ntag424`'s
`encrypt_picc_data`, `sdm_mac`, `mirror_ascii`, the keys from the test servers' SUN secret),
so no card is needed. A fresh link shows what the check code's page shows; the same link
again, or one with a lower counter, shows nothing (410); an altered, malformed or foreign
link shows nothing and says nothing more (400), alike for a card the server never issued; a
server without a SUN secret says it cannot check links (503); invalid links are throttled
per address (429).
"""

from __future__ import annotations

import html
import secrets
import threading
from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa
from fixtures.server import ServerInfo, fresh_postgres_database, start_server
from fixtures.sun import TAP, link

from hcard import cardnumber
from hcard.errors import Code, message
from hcard.i18n import text

NOT_CONFIGURED = (
    "This server cannot check card links yet. Please enter the card number and check code instead."
)


def _open(
    server: ServerInfo,
    p: str | None,
    m: str | None,
    lang: str = "de",
    address: str | None = None,
) -> requests.Response:
    params = {key: value for key, value in (("p", p), ("m", m)) if value is not None}
    headers = {"Accept-Language": lang}
    if address is not None:
        headers["X-Forwarded-For"] = address
    return requests.get(f"{server.url}/k", params=params, headers=headers, timeout=30)


def _said(msgid: str, lang: str = "de") -> str:
    return html.escape(text(msgid, lang), quote=False)


def _invalid(lang: str = "de") -> str:
    return html.escape(message(Code.SUN_INVALID, lang), quote=False)


def _stale(lang: str = "de") -> str:
    return html.escape(message(Code.SUN_STALE, lang), quote=False)


def _stored_counter(server: ServerInfo, number: str) -> int | None:
    engine = sa.create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT sun_counter FROM cards WHERE number = :n"), {"n": number}
            ).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(request, tmp_path_factory) -> Iterator[ServerInfo]:
    database_url = None
    if request.param == "postgres":
        database_url = fresh_postgres_database(request.getfixturevalue("postgres_url"))
    started = start_server(tmp_path_factory.mktemp(f"sun-{request.param}"), database_url)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def paid_card(server) -> tuple[str, str]:
    """(number, uid) of a card topped up with 20,00 € that paid 2,50 € at 'Eiscafé <&>'."""
    till = server.terminal(server.staff.create_merchant("Eiscafé <&> Untermarkt"))
    number, uid = server.new_card(2_000)
    answer = till.authorise(till.payment(number, uid, 250)).json()
    assert answer["outcome"] == "approved"
    return number, uid


def test_a_fresh_link_shows_the_balance_and_the_last_movements(server, paid_card):
    number, uid = paid_card
    page = _open(server, *link(uid, 7))
    assert page.status_code == 200, page.text[:500]
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="balance"' in page.text
    assert "17,50\u00a0€" in page.text
    assert cardnumber.pretty(number) in page.text
    assert "Eiscafé &lt;&amp;&gt; Untermarkt" in page.text
    assert "-2,50\u00a0€" in page.text
    assert "20,00\u00a0€" in page.text
    assert "gesperrt" not in page.text
    # the page of the check code, without its form; the language switch asks for a new tap
    assert '<form method="get"' not in page.text
    assert 'href="/lang/en?next=/k"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in page.headers
    assert _stored_counter(server, number) == 7
    english = _open(server, *link(uid, 8), lang="en")
    assert english.status_code == 200
    assert "€17.50" in english.text
    assert _stored_counter(server, number) == 8


def test_the_same_link_again_or_an_older_one_shows_nothing(server):
    number, uid = server.new_card(1_000)
    first = link(uid, 5)
    assert _open(server, *first).status_code == 200
    again = _open(server, *first)
    older = _open(server, *link(uid, 4))
    for page in (again, older):
        assert page.status_code == 410
        assert _stale() in page.text
        assert "10,00" not in page.text
        assert 'id="balance"' not in page.text
        assert page.headers["cache-control"] == "no-store"
    assert _stale("en") in _open(server, *first, lang="en").text
    assert _stored_counter(server, number) == 5  # an old link changes nothing
    # the card's next tap opens the page again, up to the chip's last counter
    assert _open(server, *link(uid, 6)).status_code == 200
    assert _open(server, *link(uid, 0xFFFFFF)).status_code == 200
    assert _open(server, *link(uid, 0xFFFFFF)).status_code == 410


def test_altered_malformed_and_foreign_links_show_nothing(server):
    number, uid = server.new_card(1_000)
    p, m = link(uid, 3)
    flipped_p = p[:10] + ("0" if p[10] != "0" else "1") + p[11:]
    flipped_m = m[:-1] + ("0" if m[-1] != "0" else "1")
    other_site = link(uid, 3, secret=b"another-site-sun-secret-0000001")
    not_issued = link("04" + secrets.token_hex(6), 3)
    bad = [
        (p, flipped_m),
        (flipped_p, m),
        other_site,
        not_issued,
        (p[:-2], m),
        (p + "00", m),
        (p, m[:-2]),
        (p, m + "0"),
        (p, ""),
        ("", m),
        (None, m),
        (p, None),
        ("Z" * 32, m),
        (p, "G" * 16),
        (p[:30] + " 0", m),
        ("<script>alert(1)</script>", m),
        ("A" * 5_000, m),
        (m, p),
    ]
    bodies = set()
    for picc, mac in bad:
        page = _open(server, picc, mac)
        assert page.status_code == 400, (picc, mac)
        assert _invalid() in page.text
        assert "10,00" not in page.text
        assert "<script>" not in page.text
        bodies.add(page.text)
    # one page for all of them: a link of a card this server never issued says nothing more
    assert len(bodies) == 1
    assert _invalid("en") in _open(server, *not_issued, lang="en").text
    assert _stored_counter(server, number) is None
    # none of them used up the card's real link; lower-case hex is the same link
    assert _open(server, p.lower(), m.lower()).status_code == 200
    assert _open(server, p, m).status_code == 410


def test_a_blocked_and_a_replaced_card_show_what_the_check_code_shows(server):
    blocked = "This card is blocked. Please ask the town marketing office."
    number, uid = server.new_card(500)
    server.staff.block(number)
    page = _open(server, *link(uid, 1))
    assert page.status_code == 200
    assert "5,00\u00a0€" in page.text
    assert _said(blocked) in page.text
    old, old_uid = server.new_card(700)
    new, _ = server.new_card(0)
    server.staff.transfer(old, new)
    page = _open(server, *link(old_uid, 1))
    assert page.status_code == 200
    assert "0,00\u00a0€" in page.text
    assert _said(blocked) in page.text
    code = server.staff.check_code(old)
    by_code = requests.get(f"{server.url}/c/{old}", params={"k": code}, timeout=30)
    assert _said(blocked) in by_code.text


def test_k_without_a_link_asks_for_a_tap(server):
    for lang in ("de", "en"):
        page = _open(server, None, None, lang)
        assert page.status_code == 200
        assert _said(TAP, lang) in page.text
        assert 'href="/"' in page.text


def test_the_same_link_at_once_opens_the_page_once(server):
    """Two phones (or a double tap) with one link at the same moment: one balance."""
    number, uid = server.new_card(100)
    p, m = link(uid, 9)
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def one() -> None:
        barrier.wait()
        statuses.append(_open(server, p, m).status_code)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [410] * 7
    assert _stored_counter(server, number) == 9


def test_a_server_without_a_sun_secret_says_it_cannot_check_links(server_factory):
    server = server_factory(sun_secret=None)
    _number, uid = server.new_card(100)
    for p, m in (link(uid, 1), (None, None), ("00", "11")):
        for lang in ("de", "en"):
            page = _open(server, p, m, lang)
            assert page.status_code == 503
            assert _said(NOT_CONFIGURED, lang) in page.text
            assert "1,00" not in page.text
    assert not (server.data_dir / "card-sun-secret.hex").exists()


def test_invalid_links_are_throttled_per_address_and_stale_ones_are_not(server_factory):
    server = server_factory(env={"HCARD_THROTTLE_BALANCE_ADDRESS": "3 per 10 minutes"})
    number, uid = server.new_card(100)
    guesser = "198.51.100.7"
    p, m = link(uid, 2)
    statuses = [_open(server, p, "0" * 16, address=guesser).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
    throttled = _open(server, p, m, address=guesser)  # even a right link waits now
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 600
    assert _said("Too many invalid card links.") in throttled.text
    assert "Too many invalid card links." in _open(server, p, m, "en", guesser).text
    # a neighbour's phone is not affected; reloading an old link is not guessing
    neighbour = "198.51.100.8"
    assert _open(server, p, m, address=neighbour).status_code == 200
    assert [_open(server, p, m, address=neighbour).status_code for _ in range(5)] == [410] * 5
    assert _open(server, *link(uid, 3), address=neighbour).status_code == 200
    # the check codes' page shares the address's budget of failures
    code = server.staff.check_code(number)
    by_code = requests.get(
        f"{server.url}/c/{number}",
        params={"k": code},
        headers={"X-Forwarded-For": guesser},
        timeout=30,
    )
    assert by_code.status_code == 429
