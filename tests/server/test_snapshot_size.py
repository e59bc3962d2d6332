"""The snapshot stays small with a town's 20,000 cards, and a till that was off for a month
catches up in one answer: a delta while it carries fewer than 3/4 of the cards, the full
snapshot from there (`snapshot.answer_in_full`), whichever is smaller."""

from __future__ import annotations

import gzip
import json

import pytest
import requests
from fixtures.town_cards import change_cards, issue_cards

from hcard import keys, reqsign, signed
from hcard.encoding import parse_canonical
from hcard.server.context import Context
from hcard.server.db import counters
from hcard.server.db import engine as db_engine
from hcard.server.services import snapshot
from hcard.server.settings import Settings
from hcard.server.vocabulary import CounterName
from hcard.terminal.snapshot import SnapshotStore

CARDS = 20_000
MB = 1024 * 1024
#: what the full snapshot of CARDS cards measured gzipped (170 KiB): a bound with room, so
#: that a change that makes it much larger shows here, long before the 1 MB target
FULL_SENT_MAX_BYTES = 256 * 1024


#: enough for a month's delta to be answered by the rule, not by `FULL_MIN_CARDS`
SMALL_TOWN_CARDS = 2_000


def _town(folder, cards: int):
    ctx = Context.open(Settings.build(folder, f"sqlite:///{folder / 'hcard.db'}"), create_key=True)
    issue_cards(ctx, cards)
    return ctx


@pytest.fixture
def town(tmp_path):
    """A server context with 20,000 issued cards (balances, counters, 1 % blocked)."""
    ctx = _town(tmp_path, CARDS)
    yield ctx
    ctx.engine.dispose()


@pytest.fixture
def small_town(tmp_path):
    ctx = _town(tmp_path, SMALL_TOWN_CARDS)
    yield ctx
    ctx.engine.dispose()


def _version(ctx: Context) -> int:
    with db_engine.read(ctx.engine) as conn:
        return counters.current(conn, CounterName.VERSION)


def _snap(body: bytes) -> dict:
    return json.loads(body)["snapshot"]


def test_full_snapshot_of_a_town_is_under_a_megabyte_on_the_wire(town):
    body = snapshot.answer(town, 0)
    sent, headers = snapshot.encode(body, "gzip, deflate")  # what requests sends
    assert headers == {"Vary": "Accept-Encoding", "Content-Encoding": "gzip"}
    assert len(sent) < FULL_SENT_MAX_BYTES < MB, len(sent)
    assert gzip.decompress(sent) == body
    answer = parse_canonical(body)  # the body is canonical JSON: {"sig", "snapshot"}
    assert signed.verify_document(
        town.issuer_key.public_key(), signed.DOMAIN_SNAPSHOT, answer["snapshot"], answer["sig"]
    )
    assert answer["snapshot"]["full"]
    assert len(answer["snapshot"]["balances"]) == CARDS
    assert len(answer["snapshot"]["deny_add"]) == CARDS // 100


def test_a_till_off_for_a_month_catches_up_in_one_answer(small_town, tmp_path, monkeypatch):
    town = small_town
    issuer = town.issuer_key.public_key()

    def till(name: str, *answers: bytes) -> tuple[object, ...]:
        """What a till knows after `answers`, in order."""
        store = SnapshotStore(tmp_path / name / "snapshot.json", issuer)
        for answer in answers:
            store.apply_body(answer)
        return store.state.version, store.state.balances, store.state.deny

    before = snapshot.answer(town, 0)
    since = _snap(before)["version"]

    # a month: 60 % of the cards changed. One answer, a delta with every one of them
    changed = change_cards(town, 0.6, seed=11)
    month = snapshot.answer(town, since)
    full = snapshot.answer(town, 0)
    assert not _snap(month)["full"]
    assert len(_snap(month)["balances"]) == changed
    assert len(snapshot.encode(month, "gzip")[0]) < len(snapshot.encode(full, "gzip")[0])
    assert till("month", before, month) == till("all-month", full)

    # more than 3/4 of the cards changed since the till's version: the full snapshot, smaller
    # than that delta would be
    change_cards(town, 0.6, seed=12)  # with the month's, about 84 % of the cards
    longer = snapshot.answer(town, since)
    assert _snap(longer)["full"]
    with monkeypatch.context() as forced:
        forced.setattr(snapshot, "FULL_SHARE_NUM", snapshot.FULL_SHARE_DEN + 1)  # never full
        as_delta = snapshot.answer(town, since)
    assert not _snap(as_delta)["full"]
    assert len(snapshot.encode(longer, "gzip")[0]) < len(snapshot.encode(as_delta, "gzip")[0])
    assert till("longer", before, longer) == till("all-longer", snapshot.answer(town, 0))


