"""Schemathesis against the server's own OpenAPI description, as each kind of caller.

Each test file fuzzes as one caller (anonymous, a signed terminal, admin, marketing, a
merchant) against its own real server (`fixtures.server.start_server`: uvicorn on
loopback, SQLite): a till and the office talk HTTP to uvicorn, so the fuzzer does too,
through the body limit, the audit log and the exact path the signature covers; a server
per file keeps the runs apart (a throttled address, a revoked till) and lets xdist spread
them. The town has money in it before the run (a top-up and an online payment), so "no
money changed" says something.

Why HTTP and not schemathesis' in-process ASGI transport: the signature covers the raw
path as uvicorn hands it on, the body limit counts what arrives on the socket, and the
tills' answers (gzip, `Connection: close` after a 413) are uvicorn's; in process, none of
that would be the server's own. The cost is a server start per file (a few seconds).

The description is the app's own (`_description`, made in process when the tests are
collected; `test_openapi.py` checks the server serves the same). Every check schemathesis
has runs (`CHECKS`), and ours; the generation is derandomized with no example database,
so a run is the same every time and a failure replays.
"""

from __future__ import annotations

import functools
import sqlite3
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from fixtures.server import ServerInfo, StaffClient, TerminalClient, start_server
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS as REGISTRY
from schemathesis.checks import load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import CoveragePhaseData

from hcard import reqsign
from hcard.errors import Code
from hcard.records import Record
from hcard.server.app import create_app
from hcard.server.context import Context
from hcard.server.settings import Settings
from hcard.server.vocabulary import Role

PASSWORD = "a long test password 1"
#: examples per operation and caller: enough to reach past the first refusal of each
#: operation (with the coverage phase's boundary cases), little enough for the suite's budget
MAX_EXAMPLES = 8
QUICK_EXAMPLES = 3
#: refusals of data outside the description that are not in schemathesis' default list
NEGATIVE_REJECTED = ("400", "401", "403", "404", "405", "409", "413", "429")
#: data inside the description may still be refused by the rules (a wrong enrolment code,
#: a weak password, an IBAN that fails its check: all 400); that it is never refused as
#: malformed is `described_bounds_hold`'s part
POSITIVE_ANSWERED = ("2xx", "400", "401", "403", "404", "409", "429")
#: methods no operation has, tried on each path (405 and its `Allow`): three of the eight
#: schemathesis knows are enough for that and cut the run's requests by a fifth
UNEXPECTED_METHODS = ("delete", "options", "trace")
#: the codes of FastAPI's own validation (`api/errors.py` `_validation_error`)
VALIDATION_CODES = frozenset({Code.MALFORMED_REQUEST, Code.INVALID_AMOUNT, Code.INVALID_NAME})


@schemathesis.check
def described_bounds_hold(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Data the description allows is never refused by the server's request validation
    (400 with the fields it found wrong): the description is not looser than the server."""
    del ctx
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code != 400:
        return None
    answer = response.json()
    fields = answer.get("details", {}).get("fields")
    if answer.get("code") not in VALIDATION_CODES or not fields:
        return None
    sent = [_sent(case, field) for field in fields]
    if any(_spelling_only(value) for value in sent):
        return None
    raise AssertionError(f"valid by the description, refused as malformed: {answer}")


def _sent(case: schemathesis.Case, field: str) -> object:
    """The value the case sent for a field FastAPI named (`body.fee_bp`), or None."""
    location, *path = field.split(".")
    value: object = case.body if location == "body" else None
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _spelling_only(value: object) -> bool:
    """What JSON Schema allows and the server refuses on purpose, or what the generator
    makes past a bound: `368.0` is an integer to JSON Schema, not to the server's strict
    integers (an amount is never a float); an integer past 2**63 comes from the generator
    handling 64-bit bounds as floats."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not -(2**63) <= value < 2**63


#: every check schemathesis has, and ours (the stateful ones act only on links: none here)
load_all_checks()
CHECKS = REGISTRY.get_all()


@functools.cache
def _description() -> dict[str, Any]:
    """The server's OpenAPI description, made by the app itself (a throwaway data folder):
    the parametrized tests need it when they are collected, before any server runs
    (`test_served_description_is_this_one` checks the served one is the same)."""
    with tempfile.TemporaryDirectory(prefix="hcard-openapi-") as folder:
        ctx = Context.open(Settings.build(data_dir=folder), create_key=True)
        try:
            return create_app(ctx).openapi()
        finally:
            ctx.engine.dispose()


def load_schema(*, coverage: bool = True) -> schemathesis.BaseSchema:
    """The description to fuzz; `coverage=False` leaves out schemathesis' coverage phase
    (every bound of every field, each missing header, the methods a path lacks: the
    thorough part, a few dozen requests per operation), for runs in which an operation
    only refuses (`quick_schema`)."""
    config = SchemathesisConfig.from_dict(
        {
            "checks": {
                "negative_data_rejection": {"expected-statuses": list(NEGATIVE_REJECTED)},
                "positive_data_acceptance": {"expected-statuses": list(POSITIVE_ANSWERED)},
            },
            "phases": {
                "coverage": {
                    "enabled": coverage,
                    "unexpected-methods": list(UNEXPECTED_METHODS),
                }
            },
        }
    )
    return schemathesis.openapi.from_dict(_description(), config=config)


def public_schema() -> schemathesis.BaseSchema:
    """The operations that take no credentials: enrolment, login, health, the acceptance
    points."""
    return load_schema().include(lambda ctx: not ctx.operation.definition.raw.get("security"))


def protected_schema() -> schemathesis.BaseSchema:
    """Every operation that needs a session or a signature, for a caller that has neither:
    each refuses before it reads anything, so the quick run (`QUICK`) is enough."""
    return load_schema(coverage=False).include(
        lambda ctx: bool(ctx.operation.definition.raw.get("security"))
    )


def terminal_schema() -> schemathesis.BaseSchema:
    """The signed operations of the till's protocol (enrolment is the anonymous run's)."""
    return load_schema().include(path_regex="^/v1/terminal/")


def staff_schema(*, coverage: bool = True) -> schemathesis.BaseSchema:
    """The staff and accounting operations, less login and logout: logout would end the
    run's session, and both take no session (the anonymous run has them)."""
    return (
        load_schema(coverage=coverage)
        .include(tag=["staff", "accounting"])
        .exclude(path=["/v1/auth/login", "/v1/auth/logout"])
    )


HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)
#: a run that only has to see each operation answer and conform (`protected_schema`, and
#: the roles that office operations refuse anyway: `staff_schema(coverage=False)`)
QUICK = settings(HYPOTHESIS, max_examples=QUICK_EXAMPLES)


