"""Card issuance against a real server and emulated tags over nfcpy's udp driver: refusals,
give-up after a failed tag, resuming a stopped run."""

from __future__ import annotations

import csv
from pathlib import Path

from fixtures.provisioning import BALANCE_URL, Operator, card_keys
from fixtures.terminal import server_card

from hcard import cardnumber
from hcard.errors import Code
from hcard.provisioning import issuance
from hcard.terminal.card import image as images
from hcard.terminal.card import layout, open_reader

CARD_TIMEOUT_S = 20.0


def _issuer(batch, client, reader, server, operator, **kwargs) -> issuance.Issuer:
    return issuance.Issuer(batch, client, reader, card_keys(server), operator, **kwargs)


def test_issued_tags_and_small_chips_are_put_aside_unregistered(
    live_server, card_emulator, provision_login, tmp_path: Path
):
    client, _ = provision_login
    operator = Operator(card_emulator, tmp_path)
    # 1: a card this server already issued; 2: an NTAG213; 3: a blank NTAG215.
    number, issued = server_card(live_server)
    images.save(issued, tmp_path / "issued.json")
    operator.tags.append(tmp_path / "issued.json")
    small = operator.blank("NTAG213")
    operator.blank()
    batch = issuance.Batch.reserve(tmp_path / "b.json", client, 1, BALANCE_URL)
    reader = open_reader(card_emulator.reader_path)
    try:
        assert _issuer(batch, client, reader, live_server, operator).run(CARD_TIMEOUT_S)
    finally:
        reader.close()
    assert [k for k in operator.kinds() if k != "retry"] == ["tag_refused", "tag_refused", "done"]
    refused = [e for e in operator.events if e.kind is issuance.EventKind.TAG_REFUSED]
    assert refused[0].code is Code.CARD_ALREADY_EXISTS
    assert refused[0].detail == cardnumber.pretty(number)
    assert refused[1].code is Code.CARD_TOO_SMALL
    # The small tag never reached the server; the issued card still has its own number.
    small_uid = images.load(small).uid.hex()
    assert batch.owner_of(small_uid) is None
    assert live_server.staff.card(number)["uid"] == issued.uid.hex()
    (entry,) = batch.entries
    assert entry.status is issuance.Status.DONE


def test_a_failed_tag_is_given_up_blocked_and_never_reused(
    live_server, card_emulator, provision_login, tmp_path: Path
):
    """Tag 0 tears on its write; instead of laying it on again the operator takes tag 1. The
    first number is blocked on the server, tag 1 gets the second number; when tag 0 comes
    back later it is refused (it belongs to the given-up number)."""
    client, _ = provision_login
    operator = Operator(card_emulator, tmp_path, tear_on={0: 25})
    torn, fresh = operator.blank(), operator.blank()
    operator.tags.append(torn)  # the operator tries the failed tag again, later
    operator.blank()
    batch = issuance.Batch.reserve(tmp_path / "b.json", client, 3, BALANCE_URL)
    reader = open_reader(card_emulator.reader_path)
    try:
        # The operator ignores the request to lay the torn tag on again: a new tag comes.
        def no_retry(event: issuance.Event) -> None:
            if event.kind is not issuance.EventKind.RETRY or event.entry is not batch.entries[0]:
                operator(event)

        issuer = _issuer(batch, client, reader, live_server, no_retry)
        assert issuer.run(CARD_TIMEOUT_S)
    finally:
        reader.close()
    first, second, third = batch.entries
    assert first.status is issuance.Status.FAILED
    assert first.uid == images.load(torn).uid.hex()
    assert live_server.staff.card(first.card_number)["blocked"] is True
    assert second.status is issuance.Status.DONE
    assert second.uid == images.load(fresh).uid.hex()
    assert third.status is issuance.Status.DONE
    refused = [e for e in operator.events if e.kind is issuance.EventKind.TAG_REFUSED]
    assert len(refused) == 1
    assert refused[0].uid == first.uid
    # The server bound each tag once: the torn tag still to the first (blocked) number.
    assert live_server.staff.card(first.card_number)["uid"] == first.uid
    assert batch.write_csv(tmp_path / "print.csv") == 2
    with (tmp_path / "print.csv").open(newline="") as handle:
        printed = [row["card_number"] for row in csv.DictReader(handle)]
    assert printed == [cardnumber.pretty(e.card_number) for e in (second, third)]