@pytest.mark.parametrize(
    ("since", "version", "changed", "issued", "full"),
    [
        (0, 10, 0, 0, True),  # a till with nothing
        (11, 10, 0, 5, True),  # ahead of a server restored from a backup
        (10, 10, 0, 5, False),
        (5, 10, 999, 1_000, False),  # every card, but few: a few kilobytes either way
        (5, 10, 1_000, 1_000, True),
        (5, 10, 14_999, 20_000, False),  # just under 3/4
        (5, 10, 15_000, 20_000, True),
    ],
)
def test_when_a_delta_is_answered_in_full(since, version, changed, issued, full):
    assert snapshot.answer_in_full(since, version, changed, issued) is full


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [
        ("gzip, deflate", True),
        ("gzip, deflate, br, zstd", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, *", False),
        ("br, *;q=0", False),
        ("identity", False),
        ("", False),
        (None, False),
        ("gzip;q=nonsense", False),
    ],
)
def test_accept_encoding(header, gzip_ok):
    assert snapshot.accepts_gzip(header) is gzip_ok


def test_small_answers_go_as_they_are():
    small = b"x" * (snapshot.GZIP_MIN_BYTES - 1)
    assert snapshot.encode(small, "gzip") == (small, {"Vary": "Accept-Encoding"})


def _get(till, path: str, accept_encoding: str) -> requests.Response:
    headers = reqsign.sign_request(till.key, till.terminal_id, "GET", path, b"")
    headers["Accept-Encoding"] = accept_encoding
    return requests.get(f"{till.url}{path}", headers=headers, timeout=30, stream=True)


def test_the_wire_carries_the_signed_bytes_gzipped(live_server, tmp_path):
    """Over HTTP: gzip when asked for (what the bytes measured above are), plain otherwise;
    both the same signed bytes, which the till checks as they came."""
    till = live_server.terminal()
    for _ in range(3):
        live_server.new_card(500)
    path = "/v1/terminal/snapshot?since=0"
    zipped = _get(till, path, "gzip, deflate")
    assert zipped.status_code == 200
    assert zipped.headers["Content-Encoding"] == "gzip"
    on_wire = zipped.raw.read(decode_content=False)
    assert int(zipped.headers["Content-Length"]) == len(on_wire)
    body = gzip.decompress(on_wire)
    assert snapshot.encode(body, "gzip")[0] == on_wire  # the service's bytes, unchanged

    plain = _get(till, path, "identity")
    assert plain.status_code == 200
    assert "Content-Encoding" not in plain.headers
    issuer = keys.public_from_hex(live_server.issuer_public_key)
    for name, received in (("zipped", body), ("plain", plain.raw.read())):
        store = SnapshotStore(tmp_path / name / "snapshot.json", issuer)
        assert store.apply_body(received).limits.per_payment_cents > 0

    # the agent's pull: the digest of the keys it holds, in the signed path
    held = json.loads(body)["snapshot"]
    pull = (
        f"/v1/terminal/snapshot?since={held['version']}&keys_sha256={held['terminal_keys_sha256']}"
    )
    idle = _get(till, pull, "gzip")
    assert idle.status_code == 200
    assert "terminal_keys" not in idle.json()["snapshot"]
    wrong = _get(till, "/v1/terminal/snapshot?since=1&keys_sha256=XYZ", "gzip")
    assert (wrong.status_code, wrong.json()["code"]) == (400, "malformed_request")
