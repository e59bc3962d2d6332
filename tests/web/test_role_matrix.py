"""Every route of the app, with every role: who may, who may not.

`EXPECTED` names, for each (method, path) of the app, who may use it: the public, a signed
terminal, or a set of staff roles. The test walks the app's own route list, so a route that
is added without an entry here fails `test_every_route_is_in_the_matrix`, and one whose
handler forgot its permission check fails the matrix itself: an anonymous visitor must be
sent to the login page (a page) or get 401 (the JSON API), a logged-in user of another role
must get 403, and a user of an allowed role must get neither. Path ids name objects of
*another* merchant than the merchant user's own, so "a merchant sees only their own" is
part of the matrix: a merchant gets 403 (or 404, which tells nothing) for them.

Every state-changing page also refuses a form without its CSRF token.

The app runs in this process on a real SQLite file (Starlette's test client speaks ASGI to
it directly): hundreds of requests in a few seconds.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from hcard.server.app import create_app
from hcard.server.context import Context
from hcard.server.services import cards, merchants, users
from hcard.server.settings import Settings
from hcard.server.vocabulary import Role

PASSWORD = "a long test password 1"
PUBLIC = "public"
TERMINAL = "terminal"
ADMIN = frozenset({Role.ADMIN})
OFFICE = frozenset({Role.ADMIN, Role.MARKETING})
MERCHANT = frozenset({Role.MERCHANT})
EVERYONE = frozenset(Role)
WHO = ("anonymous", *Role)

EXPECTED: dict[tuple[str, str], str | frozenset[Role]] = {
    # --- the till's protocol (signed requests; roles do not apply) and the public
    ("POST", "/v1/enrol"): PUBLIC,
    ("POST", "/v1/terminal/authorise"): TERMINAL,
    ("POST", "/v1/terminal/sync"): TERMINAL,
    ("GET", "/v1/terminal/snapshot"): TERMINAL,
    ("GET", "/v1/terminal/cards/{card_number}"): TERMINAL,
    ("GET", "/v1/health"): PUBLIC,
    ("POST", "/v1/auth/login"): PUBLIC,
    ("GET", "/c/{card_number}"): PUBLIC,
    ("GET", "/c"): PUBLIC,
    ("GET", "/k"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/akzeptanzstellen"): PUBLIC,
    ("GET", "/v1/acceptance-points"): PUBLIC,
    ("GET", "/office/login"): PUBLIC,
    ("POST", "/office/login"): PUBLIC,
    ("GET", "/lang/{code}"): PUBLIC,
    # --- the JSON API for staff
    ("POST", "/v1/auth/logout"): EVERYONE,
    ("GET", "/v1/me"): EVERYONE,
    ("POST", "/v1/users"): ADMIN,
    ("GET", "/v1/users"): ADMIN,
    ("POST", "/v1/merchants"): OFFICE,
    # a merchant's list holds only their own merchant
    ("GET", "/v1/merchants"): EVERYONE,
    ("GET", "/v1/merchants/{merchant_id}"): OFFICE,
    ("PATCH", "/v1/merchants/{merchant_id}"): OFFICE,
    ("GET", "/v1/merchants/{merchant_id}/payments"): OFFICE,
    ("POST", "/v1/merchants/{merchant_id}/terminals"): OFFICE,
    ("GET", "/v1/merchants/{merchant_id}/terminals"): OFFICE,
    ("GET", "/v1/merchants/{merchant_id}/statements"): OFFICE,
    ("POST", "/v1/terminals/{terminal_id}/revoke"): OFFICE,
    ("POST", "/v1/cards"): OFFICE,
    ("POST", "/v1/cards/reserve"): OFFICE,
    ("GET", "/v1/cards/{card_number}"): OFFICE,
    ("POST", "/v1/cards/{card_number}/check-code"): OFFICE,
    ("POST", "/v1/cards/{card_number}/topup"): OFFICE,
    ("POST", "/v1/cards/{card_number}/block"): OFFICE,
    ("POST", "/v1/cards/{card_number}/unblock"): OFFICE,
    ("POST", "/v1/cards/{card_number}/transfer"): OFFICE,
    ("GET", "/v1/cards/{card_number}/history"): OFFICE,
    ("POST", "/v1/ledger/corrections"): ADMIN,
    ("GET", "/v1/ledger/check"): OFFICE,
    ("GET", "/v1/alerts"): OFFICE,
    ("POST", "/v1/settlement/runs"): OFFICE,
    ("GET", "/v1/settlement/runs"): OFFICE,
    ("GET", "/v1/settlement/runs/{run_id}"): OFFICE,
    ("GET", "/v1/settlement/runs/{run_id}/files/{number}"): OFFICE,
    ("POST", "/v1/settlement/runs/{run_id}/cancel"): OFFICE,
    ("GET", "/v1/settlement/runs/{run_id}/statements/{merchant_id}.pdf"): OFFICE,
    ("GET", "/v1/settlement/runs/{run_id}/statements/{merchant_id}.html"): OFFICE,
    ("GET", "/v1/settlement/runs/{run_id}/statements/{merchant_id}.csv"): OFFICE,
    ("POST", "/v1/bank/statements"): OFFICE,
    ("GET", "/v1/bank/unmatched"): OFFICE,
    ("POST", "/v1/bank/lines/{key}/assign"): OFFICE,
    ("POST", "/v1/bank/lines/{key}/fee-withdrawal"): OFFICE,
    ("GET", "/v1/settlement/float-check"): OFFICE,
    ("GET", "/v1/figures/payments-12-months"): OFFICE,
    ("GET", "/v1/exports/datev"): OFFICE,
    ("GET", "/v1/exports/transactions.csv"): OFFICE,
    # --- pages
    ("POST", "/office/logout"): EVERYONE,
    # the overview, alerts and cards (office; corrections admin only)
    ("GET", "/office/"): OFFICE,
    ("POST", "/office/float-check"): OFFICE,
    ("GET", "/office/alerts"): OFFICE,
    ("POST", "/office/alerts/{alert_id}/handle"): OFFICE,
    ("GET", "/office/cards"): OFFICE,
    ("GET", "/office/cards/{number}"): OFFICE,
    ("POST", "/office/cards/{number}/topup"): OFFICE,
    ("POST", "/office/cards/{number}/block"): OFFICE,
    ("POST", "/office/cards/{number}/unblock"): OFFICE,
    ("POST", "/office/cards/{number}/replace"): OFFICE,
    ("POST", "/office/cards/{number}/correction"): ADMIN,
    ("POST", "/office/cards/{number}/check-code"): OFFICE,
    # merchants and terminals (office), users and the audit log (admin), one's own account
    ("GET", "/office/merchants"): OFFICE,
    ("GET", "/office/merchants/new"): OFFICE,
    ("POST", "/office/merchants/new"): OFFICE,
    ("GET", "/office/merchants/check-bank"): OFFICE,
    ("GET", "/office/merchants/{merchant_id}"): OFFICE,
    ("POST", "/office/merchants/{merchant_id}"): OFFICE,
    ("POST", "/office/merchants/{merchant_id}/deactivate"): OFFICE,
    ("POST", "/office/merchants/{merchant_id}/activate"): OFFICE,
    ("POST", "/office/merchants/{merchant_id}/terminals"): OFFICE,
    ("GET", "/office/terminals"): OFFICE,
    ("POST", "/office/terminals/{terminal_id}/revoke"): OFFICE,
    ("GET", "/office/users"): ADMIN,
    ("POST", "/office/users"): ADMIN,
    ("GET", "/office/users/{user_id}"): ADMIN,
    ("POST", "/office/users/{user_id}/role"): ADMIN,
    ("POST", "/office/users/{user_id}/deactivate"): ADMIN,
    ("POST", "/office/users/{user_id}/activate"): ADMIN,
    ("POST", "/office/users/{user_id}/password"): ADMIN,
    ("GET", "/office/audit"): ADMIN,
    ("GET", "/office/account"): EVERYONE,
    ("POST", "/office/account/password"): EVERYONE,
    ("POST", "/office/account/logout-everywhere"): EVERYONE,
    # the monthly close
    ("GET", "/office/settlement"): OFFICE,
    ("GET", "/office/settlement/preview"): OFFICE,
    ("POST", "/office/settlement/runs"): OFFICE,
    ("GET", "/office/settlement/runs/{run_id}"): OFFICE,
    ("GET", "/office/settlement/runs/{run_id}/files/{number}"): OFFICE,
    ("POST", "/office/settlement/runs/{run_id}/cancel"): OFFICE,
    ("POST", "/office/settlement/runs/{run_id}/bank-statement"): OFFICE,
    ("POST", "/office/settlement/runs/{run_id}/lines/{key}/assign"): OFFICE,
    ("POST", "/office/settlement/runs/{run_id}/lines/{key}/fee-withdrawal"): OFFICE,
    ("GET", "/office/settlement/runs/{run_id}/statements/{merchant_id}.html"): OFFICE,
    ("GET", "/office/settlement/runs/{run_id}/statements/{merchant_id}.pdf"): OFFICE,
    ("GET", "/office/settlement/runs/{run_id}/statements/{merchant_id}.csv"): OFFICE,
    # the merchant portal: always the logged-in merchant's own
    ("GET", "/portal/"): MERCHANT,
    ("GET", "/portal/payments"): MERCHANT,
    ("GET", "/portal/statements"): MERCHANT,
    ("GET", "/portal/statements/{run_id}.html"): MERCHANT,
    ("GET", "/portal/statements/{run_id}.pdf"): MERCHANT,
    ("GET", "/portal/statements/{run_id}.csv"): MERCHANT,
    ("GET", "/portal/details"): MERCHANT,
}

#: routes that end the session they are called with (logout-everywhere: all of the user's)
ENDS_SESSIONS = ("/v1/auth/logout", "/office/logout", "/office/account/logout-everywhere")

#: a body each JSON route accepts, so that a refusal is the permission check, not the shape
BODIES: dict[str, object] = {
    "/v1/users": {"username": "new-user", "password": PASSWORD, "role": "marketing"},
    "/v1/merchants": {"name": "Neuer Laden", "iban": "DE89370400440532013000"},
    "/v1/merchants/{merchant_id}/terminals": {"name": "Kasse"},
    "/v1/cards": {"uid": "04a1b2c3d4e5f6"},
    "/v1/cards/reserve": {"count": 1},
    "/v1/cards/{card_number}/topup": {"amount_cents": 100, "source": "cash"},
    "/v1/cards/{card_number}/transfer": {"to_card": "0"},
    "/v1/ledger/corrections": {"card_number": "0", "amount_cents": 1, "reason": "matrix"},
    "/v1/settlement/runs": {"month": "2020-01"},
    "/v1/bank/lines/{key}/assign": {"card_number": "0"},
}
#: query strings the GET routes need
QUERIES = {"/v1/exports/datev": "?month=2020-01", "/v1/exports/transactions.csv": "?month=2020-01"}


def walk(routes) -> Iterator[APIRoute]:
    """The app's routes, through FastAPI's included routers."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from walk(route.original_router.routes)


