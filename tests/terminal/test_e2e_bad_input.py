"""Bad input at the till: each gives a clear code, nothing approved is lost, the reader recovers."""

import shutil
import time

import pytest
from fixtures.card import CARD_KINDS
from fixtures.terminal import server_card, tear_at_every_point

from hcard.errors import Code, HCardError
from hcard.terminal import journal as jr
from hcard.terminal.card import image as images
from hcard.terminal.card.layout import NDEF_FIRST_PAGE
from hcard.terminal.card.ntag import CHIPS, PAGE_SIZE
from hcard.terminal.core import TerminalTill
from hcard.terminal.till import Outcome

pytestmark = pytest.mark.slow  # minutes on one worker: started first (conftest.py)


@pytest.fixture
def proxied(live_server, card_emulator, terminal_factory, net_proxy, card_type):
    """(terminal behind a proxy, its till with a first snapshot, card number, card path)."""
    number, image = server_card(live_server, 10_000, chip=card_type)
    terminal = terminal_factory(
        live_server, card_emulator.reader_path, proxy=net_proxy(live_server.url)
    )
    till = terminal.till()
    till.sync_now()
    path = card_emulator.present(image)
    return terminal, till, number, path


@pytest.mark.parametrize("mode", ["hang", "http500", "garbage", "down"])
def test_server_trouble_falls_back_to_offline_quickly_and_syncs_later(live_server, proxied, mode):
    terminal, till, number, _path = proxied
    terminal.proxy.mode = mode
    started = time.monotonic()
    result = till.pay(700, card_timeout_s=10)
    elapsed_s = time.monotonic() - started
    assert result.outcome == Outcome.APPROVED, result
    assert result.offline
    assert elapsed_s < 2.5, f"online decision must give up within ~1 s, took {elapsed_s:.2f}"
    assert not till.status().online
    if mode != "hang":  # a hanging sync waits for its long timeout: not worth the test time
        till.sync_now()
        assert till.journal.unsent_count() > 0
    terminal.proxy.mode = "pass"
    till.sync_now()
    assert till.journal.unsent_count() == 0
    assert till.status().online
    assert live_server.staff.card(number)["balance_cents"] == 9_300


def test_sync_answer_lost_after_the_server_applied_the_batch(live_server, proxied):
    terminal, till, number, _path = proxied
    till.link.down()
    for amount in (100, 200, 300):
        assert till.pay(amount, card_timeout_s=10).outcome == Outcome.APPROVED
    terminal.proxy.mode = "lose_answer"
    till.sync_now()
    assert till.journal.unsent_count() == 3  # no answer: not acknowledged...
    assert live_server.staff.card(number)["balance_cents"] == 9_400  # ...but applied
    terminal.proxy.mode = "pass"
    till.sync_now()
    assert till.journal.unsent_count() == 0
    assert live_server.staff.card(number)["balance_cents"] == 9_400  # not twice
    assert live_server.staff.ledger_check()["ok"]


def test_authorisation_answer_lost_is_resolved_and_voided(live_server, proxied):
    """The server approved, the till never heard: it went offline; the online one is voided."""
    terminal, till, number, _path = proxied
    terminal.proxy.mode = "lose_answer"
    result = till.pay(1_000, card_timeout_s=10)
    assert result.outcome == Outcome.APPROVED
    assert result.offline
    assert live_server.staff.card(number)["balance_cents"] == 9_000  # the unanswered one
    unanswered = till.journal.entry(result.seq - 1)
    assert unanswered.state == jr.State.UNSHOWN
    terminal.proxy.mode = "pass"
    till.sync_now()
    assert till.journal.entry(unanswered.record.seq).state == jr.State.CANCELLED
    assert live_server.staff.card(number)["balance_cents"] == 9_000  # charged once
    assert till.journal.unsent_count() == 0