def test_a_stopped_run_resumes_from_the_batch_file(
    live_server, card_emulator, provision_login, tmp_path: Path
):
    client, _ = provision_login
    operator = Operator(card_emulator, tmp_path, stop_after_places=2)
    for _ in range(4):
        operator.blank()
    batch = issuance.Batch.reserve(tmp_path / "b.json", client, 4, BALANCE_URL)
    reader = open_reader(card_emulator.reader_path)
    try:
        # Two cards, then the operator stops the run: it stops and says so (however long a
        # loaded machine takes for the second card).
        issuer = _issuer(batch, client, reader, live_server, operator)
        assert not issuer.run(CARD_TIMEOUT_S, operator.went_home)
        assert [e.status for e in issuance.Batch.load(batch.path).entries] == [
            issuance.Status.DONE,
            issuance.Status.DONE,
            issuance.Status.RESERVED,
            issuance.Status.RESERVED,
        ]
        # The same batch file, a new run: only the two missing cards are written.
        operator.stop_after_places = None
        resumed = issuance.Batch.load(batch.path)
        assert _issuer(resumed, client, reader, live_server, operator).run(CARD_TIMEOUT_S)
    finally:
        reader.close()
    assert [e.status for e in resumed.entries] == [issuance.Status.DONE] * 4
    assert len({e.uid for e in resumed.entries}) == 4
    assert resumed.write_csv(tmp_path / "print.csv") == 4


def test_a_write_torn_after_the_ndef_message_is_completed_on_retry(
    live_server, card_emulator, provision_login, tmp_path: Path
):
    """A tear late in the write leaves a card whose NDEF already verifies but whose password
    protection (CFG1/CFG0) is missing. The retry must write it again, not take it as done."""
    client, _ = provision_login
    frames: dict[str, int] = {}

    class Counting(Operator):
        def __call__(self, event: issuance.Event) -> None:
            if event.kind is issuance.EventKind.PLACE and "start" not in frames:
                frames["start"] = card_emulator.status()["frames"]
            if event.kind is issuance.EventKind.REMOVE and "end" not in frames:
                frames["end"] = card_emulator.status()["frames"]
            super().__call__(event)

    # Calibrate: the frames one whole issuance takes (sense, read, write, verify).
    calibration = Counting(card_emulator, tmp_path / "cal")
    calibration.workdir.mkdir()
    calibration.blank()
    batch = issuance.Batch.reserve(tmp_path / "cal.json", client, 1, BALANCE_URL)
    reader = open_reader(card_emulator.reader_path)
    try:
        assert _issuer(batch, client, reader, live_server, calibration).run(CARD_TIMEOUT_S)
        per_card = frames["end"] - frames["start"]
        # The last frames are PWD, PACK, CFG1, CFG0 and four verify reads: keep PWD and PACK,
        # lose CFG1 and CFG0.
        operator = Operator(card_emulator, tmp_path, tear_on={0: per_card - 6})
        tag = operator.blank()
        batch = issuance.Batch.reserve(tmp_path / "b.json", client, 1, BALANCE_URL)
        assert _issuer(batch, client, reader, live_server, operator).run(CARD_TIMEOUT_S)
    finally:
        reader.close()
    (entry,) = batch.entries
    assert operator.kinds()[-1] == "done"
    assert "retry" in operator.kinds()
    assert entry.attempts >= 2
    card = images.load(tag)
    assert card.page(card.chip.cfg0_page)[3] == layout.AUTH0


def test_a_refused_tag_in_between_does_not_give_the_failed_number_up(
    live_server, card_emulator, provision_login, tmp_path: Path
):
    """Tag A tears; the operator lays an already issued card on (refused), then A again: A's
    number is kept and completed on A, nothing is blocked."""
    client, _ = provision_login
    operator = Operator(card_emulator, tmp_path, tear_on={0: 25})
    torn = operator.blank()
    _, issued = server_card(live_server)
    images.save(issued, tmp_path / "issued.json")
    operator.tags += [tmp_path / "issued.json", torn]
    batch = issuance.Batch.reserve(tmp_path / "b.json", client, 1, BALANCE_URL)
    reader = open_reader(card_emulator.reader_path)
    try:
        # The first RETRY (the torn write) is noted but not followed: the next tag comes.
        def report(event: issuance.Event) -> None:
            if event.kind is issuance.EventKind.RETRY and "retry" not in operator.kinds():
                operator.events.append(event)
                return
            operator(event)

        assert _issuer(batch, client, reader, live_server, report).run(CARD_TIMEOUT_S)
    finally:
        reader.close()
    (entry,) = batch.entries
    assert entry.status is issuance.Status.DONE
    assert entry.uid == images.load(torn).uid.hex()
    assert "tag_refused" in operator.kinds()
    assert live_server.staff.card(entry.card_number)["blocked"] is False