class Town:
    """A server with one of each: admin, marketing, two merchants (one with a login)."""

    def __init__(self, folder: Path) -> None:
        self.ctx = Context.open(Settings.build(data_dir=folder), create_key=True)
        self.app = create_app(self.ctx)
        admin = users.create_user(self.ctx, None, "admin", PASSWORD, Role.ADMIN)
        actor = users.authenticate(
            self.ctx, str(users.login(self.ctx, "admin", PASSWORD, "x")["token"])
        )
        assert admin["id"] == actor.user_id
        own = merchants.create_merchant(
            self.ctx, actor, name="Eigener Laden", iban="DE89370400440532013000"
        )
        other = merchants.create_merchant(
            self.ctx, actor, name="Anderer Laden", iban="DE89370400440532013000"
        )
        self.other_merchant_id = int(other["id"])  # type: ignore[arg-type]
        users.create_user(self.ctx, actor, "marketing", PASSWORD, Role.MARKETING)
        users.create_user(self.ctx, actor, "merchant", PASSWORD, Role.MERCHANT, int(own["id"]))  # type: ignore[arg-type]
        self.card_number = cards.reserve(self.ctx, actor, 1)[0]
        self._tokens: dict[str, str] = {}

    def client(self, who: str, *, fresh: bool = False) -> TestClient:
        """A browser of `who`; its session is made once per role (argon2 is slow on purpose),
        or anew with `fresh` (for a route that ends it)."""
        client = TestClient(self.app, follow_redirects=False)
        client.get("/office/login")  # the CSRF cookie
        if who == "anonymous":
            return client
        if fresh:
            token = str(users.login(self.ctx, str(who), PASSWORD, f"test-{who}")["token"])
        else:
            if who not in self._tokens:
                session = users.login(self.ctx, str(who), PASSWORD, f"test-{who}")
                self._tokens[who] = str(session["token"])
            token = self._tokens[who]
        client.cookies.set("hcard_session", token)
        return client

    def forget(self, who: str) -> None:
        """Their session was ended by the route (logout everywhere): log in anew next time."""
        self._tokens.pop(who, None)

    def path(self, template: str) -> str:
        values = {
            "merchant_id": str(self.other_merchant_id),
            "card_number": self.card_number,
            "number": self.card_number,
            "code": "en",
            "key": "0" * 32,
        }
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m.group(1), "1"), template)
        return path + QUERIES.get(template, "")


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> Town:
    return Town(tmp_path_factory.mktemp("matrix"))