class TerminalSignature(requests.auth.AuthBase):
    """Signs each request exactly as the till does (`terminal/client.py`, `hcard.reqsign`):
    the method, the path with its query as sent, the SHA-256 of the body as sent."""

    def __init__(self, terminal: TerminalClient) -> None:
        self.terminal = terminal

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        assert request.method is not None
        request.headers.update(
            reqsign.sign_request(
                self.terminal.key,
                self.terminal.terminal_id,
                request.method,
                request.path_url,
                body,
            )
        )
        return request


#: the four headers of a signature (the description's `terminal*` security schemes)
SIGNATURE_HEADERS = frozenset(
    name.lower()
    for name in (
        reqsign.HEADER_TERMINAL,
        reqsign.HEADER_TIMESTAMP,
        reqsign.HEADER_NONCE,
        reqsign.HEADER_SIGNATURE,
    )
)


def signature_for(case: schemathesis.Case, terminal: TerminalClient) -> TerminalSignature | None:
    """The till's signature for the request, unless the case is about the signature headers
    themselves (one left out or made invalid on purpose): then it goes as generated, and
    the server must refuse it."""
    meta = case.meta
    if meta is not None:
        data = meta.phase.data
        if (
            isinstance(data, CoveragePhaseData)
            and (data.parameter or "").lower() in SIGNATURE_HEADERS
        ):
            return None
        if meta.is_negative_at(ParameterLocation.HEADER):
            return None
    return TerminalSignature(terminal)


@dataclass
class Town:
    """A running server with a merchant, its enrolled till, users of every role and money."""

    server: ServerInfo
    terminal: TerminalClient
    tokens: dict[Role, str]
    #: the till's records so far (its chain: a sync sends them from the first)
    payments: list[Record]
    money_before: dict[str, object]
    #: by caller, the statuses each operation answered in the run (`got_past`)
    answers: dict[str, dict[str, set[int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )

    def call(self, case: schemathesis.Case, caller: str, **kwargs: Any) -> schemathesis.Response:
        """Send the case to this town's server and run every check on the answer."""
        response = case.call_and_validate(base_url=self.server.url, checks=CHECKS, **kwargs)
        self.answers[caller][case.operation.label].add(response.status_code)
        return response

    def got_past(self, caller: str, refused: int = 401) -> None:
        """Every operation answered the caller something else than `refused` at least once:
        its run was not stopped at the door (a signature or a session the server did not
        take)."""
        answers = self.answers[caller]
        stuck = {label: found for label, found in answers.items() if found == {refused}}
        assert answers, f"no operation ran as {caller}"
        assert not stuck, stuck

    @property
    def database(self) -> Path:
        return Path(self.server.database_url.removeprefix("sqlite:///"))

    def money(self) -> dict[str, object]:
        """What "no money changed" compares: every account with money and its balance, and
        the number of ledger transactions and postings (a booking adds rows even when it
        nets out). Accounts without money (a card issued in the run) do not count."""
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True) as db:
            balances = dict(
                db.execute("SELECT key, balance_cents FROM accounts WHERE balance_cents <> 0")
            )
            transactions = db.execute("SELECT count(*) FROM transactions").fetchone()[0]
            postings = db.execute("SELECT count(*) FROM postings").fetchone()[0]
        return {"balances": balances, "transactions": transactions, "postings": postings}

    def ledger_check(self) -> dict[str, Any]:
        return StaffClient(self.server.url).ledger_check()


def make_town(folder: Path) -> Town:
    server = start_server(folder)
    staff = server.staff
    merchant_id = staff.create_merchant("Fuzzladen")
    terminal = server.terminal(merchant_id, "Fuzzkasse")
    tokens = {Role.ADMIN: staff.token}
    for role in (Role.MARKETING, Role.MERCHANT):
        body: dict[str, object] = {"username": str(role), "password": PASSWORD, "role": role}
        if role is Role.MERCHANT:
            body["merchant_id"] = merchant_id
        staff.call("POST", "/v1/users", json=body)
        tokens[role] = StaffClient(server.url, str(role), PASSWORD).token
    # money in the town: a top-up and an online payment at the till
    number, uid = server.new_card(5_000)
    payment = terminal.payment(number, uid, 1_250, counter=1, purse_cents=5_000)
    answer = terminal.authorise(payment)
    assert answer.status_code == 200, answer.text
    town = Town(server, terminal, tokens, [payment], {})
    town.money_before = town.money()
    assert town.money_before["transactions"] == 2
    return town


def bearer(town: Town, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {town.tokens[role]}"}


def assert_money_unchanged(town: Town) -> None:
    """After a run: the ledger check holds and no money moved."""
    report = town.ledger_check()
    assert report["ok"], report
    assert town.money() == town.money_before
