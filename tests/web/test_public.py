"""The public pages and the acceptance points' JSON, over real HTTP without a browser.

The JSON for the town's website gives exactly the listed, active merchants with exactly
the fields a shop shows on its door (never the IBAN, the contact or the fee), filtered by
category, readable from any website (CORS) and cacheable for a short while; the HTML list
shows the same places by category with a link to the map; the start page's form leads to
the card's own balance page. No public page sets a cookie.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import quote_plus

import pytest
import requests
from fixtures.public import PLACE_FIELDS, add_place
from fixtures.server import DEMO_IBAN, ServerInfo, start_server

from hcard import cardnumber
from hcard.i18n import text

OSM = "https://www.openstreetmap.org/search?query="


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """A server with four listed places, one that is not listed and one that closed."""
    server = start_server(tmp_path_factory.mktemp("public"))
    try:
        add_place(
            server,
            "Bäckerei Sonne",
            category="food",
            street="Große Weilstraße",
            building_number="12a",
            opening_hours="Mo–Fr 7–18\nSa 7–13",
        )
        add_place(server, "café lotte", category="restaurant", street="Untermarkt")
        add_place(server, "Apotheke am Markt", category="health", building_number="3")
        add_place(
            server, "Buchhandlung", category="retail", street="", building_number="", postcode=""
        )
        add_place(server, "Geheimladen", category="retail", listed=False)
        add_place(server, "Altes Kino", category="culture", active=False)
        yield server
    finally:
        server.stop()


def _json(server: ServerInfo, **params: str) -> requests.Response:
    return requests.get(f"{server.url}/v1/acceptance-points", params=params, timeout=30)


def _page(server: ServerInfo, path: str, language: str = "de", **kwargs) -> requests.Response:
    kwargs.setdefault("allow_redirects", False)
    return requests.get(
        server.url + path, headers={"Accept-Language": language}, timeout=30, **kwargs
    )


def test_the_json_lists_exactly_the_listed_active_places_with_their_public_fields(town):
    answer = _json(town)
    assert answer.status_code == 200
    points = answer.json()["acceptance_points"]
    assert [p["name"] for p in points] == [
        "Apotheke am Markt",
        "Bäckerei Sonne",
        "Buchhandlung",
        "café lotte",
    ]
    assert all(tuple(point) == PLACE_FIELDS for point in points)
    bakery = points[1]
    assert bakery == {
        "name": "Bäckerei Sonne",
        "category": "food",
        "street": "Große Weilstraße",
        "building_number": "12a",
        "postcode": "45525",
        "town": "Hattingen",
        "opening_hours": "Mo–Fr 7–18\nSa 7–13",
        "map_url": OSM + quote_plus("Große Weilstraße 12a, 45525 Hattingen"),
    }
    assert points[0]["map_url"] == OSM + quote_plus("Heggerstraße 3, 45525 Hattingen")
    assert points[2]["map_url"] == OSM + "Hattingen"  # only the town is known
    # nothing private, nor the places that must not show
    body = answer.text
    for secret in (DEMO_IBAN, "private contact", "fee", "Geheimladen", "Altes Kino", '"id"'):
        assert secret not in body


def test_the_json_filters_by_category(town):
    assert [p["name"] for p in _json(town, category="food").json()["acceptance_points"]] == [
        "Bäckerei Sonne"
    ]
    assert _json(town, category="culture").json() == {"acceptance_points": []}  # closed
    assert [p["name"] for p in _json(town, category="retail").json()["acceptance_points"]] == [
        "Buchhandlung"
    ]
    refused = _json(town, category="casino")
    assert refused.status_code == 400
    assert refused.json()["code"] == "malformed_request"


def test_the_json_is_for_any_website_and_cached_briefly(town):
    answer = requests.get(
        f"{town.url}/v1/acceptance-points",
        headers={"Origin": "https://www.hattingen.de"},
        timeout=30,
    )
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.headers["cache-control"] == "public, max-age=300"
    assert "set-cookie" not in answer.headers


def test_the_json_is_documented_in_openapi(town):
    spec = requests.get(f"{town.url}/openapi.json", timeout=30).json()
    operation = spec["paths"]["/v1/acceptance-points"]["get"]
    assert operation["tags"] == ["public"]
    assert [p["name"] for p in operation["parameters"]] == ["category"]
    point = spec["components"]["schemas"]["AcceptancePointOut"]
    assert tuple(point["properties"]) == PLACE_FIELDS
    assert "/c/{card_number}" not in spec["paths"]  # a page, not API


def _headings(page: str, level: int) -> list[str]:
    found = re.findall(rf"<h{level}[^>]*>(.*?)</h{level}>", page, flags=re.S)
    return [html.unescape(h) for h in found]


def test_the_page_shows_the_places_by_category(town):
    page = _page(town, "/akzeptanzstellen", language="en")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "public, max-age=300"
    assert "Accept-Language" in page.headers["vary"]
    assert "set-cookie" not in page.headers
    assert '<html lang="en">' in page.text
    # the categories in their fixed order, each with its places by name
    assert _headings(page.text, 2) == [
        "Restaurants and cafés",
        "Food and drink",
        "Shops",
        "Health and beauty",
    ]
    assert _headings(page.text, 3) == [
        "café lotte",
        "Bäckerei Sonne",
        "Buchhandlung",
        "Apotheke am Markt",
    ]
    assert "4 places" in page.text
    for hidden in ("Geheimladen", "Altes Kino", DEMO_IBAN, "private contact"):
        assert hidden not in page.text
    link = html.escape(OSM + quote_plus("Große Weilstraße 12a, 45525 Hattingen"))
    assert (
        f'<a href="{link}" rel="noopener external">Große Weilstraße 12a, 45525 Hattingen</a>'
        in (page.text)
    )
    assert "Mo–Fr 7–18<br>Sa 7–13" in page.text


def test_the_page_filters_by_category(town):
    page = _page(town, "/akzeptanzstellen?category=food", language="en")
    assert page.status_code == 200
    assert _headings(page.text, 3) == ["Bäckerei Sonne"]
    assert '<option value="food" selected>' in page.text
    assert '<a href="/akzeptanzstellen?category=food" aria-current="page">' in page.text
    # the language switch keeps the filter
    assert "next=/akzeptanzstellen%3Fcategory%3Dfood" in page.text
    # the select's "all" sends an empty category
    assert _headings(_page(town, "/akzeptanzstellen?category=", "en").text, 3) == _headings(
        _page(town, "/akzeptanzstellen", "en").text, 3
    )
    empty = _page(town, "/akzeptanzstellen?category=fashion", language="en")
    assert "No place in this category takes the card yet." in empty.text
    assert _page(town, "/akzeptanzstellen?category=casino").status_code == 400


def test_the_page_speaks_german_first(town):
    page = _page(town, "/akzeptanzstellen", language="de")
    assert '<html lang="de">' in page.text
    assert html.escape(text("Restaurants and cafés", "de")) in page.text


def test_the_start_page_sends_number_and_code_to_the_cards_page(town):
    start = _page(town, "/", language="en")
    assert start.status_code == 200
    assert "set-cookie" not in start.headers
    assert '<form method="get" action="/c"' in start.text
    assert '<label for="f-number">Card number' in start.text
    assert '<label for="f-k">Check code' in start.text
    assert 'name="number"' in start.text
    assert 'name="k"' in start.text
    assert 'href="/akzeptanzstellen"' in start.text
    assert 'href="/office/login"' in start.text
    number, _uid = town.new_card(1_000)
    code = town.staff.check_code(number)
    typed = f"?number={quote_plus(cardnumber.pretty(number))}&k={quote_plus(' ' + code.lower())}"
    sent = _page(town, "/c" + typed)
    assert sent.status_code == 303
    assert sent.headers["location"] == f"/c/{number}?k={code.lower()}"
    assert sent.headers["referrer-policy"] == "no-referrer"
    assert sent.headers["cache-control"] == "no-store"
    shown = _page(town, "/c" + typed, allow_redirects=True)
    assert shown.status_code == 200
    assert "10,00\u00a0€" in shown.text


def test_a_mistyped_number_is_shown_again_with_what_is_wrong(town):
    page = _page(town, "/c?number=1234+5678&k=QWER-TYUI", language="en")
    assert page.status_code == 400
    assert "This is not a card number. Please check the number on the card." in page.text
    assert 'value="1234 5678"' in page.text
    assert "QWER-TYUI" not in page.text  # the code is never shown again
    assert 'aria-invalid="true"' in page.text
    assert _page(town, "/c?number=" + "9" * 41).status_code == 400