def test_unanswered_online_try_is_declined_at_sync_not_approved_late(
    live_server, proxied, card_emulator
):
    """The online try never reached the server; the same tap paid offline. Settled by sync:
    the server declines the try it never saw, so the card is charged once and not flagged
    (asking `authorise` again approved it late: both in one sync overdrew an honest card)."""
    terminal, till, _number, _path = proxied
    number, image = server_card(live_server, 1_000)
    card_emulator.present(image)
    till.sync_now()  # the snapshot knows the new card
    terminal.proxy.mode = "down"
    result = till.pay(800, card_timeout_s=10)
    assert (result.outcome, result.offline, result.balance_cents) == (Outcome.APPROVED, True, 200)
    unanswered = till.journal.entry(result.seq - 1)
    assert (unanswered.state, unanswered.record.body["mode"]) == (jr.State.UNSHOWN, "online")
    terminal.proxy.mode = "pass"
    till.sync_now()
    settled = till.journal.entry(unanswered.record.seq)
    assert settled.state == jr.State.DECLINED
    assert settled.outcome["code"] == Code.PAYMENT_NOT_FOUND.value
    assert till.journal.last_seq() == result.seq  # nothing to void
    assert till.journal.unsent_count() == 0
    card = live_server.staff.card(number)
    assert card["balance_cents"] == 200
    assert not card["flag_reason"]
    assert live_server.staff.ledger_check()["ok"]


def test_revoked_terminal_leaves_a_booked_unanswered_payment_unsettled(live_server, proxied):
    """The server booked the online try (answer lost), then the terminal was revoked: the
    refusal proves nothing about the booking, so the record stays `unshown` (not declined
    as if never charged) and the reason is kept for the status."""
    terminal, till, number, _path = proxied
    terminal.proxy.mode = "lose_answer"
    result = till.pay(1_000, card_timeout_s=10)
    assert (result.outcome, result.offline) == (Outcome.APPROVED, True)
    assert live_server.staff.card(number)["balance_cents"] == 9_000  # the unanswered one
    unanswered = result.seq - 1
    live_server.staff.revoke_terminal(terminal.terminal_id)
    terminal.proxy.mode = "pass"
    with pytest.raises(HCardError) as refused:
        till.sync_now()
    assert refused.value.code == Code.TERMINAL_REVOKED
    assert till.journal.entry(unanswered).state == jr.State.UNSHOWN
    assert till.agent.last_error == Code.TERMINAL_REVOKED.value
    assert till.status().unsynced_count > 0


def test_restart_voids_an_approved_payment_the_till_never_showed(live_server, proxied):
    terminal, till, number, path = proxied
    payments = till.payments
    record = payments._append(
        {
            "card": number,
            "uid": images.load(path).uid.hex(),
            "amount_cents": 1_500,
            "tip_cents": 0,
            "mode": "online",
            "counter": 1,
            "purse_cents": 8_500,
        },
        jr.State.INTENT,
    )
    answer = till.client.authorise(record).answer
    assert answer["outcome"] == "approved"
    payments.journal.set_state(record.seq, jr.State.APPROVED, outcome=answer)
    assert live_server.staff.card(number)["balance_cents"] == 8_500
    till.close()  # the power goes before the card write and the display

    again = terminal.till()
    assert again.recovered == [record.seq]
    again.sync_now()
    assert live_server.staff.card(number)["balance_cents"] == 10_000
    assert again.journal.entry(record.seq).state == jr.State.CANCELLED


def test_replayed_older_snapshot_is_refused(live_server, proxied):
    """A correctly signed but older answer (full or delta) must not lift a block again."""
    _terminal, till, number, _path = proxied
    old_full = till.client.snapshot(0)
    old_delta = till.client.snapshot(till.snapshot.since())
    live_server.staff.block(number)
    till.sync_now()
    assert number in till.snapshot.state.deny
    current = till.snapshot.state
    for replay in (old_full, old_delta):
        assert replay["snapshot"]["version"] < current.version
        with pytest.raises(HCardError) as raised:
            till.snapshot.apply(replay)
        assert raised.value.code == Code.SNAPSHOT_STALE
    assert till.snapshot.state is current
    till.snapshot.apply(till.client.snapshot(0))  # a fresh full one still gets in
    assert number in till.snapshot.state.deny