def _csrf(client: TestClient) -> str:
    page = client.get("/office/login")
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)


def observe(town: Town, method: str, path: str, who: str, *, with_token: bool = True) -> int:
    client = town.client(who, fresh=path in ENDS_SESSIONS)
    url = town.path(path)
    if method == "GET":
        answer = client.get(url)
        return 303 if _to_login(answer) else answer.status_code
    if path.startswith("/v1/"):
        # the JSON API's clients send their token as a header (a cookie would need the CSRF
        # header too: test_the_api_by_cookie_needs_the_csrf_header)
        session = client.cookies.get("hcard_session")
        headers = {"Authorization": f"Bearer {session}"} if session else {}
        client.cookies.delete("hcard_session")
        body = BODIES.get(path, {})
        return client.request(method, url, json=body, headers=headers).status_code
    data = {"csrf": _csrf(client)} if with_token else {}
    answer = client.request(method, url, data=data)
    if path in ENDS_SESSIONS:
        town.forget(who)
    if _to_login(answer):
        return 303
    return 200 if answer.is_redirect else answer.status_code  # done: back to a page (PRG)


def _to_login(answer) -> bool:
    return answer.status_code == 303 and answer.headers["location"].startswith("/office/login")


def discover(town: Town) -> None:  # pragma: no cover - run by hand to draft EXPECTED
    for route in walk(town.app.routes):
        for method in sorted(route.methods):
            seen = {who: observe(town, method, route.path, who) for who in WHO}
            print(method, route.path, seen)


