"""The till's snapshot files: the full answer written once, the deltas beside it, an idle
round writing nothing, and a start that replays only what belongs together. The answers
are real: a server context signs them (`snapshot.answer`), as `GET /v1/terminal/snapshot`."""

from __future__ import annotations

import json

import pytest
from fixtures.town_cards import change_cards, enrol_terminals, issue_cards

from hcard import keys, signed
from hcard.encoding import canonical_bytes
from hcard.errors import Code, HCardError
from hcard.server.context import Context
from hcard.server.services import snapshot
from hcard.server.settings import Settings
from hcard.terminal.snapshot import SnapshotStore

CARDS = 40
TILLS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server context for the module: each test's till starts from its full answer, so
    the cards the tests before changed do not matter."""
    folder = tmp_path_factory.mktemp("server")
    ctx = Context.open(Settings.build(folder, f"sqlite:///{folder / 'hcard.db'}"), create_key=True)
    issue_cards(ctx, CARDS)
    enrol_terminals(ctx, TILLS)
    yield ctx
    ctx.engine.dispose()


@pytest.fixture
def store(server, tmp_path):
    return SnapshotStore(tmp_path / "till" / "snapshot.json", server.issuer_key.public_key())


def _again(store: SnapshotStore, server: Context) -> SnapshotStore:
    """The till started again on its files."""
    return SnapshotStore(store.path, server.issuer_key.public_key())


def _known(store: SnapshotStore) -> tuple[object, ...]:
    return store.state.version, store.state.balances, store.state.deny, store.state.limits


def test_deltas_go_beside_the_full_answer_and_an_idle_round_writes_nothing(server, store):
    full = snapshot.answer(server, 0)
    store.apply_body(full)
    assert store.path.read_bytes() == full  # the bytes as they came, signature and all
    assert not store.deltas_path.exists()

    change_cards(server, 0.25, seed=5)
    delta = snapshot.answer(server, store.since())
    store.apply_body(delta)
    assert store.path.read_bytes() == full  # the full answer is not written again
    held = store.deltas_path.read_bytes()
    assert held.splitlines()[1:] == [delta]

    idle = snapshot.answer(server, store.since())
    version_before = store.state.version
    store.apply_body(idle)
    assert store.deltas_path.read_bytes() == held
    assert store.state.server_time_s is not None
    assert store.state.version == version_before

    again = _again(store, server)
    assert _known(again) == _known(store)
    assert again.since() == store.since() > 0


def test_a_new_full_answer_leaves_the_old_deltas_out(server, store):
    """A power cut after a new full answer was written but before the deltas file went:
    those deltas belong to the full answer before and are not replayed onto the new one."""
    store.apply_body(snapshot.answer(server, 0))
    change_cards(server, 0.25, seed=5)
    store.apply_body(snapshot.answer(server, store.since()))
    old_deltas = store.deltas_path.read_bytes()

    change_cards(server, 0.5, seed=6)
    store.apply_body(snapshot.answer(server, 0))
    assert not store.deltas_path.exists()
    store.deltas_path.write_bytes(old_deltas)  # as if the power went before the unlink
    assert _known(_again(store, server)) == _known(store)


def test_a_tampered_delta_file_counts_for_nothing(server, store):
    store.apply_body(snapshot.answer(server, 0))
    change_cards(server, 0.25, seed=5)
    store.apply_body(snapshot.answer(server, store.since()))
    held = store.deltas_path.read_bytes()
    store.deltas_path.write_bytes(held.replace(b'"balance_cents":', b'"balance_cents":9'))
    again = _again(store, server)
    assert again.state.limits.per_payment_cents == 0  # a fresh till: no offline payments
    assert again.since() == 0


def test_it_asks_for_everything_when_the_deltas_outgrow_the_full_answer(server, store):
    store.apply_body(snapshot.answer(server, 0))
    change_cards(server, 0.5, seed=5)
    store.apply_body(snapshot.answer(server, store.since()))
    assert store.since() > 0  # half the cards: still a delta next time
    change_cards(server, 0.6, seed=6)
    store.apply_body(snapshot.answer(server, store.since()))
    assert store.since() == 0  # the deltas now carry more cards than the full answer


def test_it_asks_for_everything_after_deltas_max(server, store, monkeypatch):
    monkeypatch.setattr(SnapshotStore, "DELTAS_MAX", 2)
    store.apply_body(snapshot.answer(server, 0))
    for seed in (1, 2):
        assert store.since() > 0
        change_cards(server, 0.05, seed=seed)
        store.apply_body(snapshot.answer(server, store.since()))
    assert store.since() == 0


def test_a_body_in_another_form_is_refused(server, store):
    body = snapshot.answer(server, 0)
    for bad in (body.replace(b'{"sig":"', b'{"sig": "', 1), body[:-1], b"", b"[]"):
        with pytest.raises(HCardError) as refused:
            store.apply_body(bad)
        assert refused.value.code == Code.SNAPSHOT_BAD_SIGNATURE
    assert store.state.version == 0


def test_a_delta_leaves_out_the_keys_the_till_holds(server, store, tmp_path):
    store.apply_body(snapshot.answer(server, 0))
    held = dict(store.state.terminal_keys)
    assert len(held) >= TILLS
    digest = store.keys_sha256()

    idle = snapshot.answer(server, store.since(), digest)
    assert "terminal_keys" not in json.loads(idle)["snapshot"]
    store.apply_body(idle)
    assert store.state.terminal_keys == held
    assert "terminal_keys" in json.loads(snapshot.answer(server, 0, digest))["snapshot"]

    enrol_terminals(server, 1)  # a new till: the next delta carries the keys again
    delta = snapshot.answer(server, store.since(), digest)
    assert len(json.loads(delta)["snapshot"]["terminal_keys"]) == len(held) + 1
    change_cards(server, 0.1, seed=7)
    store.apply_body(delta)
    assert store.keys_sha256() != digest
    store.apply_body(snapshot.answer(server, store.since(), store.keys_sha256()))
    assert len(_again(store, server).state.terminal_keys) == len(held) + 1

    # keys left out that a till does not hold (here: none yet): refused, it keeps nothing
    fresh = SnapshotStore(tmp_path / "fresh" / "snapshot.json", server.issuer_key.public_key())
    with pytest.raises(HCardError) as refused:
        fresh.apply_body(idle)
    assert refused.value.code == Code.SNAPSHOT_BAD_SIGNATURE
    assert fresh.state.version == 0
    assert not fresh.path.exists()


def _signed(server: Context, document: dict[str, object]) -> bytes:
    """An answer body for `document`, signed with the issuer's key as the server does."""
    body = canonical_bytes(document)
    sig = keys.sign(server.issuer_key, signed.DOMAIN_SNAPSHOT + body).hex()
    return canonical_bytes({"sig": sig, "snapshot": json.loads(body)})


def test_another_tills_unconfirmed_topups_are_kept_by_card_and_a_bad_one_refused(server, store):
    """`pending_topups` (writes: terminal, counter, amount) goes with the card's balance: an
    offline payment takes them off a purse that till wrote there (`offline.balance_cents`)."""
    document = snapshot.document(server, 0)
    number = next(iter(document["balances"]))
    write = {"terminal_id": 2, "counter": 7, "amount_cents": 500}
    document["balances"][number]["pending_topups"] = [write]
    store.apply_body(_signed(server, document))
    assert store.state.balances[number].pending_topups == (write,)
    assert _again(store, server).state.balances[number].pending_topups == (write,)
    for bad in (
        [{**write, "amount_cents": 0}],
        [{**write, "counter": "7"}],
        [{"terminal_id": 2, "amount_cents": 500}],
        {"2": 500},
        [500],
    ):
        document["balances"][number]["pending_topups"] = bad
        with pytest.raises(HCardError) as refused:
            _again(store, server).apply_body(_signed(server, document))
        assert refused.value.code == Code.SNAPSHOT_BAD_SIGNATURE