def test_snapshot_with_a_bad_signature_is_ignored(proxied):
    _terminal, till, _number, _path = proxied
    answer = till.client.snapshot(0)
    before = till.snapshot.state
    tampered = {
        **answer,
        "snapshot": {
            **answer["snapshot"],
            "limits": {**answer["snapshot"]["limits"], "per_payment_cents": 10**6},
        },
    }
    with pytest.raises(HCardError) as raised:
        till.snapshot.apply(tampered)
    assert raised.value.code == Code.SNAPSHOT_BAD_SIGNATURE
    with pytest.raises(HCardError):
        till.snapshot.apply({**answer, "sig": "00" * 64})
    assert till.snapshot.state is before
    # the file on disk is checked again at start: tampered, it counts for nothing
    path = till.snapshot.path
    held = path.read_text()
    assert '"per_payment_cents":2500' in held  # the answer's bytes as they came
    path.write_text(held.replace('"per_payment_cents":2500', '"per_payment_cents":9999'))
    from hcard.terminal.snapshot import SnapshotStore

    reloaded = SnapshotStore(path, till._issuer)
    assert reloaded.state.limits.per_payment_cents == 0


def test_clock_far_off_is_corrected_from_the_server(proxied):
    _terminal, till, _number, _path = proxied
    till.clock.offset_s = -3 * 3600  # a Pi without RTC after a power cut
    till.sync_now()
    assert till.status().online
    assert abs(till.clock.offset_s) < 60


def test_reader_unplugged_and_plugged_back(live_server, proxied, card_emulator):
    _terminal, till, _number, path = proxied
    assert till.pay(100, card_timeout_s=10).outcome == Outcome.APPROVED
    card_emulator.stop()
    gone = till.pay(100, card_timeout_s=1)
    assert gone.outcome == Outcome.CANCELLED
    card_emulator.start()
    card_emulator.present(path)
    back = till.pay(100, card_timeout_s=10)
    assert back.outcome == Outcome.APPROVED


def _garbage_card(image):
    card = image.copy()
    start = NDEF_FIRST_PAGE * PAGE_SIZE
    card.memory[start : start + 16] = b"\x42" * 16
    return card


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda image: images.blank(CHIPS["NTAG213"]), Code.CARD_TOO_SMALL),
        (lambda image: images.blank(CHIPS["NTAG215"]), Code.CARD_NOT_ISSUED),
        (_garbage_card, Code.CARD_UNREADABLE),
        (lambda image: images.with_uid(image, image.uid, genuine=False), Code.CARD_NOT_GENUINE),
    ],
)
def test_bad_cards_are_refused_and_the_next_good_card_pays(proxied, card_emulator, make, code):
    _terminal, till, _number, path = proxied
    good = images.load(path)
    card_emulator.present(make(good), name="bad")
    refused = till.pay(100, card_timeout_s=10)
    assert (refused.outcome, refused.code) == (Outcome.DECLINED, code)
    card_emulator.present(path)
    assert till.pay(100, card_timeout_s=10).outcome == Outcome.APPROVED


@pytest.mark.parametrize(("card_type", "card_stack"), CARD_KINDS)
@pytest.mark.parametrize("online", [False, True])
def test_card_pulled_away_at_every_point_of_a_payment(live_server, proxied, card_emulator, online):
    """Tear the card after 0, 2, 4, ... frames of a payment (online: every 4th); tap again.

    Whatever the till showed is what the server books; the card always reads.
    """
    _terminal, till, number, path = proxied
    if not online:
        till.link.down()

    def keep_offline() -> None:
        if not online:
            till.sync_now()  # keeps the consecutive-offline count low
            till.link.down()

    approved_cents = tear_at_every_point(
        card_emulator,
        path,
        lambda timeout_s: till.pay(10, card_timeout_s=timeout_s),
        step=2 if not online else 4,
        before_each=keep_offline,
    )
    till.sync_now()
    assert till.journal.unsent_count() == 0
    card = live_server.staff.card(number)
    assert card["balance_cents"] == 10_000 - approved_cents
    assert not card["denied"], card
    assert live_server.staff.ledger_check()["ok"]