ROUTES = sorted(EXPECTED)


def test_every_route_is_in_the_matrix(town):
    """A new route needs its line in EXPECTED: who may use it is a decision, not an accident."""
    found = {(method, route.path) for route in walk(town.app.routes) for method in route.methods}
    assert found - set(EXPECTED) == set(), "routes without a line in EXPECTED"
    assert set(EXPECTED) - found == set(), "lines in EXPECTED for routes that do not exist"


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_each_role_gets_what_the_matrix_says(town, method, path):
    expected = EXPECTED[(method, path)]
    seen = {who: observe(town, method, path, who) for who in WHO}
    if expected == TERMINAL:
        assert set(seen.values()) == {401}, seen
        return
    if expected == PUBLIC:  # whatever it answers, it does not ask for a login
        assert seen["anonymous"] != 303 or path.startswith("/lang/"), seen
        return
    api = path.startswith("/v1/")
    assert seen["anonymous"] == (401 if api else 303), seen
    for role in Role:
        if role in expected:
            assert seen[role] not in (401, 403), (role, seen)
            assert seen[role] != 303 or path in ENDS_SESSIONS, (role, seen)
        else:
            # 404 tells nothing either: another merchant's object, looked at by a merchant
            assert seen[role] in (403, 404), (role, seen)


FORMS = [(m, p) for m, p in ROUTES if m != "GET" and not p.startswith("/v1/")]


@pytest.mark.parametrize(("method", "path"), FORMS, ids=[f"{m} {p}" for m, p in FORMS])
def test_a_form_without_its_token_is_refused(town, method, path):
    expected = EXPECTED[(method, path)]
    who = next(iter(sorted(expected))) if isinstance(expected, frozenset) else "anonymous"
    assert observe(town, method, path, who, with_token=False) == 403


def test_the_api_by_cookie_needs_the_csrf_header(town):
    """A browser's cookie opens the JSON API too; what changes something then needs the form
    token as `X-CSRF-Token`, as a page's form would carry it (SameSite is the first lock)."""
    client = town.client(Role.ADMIN)
    body = {"name": "Per Cookie", "iban": "DE89370400440532013000"}
    refused = client.post("/v1/merchants", json=body)
    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"
    done = client.post("/v1/merchants", json=body, headers={"X-CSRF-Token": _csrf(client)})
    assert done.status_code == 200
    assert client.get("/v1/merchants").status_code == 200  # reading needs no token


def test_every_audited_action_has_its_words(town):
    """The audit log names an action by its route (`api/audit.py`); the page says it in words
    (`pages/audit.ACTIONS`): a route that changes something needs its words there, and no
    words are kept for a route that is gone."""
    from hcard.server.web.pages.audit import ACTIONS

    changing = {
        route.name
        for route in walk(town.app.routes)
        if route.methods - {"GET", "HEAD"}
        and EXPECTED[(min(route.methods), route.path)] not in (TERMINAL, PUBLIC)
    }
    assert changing - set(ACTIONS) == set(), "actions without words in pages/audit.ACTIONS"
    names = {route.name for route in walk(town.app.routes)}
    assert set(ACTIONS) - names == set(), "words for actions that no route has"