def test_journal_of_another_terminal_is_refused(live_server, card_emulator, terminal_factory):
    first = terminal_factory(live_server, card_emulator.reader_path)
    second = terminal_factory(live_server, card_emulator.reader_path)
    first.till().day_close()
    first.close()
    shutil.copy(first.state_dir / "journal.sqlite", second.state_dir / "journal.sqlite")
    with pytest.raises(HCardError) as raised:
        TerminalTill(second.state_dir, start_sync=False)
    assert raised.value.code == Code.JOURNAL_FOREIGN


class _WriteRaises:
    """A real card session whose purse write raises what no card layer should (a bug, or
    nfcpy's IndexError on an odd ISO-DEP frame): the one fault no emulator can make."""

    def __init__(self, session):
        self._session = session

    def __getattr__(self, name):
        return getattr(self._session, name)

    def write_purse(self, purse, key):
        raise IndexError("a bug below the card layer")


class _ReaderWithFaultyWrites:
    def __init__(self, reader):
        self._reader = reader

    def __getattr__(self, name):
        return getattr(self._reader, name)

    def wait_for_card(self, timeout_s, cancel=None):
        session = self._reader.wait_for_card(timeout_s, cancel)
        return None if session is None else _WriteRaises(session)


@pytest.mark.parametrize("online", [True, False])
def test_an_unexpected_failure_of_the_purse_write_is_a_declined_payment(
    live_server, card_emulator, enrolled_terminal, online
):
    from hcard.terminal.card import open_reader

    number, image = server_card(live_server, 3_000)
    card_emulator.present(image)
    reader = _ReaderWithFaultyWrites(open_reader(card_emulator.reader_path))
    till = enrolled_terminal.till(reader=reader)
    till.sync_now()
    if not online:
        till.link.down()
    failed = till.pay(500, card_timeout_s=10)
    assert (failed.outcome, failed.code) == (Outcome.DECLINED, Code.CARD_UNREADABLE)
    till.sync_now()
    assert till.journal.unsent_count() == 0
    assert not [e for e in till.journal.entries() if e.state == jr.State.FINAL]
    assert live_server.staff.card(number)["balance_cents"] == 3_000
    assert live_server.staff.ledger_check()["ok"]


def test_a_crash_between_the_sync_answer_and_settling_an_unanswered_payment_loses_nothing(
    live_server, proxied, monkeypatch
):
    """The till dies right after the sync answer came (here: settling raises once). The
    unanswered online payment, which the server approved, must still be voided: the batch is
    sent again and the server answers the same."""
    terminal, till, number, _path = proxied
    terminal.proxy.mode = "lose_answer"
    result = till.pay(1_000, card_timeout_s=10)
    assert (result.outcome, result.offline) == (Outcome.APPROVED, True)
    unanswered = result.seq - 1
    assert till.journal.entry(unanswered).state == jr.State.UNSHOWN
    terminal.proxy.mode = "pass"
    settle = till.payments.settle_unshown

    def crash_once(results):
        monkeypatch.setattr(till.payments, "settle_unshown", settle)
        raise RuntimeError("power cut")

    monkeypatch.setattr(till.payments, "settle_unshown", crash_once)
    with pytest.raises(RuntimeError):
        till.sync_now()
    till.sync_now()
    assert till.journal.entry(unanswered).state == jr.State.CANCELLED
    assert till.journal.unsent_count() == 0
    assert live_server.staff.card(number)["balance_cents"] == 9_000  # charged once
