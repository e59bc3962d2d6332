"""Issuing NTAG 424 DNA cards against the real server: the card is the chip model
(`Ntag424(state).handle`) behind a reader of this file, so a tear can fall after every single
command; the same runs through the emulator and nfcpy's udp driver are in
test_batch_end_to_end.py.

What is pinned: an issued 424 passes a till's checks and its SUN link verifies under the SUN
secret; without the SUN and admin secrets a 424 stops the run before the server binds
anything; an issuance torn after any command is completed on the same card; a 424 that
already is a card (ours, or another system's), one of another system that left key 1 at the
factory's, and an ISO 14443-4 tag that is no 424 are put aside unregistered; the CLI's
checks of the secrets and of the balance-page base."""

from __future__ import annotations

import copy
import dataclasses
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fixtures.card import TEST_SUN_SECRET, TEST_WRITE_SECRET
from fixtures.provisioning import BALANCE_URL, card_keys

from hcard import cardnumber, keys, ntag424
from hcard.errors import Code
from hcard.ntag424 import KeyNo, MasterKind
from hcard.provisioning import cli, issuance
from hcard.terminal.card import CardKeys, TagIOError
from hcard.terminal.card.ntag424_cards import issued_state
from hcard.terminal.card.ntag424_model import (
    TEST_ORIGINALITY_PUBLIC_KEY_HEX,
    CardState,
    Ntag424,
    factory_state,
)
from hcard.terminal.card.ntag424_session import Ntag424Secrets, Ntag424Session

TEST_ADMIN_SECRET = b"hcard-test-card-admin-secret-01"
SECRETS = Ntag424Secrets(TEST_WRITE_SECRET, TEST_SUN_SECRET, TEST_ADMIN_SECRET)
# GetVersion (3); select, ReadData 02, Read_Sig, key 1 refused (2), the zero key accepted
# (2): blank; `require_issuable`: select, five key versions, five authentications (2 each)
READ_BLANK_COMMANDS = 3 + 7 + 16
ISSUE_COMMANDS = 22  # on a new chip (docs/card-format.md, "Issuance")
READ_COMMANDS = 7  # a till's tap: the verification read


def keys_424(server) -> CardKeys:
    """A till's checks for cards of `server`, trusting the emulated 424s' originality key."""
    return dataclasses.replace(
        card_keys(server), originality_424_key_hex=TEST_ORIGINALITY_PUBLIC_KEY_HEX
    )


class IsoDepTag:
    """An ISO 14443-4 tag that is no NTAG 424 DNA, which a reader hands on as a 424 session
    all the same: a bank card or a phone (`hardware` None: CLA 90 is not its language) or
    a chip that answers GetVersion as another one (a MIFARE DESFire EV3: type 01)."""

    DESFIRE_EV3 = bytes.fromhex("04010133001A05")

    def __init__(self, hardware: bytes | None = None) -> None:
        self.uid = factory_state().uid
        self.hardware = hardware
        self._frames: list[bytes] = []

    def handle(self, apdu: bytes) -> bytes:
        if self.hardware is not None and apdu[:2] == bytes.fromhex("9060"):
            self._frames = [self.hardware, self.uid + bytes(7)]
            return self.hardware + bytes.fromhex("91AF")
        if self._frames and apdu[:2] == bytes.fromhex("90AF"):
            frame = self._frames.pop(0)
            return frame + bytes.fromhex("91AF" if self._frames else "9100")
        return bytes.fromhex("6D00")


class ChipReader:
    """A `Reader` whose card is a chip model in the field (or an `IsoDepTag`), or none.
    `tear_after` makes the card leave after that many more commands; with `commit` the
    command it leaves during still takes effect on the chip, its answer lost."""

    path = "chip-model"
    connected = True

    def __init__(self) -> None:
        self.card: CardState | IsoDepTag | None = None
        self.tear_after: int | None = None
        self.commit = False
        self.commands = 0  # since the card was laid on

    def lay_on(self, card: CardState | IsoDepTag, tear_after: int | None = None) -> None:
        self.card, self.tear_after, self.commands = card, tear_after, 0

    def wait_for_card(
        self, timeout_s: float, cancel: threading.Event | None = None
    ) -> Ntag424Session | None:
        if self.card is None:
            return None
        card = self.card
        chip = Ntag424(card) if isinstance(card, CardState) else card  # a new power-up

        def transceive(apdu: bytes) -> bytes:
            if self.card is not card:
                raise TagIOError("card gone")
            self.commands += 1
            if self.tear_after is not None and self.commands > self.tear_after:
                self.card = None
                if self.commit:
                    chip.handle(apdu)
                raise TagIOError("card left the field")
            return chip.handle(apdu)

        return Ntag424Session(card.uid, transceive, lambda: self.card is card)

    def close(self) -> None:
        pass


class ChipOperator:
    """Lays the chip cards on in turn (the same one again after a RETRY), takes them off on
    REMOVE; `tear_on` tears the first tap of a card after that many commands."""

    def __init__(self, reader: ChipReader, cards: list[CardState], tear_on=None) -> None:
        self.reader, self.cards = reader, cards
        self.tear_on: dict[int, int] = dict(tear_on or {})
        self.events: list[issuance.Event] = []
        self._next, self._current, self._retry = 0, -1, False

    def __call__(self, event: issuance.Event) -> None:
        self.events.append(event)
        if event.kind in (issuance.EventKind.RETRY, issuance.EventKind.UNREADABLE):
            self._retry = True
        elif event.kind is issuance.EventKind.REMOVE:
            self.reader.card = None
        elif event.kind is issuance.EventKind.PLACE:
            if not self._retry:
                if self._next >= len(self.cards):
                    return
                self._current, self._next = self._next, self._next + 1
            self._retry = False
            self.reader.lay_on(self.cards[self._current], self.tear_on.pop(self._current, None))

    def kinds(self) -> list[str]:
        noise = (issuance.EventKind.PLACE, issuance.EventKind.REMOVE)
        return [e.kind.value for e in self.events if e.kind not in noise]


def _run(server, client, cards, count=None, secrets=SECRETS, tear_on=None, commit=False, **kw):
    reader = ChipReader()
    reader.commit = commit
    operator = ChipOperator(reader, cards, tear_on)
    batch = issuance.Batch.reserve(
        Path(kw.pop("path")), client, count or len(cards), kw.pop("base", BALANCE_URL)
    )
    issuer = issuance.Issuer(
        batch, client, reader, keys_424(server), operator, secrets_424=secrets, **kw
    )
    return batch, operator, issuer


def _sun_tap(url: str) -> ntag424.PiccData:
    """The tap a card's link tells of, checked as the server's /k checks it."""
    master = ntag424.master_key(TEST_SUN_SECRET, MasterKind.SUN)
    query = parse_qs(urlsplit(url).query)
    return ntag424.verify_sun(
        query["p"][0],
        query["m"][0],
        ntag424.site_key(master, KeyNo.SUN_META_READ),
        lambda uid: ntag424.card_key(master, uid, KeyNo.SUN_FILE_READ),
    )


def _read(server, card: CardState):
    return Ntag424Session(card.uid, Ntag424(card).handle, lambda: True).read(keys_424(server))


def test_an_issued_424_reads_at_a_till_and_its_link_verifies(
    live_server, provision_login, tmp_path: Path
):
    client, _ = provision_login
    card = factory_state()
    batch, operator, issuer = _run(live_server, client, [card], path=tmp_path / "b.json")
    assert issuer.run(5.0)
    (entry,) = batch.entries
    assert operator.kinds() == ["done"]
    assert (entry.status, entry.uid, entry.chip, entry.attempts) == (
        issuance.Status.DONE,
        card.uid.hex(),
        "NTAG424DNA",
        1,
    )
    assert live_server.staff.card(entry.card_number)["uid"] == card.uid.hex()
    # A till's tap: every check passes, no purse yet; the link opens /k on the balance page.
    view = _read(live_server, card)
    assert view.card_number == entry.card_number
    assert view.purse is None
    assert view.url is not None
    assert view.url.startswith(f"{BALANCE_URL}/k?p=")
    tap = _sun_tap(view.url)
    assert (tap.uid, tap.read_counter) == (card.uid, view.tap_counter)
    # No key is left at the factory's: every key has our version.
    assert all(version == 1 for version in card.key_versions)
    # The print file: the same row as an NTAG215's (number, code, /c/ page, unlocked QR).
    assert batch.write_csv(tmp_path / "print.csv") == 1
    row = (tmp_path / "print.csv").read_text().splitlines()[1]
    assert f"{BALANCE_URL}/c/{entry.card_number}?k={entry.check_code}" in row


def test_without_the_424_secrets_the_run_stops_before_the_server_binds(
    live_server, provision_login, tmp_path: Path
):
    client, _ = provision_login
    card = factory_state()
    blank = copy.deepcopy(card)
    batch, operator, issuer = _run(
        live_server, client, [card], path=tmp_path / "b.json", secrets=None
    )
    with pytest.raises(issuance.SecretsMissingError):
        issuer.run(5.0)
    assert operator.kinds() == ["secrets_missing"]
    (entry,) = issuance.Batch.load(batch.path).entries
    assert (entry.status, entry.uid, entry.attempts) == (issuance.Status.RESERVED, None, 0)
    assert live_server.staff.card(entry.card_number)["uid"] is None  # reserved, not bound
    assert card == blank  # not one byte written
    # Resumed with the secrets: the same card becomes the same number.
    resumed = issuance.Batch.load(batch.path)
    reader = ChipReader()
    operator = ChipOperator(reader, [card])
    issuance.Issuer(
        resumed, client, reader, keys_424(live_server), operator, secrets_424=SECRETS
    ).run(5.0)
    assert resumed.entries[0].status is issuance.Status.DONE
    assert live_server.staff.card(entry.card_number)["uid"] == card.uid.hex()


def _calibrate(live_server, client, tmp_path: Path) -> int:
    """The commands one whole 424 issuance takes (read, issue, verify)."""
    reader = ChipReader()
    card = factory_state()
    batch = issuance.Batch.reserve(tmp_path / "cal.json", client, 1, BALANCE_URL)
    issuer = issuance.Issuer(
        batch, client, reader, keys_424(live_server), ChipOperator(reader, [card]), 3, SECRETS
    )
    assert issuer.run(5.0)
    return reader.commands


@pytest.mark.parametrize("commit", [False, True], ids=["lost", "committed"])
def test_a_424_torn_after_any_command_is_completed_on_the_same_card(
    live_server, provision_login, tmp_path: Path, commit: bool
):
    """A tear after each command of the first tap in turn (the command itself lost, or done
    with its answer lost): the operator lays the same card on again, and it ends issued with
    its number, verified, never blocked."""
    client, _ = provision_login
    total = _calibrate(live_server, client, tmp_path)
    assert total == READ_BLANK_COMMANDS + ISSUE_COMMANDS + READ_COMMANDS
    for tear in range(total):
        card = factory_state()
        batch, operator, issuer = _run(
            live_server,
            client,
            [card],
            path=tmp_path / f"b{tear}.json",
            tear_on={0: tear},
            commit=commit,
            max_attempts=5,
        )
        assert issuer.run(5.0), tear
        (entry,) = batch.entries
        # Torn in the first read: laid on again, nothing bound yet; later: one retry.
        first_read = tear < READ_BLANK_COMMANDS
        expected = ["unreadable", "done"] if first_read else ["retry", "done"]
        assert (operator.kinds(), entry.attempts) == (expected, 1 if first_read else 2), tear
        assert entry.status is issuance.Status.DONE, (tear, operator.kinds())
        assert entry.uid == card.uid.hex()
        assert live_server.staff.card(entry.card_number)["blocked"] is False
        view = _read(live_server, card)
        assert view.card_number == entry.card_number
        assert _sun_tap(view.url or "").uid == card.uid


def test_424s_that_already_are_cards_are_put_aside_unregistered(
    live_server, provision_login, tmp_path: Path
):
    """Ours (issued by this server) and another town's (our key 1 fails, not the factory's):
    both refused before the server hears of them; then a blank 424 takes the number."""
    client, _ = provision_login
    issuer_key = keys.load_private(live_server.data_dir / "issuer.key")
    ours_uid = factory_state().uid
    number, _ = live_server.staff.issue_card(ours_uid.hex())
    ours = issued_state(factory_state(ours_uid), number, issuer_key, BALANCE_URL, SECRETS)
    other_site = Ntag424Secrets(b"another-town-write-secret-00001", b"s" * 16, b"a" * 16)
    foreign = issued_state(
        factory_state(), cardnumber.from_serial(7), keys.generate(), BALANCE_URL, other_site
    )
    blank = factory_state()
    batch, operator, issuer = _run(
        live_server, client, [ours, foreign, blank], count=1, path=tmp_path / "b.json"
    )
    assert issuer.run(5.0)
    refused = [e for e in operator.events if e.kind is issuance.EventKind.TAG_REFUSED]
    assert [(e.uid, e.code) for e in refused] == [
        (ours.uid.hex(), Code.CARD_ALREADY_EXISTS),
        (foreign.uid.hex(), Code.CARD_AUTH_FAILED),
    ]
    assert refused[0].detail == cardnumber.pretty(number)
    (entry,) = batch.entries
    assert (entry.status, entry.uid) == (issuance.Status.DONE, blank.uid.hex())
    assert live_server.staff.card(number)["uid"] == ours.uid.hex()
    assert batch.owner_of(foreign.uid.hex()) is None


def _changed_by_another_system(key_number: KeyNo, version: int) -> CardState:
    """A new chip after another system changed one key (with ChangeKey in a session with
    the factory key 0) to a key we do not have, at `version`; key 1 left at the factory's."""
    state = factory_state()
    chip = Ntag424(state)
    ntag424.select_application(chip.handle)
    master = ntag424.authenticate(chip.handle, KeyNo.APP_MASTER, ntag424.FACTORY_KEY)
    ntag424.change_key(chip.handle, master, key_number, bytes.fromhex("A5" * 16), version)
    return state


def test_a_424_of_another_system_with_key_1_at_the_factorys_is_refused_unbound(
    live_server, provision_login, tmp_path: Path
):
    """Key 0 changed (version 10h, or the factory's version 00 kept), or key 3 changed with
    key 0 left alone: a till's checks take each for blank (key 1 is the factory's), but
    `issue` could not complete it. Refused before the server hears of it, no number given
    up; the blank 424 after them takes the number."""
    client, _ = provision_login
    foreign = [
        _changed_by_another_system(KeyNo.APP_MASTER, 0x10),
        _changed_by_another_system(KeyNo.APP_MASTER, 0x00),
        _changed_by_another_system(KeyNo.SUN_FILE_READ, 0x00),
    ]
    untouched = copy.deepcopy(foreign)
    blank = factory_state()
    batch, operator, issuer = _run(
        live_server, client, [*foreign, blank], count=1, path=tmp_path / "b.json"
    )
    assert issuer.run(5.0)
    assert operator.kinds() == ["tag_refused"] * 3 + ["done"]
    refused = [e for e in operator.events if e.kind is issuance.EventKind.TAG_REFUSED]
    assert [(e.uid, e.code) for e in refused] == [
        (card.uid.hex(), Code.CARD_AUTH_FAILED) for card in foreign
    ]
    assert foreign == untouched  # not one byte written
    (entry,) = batch.entries
    assert (entry.status, entry.uid, entry.attempts) == (issuance.Status.DONE, blank.uid.hex(), 1)
    for card in foreign:
        assert batch.owner_of(card.uid.hex()) is None
    assert live_server.staff.card(entry.card_number)["blocked"] is False


@pytest.mark.parametrize("secrets", [SECRETS, None], ids=["with-424-secrets", "without"])
def test_an_iso_dep_tag_that_is_no_424_is_refused_unbound(
    live_server, provision_login, tmp_path: Path, secrets
):
    """A bank card, a phone or a DESFire comes as a 424 session: GetVersion tells it apart
    before the server hears of it, and without the 424 secrets it does not stop the run
    (only the real 424 after it does)."""
    client, _ = provision_login
    others = [IsoDepTag(), IsoDepTag(IsoDepTag.DESFIRE_EV3)]
    blank = factory_state()
    batch, operator, issuer = _run(
        live_server, client, [*others, blank], count=1, path=tmp_path / "b.json", secrets=secrets
    )
    if secrets is None:
        with pytest.raises(issuance.SecretsMissingError):
            issuer.run(5.0)
    else:
        assert issuer.run(5.0)
    last = "done" if secrets else "secrets_missing"
    assert operator.kinds() == ["tag_refused", "tag_refused", last]
    refused = [e for e in operator.events if e.kind is issuance.EventKind.TAG_REFUSED]
    assert [(e.uid, e.code) for e in refused] == [
        (tag.uid.hex(), Code.CARD_NOT_GENUINE) for tag in others
    ]
    (entry,) = batch.entries
    expected_uid = blank.uid.hex() if secrets else None
    assert (entry.uid, live_server.staff.card(entry.card_number)["uid"]) == (
        expected_uid,
        expected_uid,
    )


def test_a_counterfeit_424_is_refused_before_the_server_hears_of_it(
    live_server, provision_login, tmp_path: Path
):
    client, _ = provision_login
    fake = factory_state()
    fake.signature = bytes(len(fake.signature))
    batch, operator, issuer = _run(live_server, client, [fake], path=tmp_path / "b.json")
    assert not issuer.run(5.0)  # no second card came
    assert operator.kinds() == ["tag_refused"]
    assert operator.events[1].code is Code.CARD_NOT_GENUINE
    (entry,) = batch.entries
    assert entry.uid is None
    assert live_server.staff.card(entry.card_number)["uid"] is None


def test_the_sun_base_must_fit_the_card():
    longest = "https://" + "k" * (issuance.SUN_BASE_MAX_CHARS - len("https://"))
    issuance.check_sun_base_url(longest)
    issuance.check_sun_base_url(longest + "/")  # a trailing slash is not part of the link
    with pytest.raises(ValueError, match="does not fit"):
        issuance.check_sun_base_url(longest + "k")
    for bad in ("http://karte.hattingen.test", BALANCE_URL + "/?x=1"):
        with pytest.raises(ValueError, match="https://<host>"):
            issuance.check_sun_base_url(bad)


# --- the command line ----------------------------------------------------------------------


def _secret_file(path: Path, secret: bytes) -> str:
    path.write_text(secret.hex() + "\n")
    path.chmod(0o600)
    return str(path)


def _issue_argv(login_file: Path, tmp_path: Path, *extra: str) -> list[str]:
    write = _secret_file(tmp_path / "write.hex", TEST_WRITE_SECRET)
    return [
        "--login-file",
        str(login_file),
        "cards",
        "issue",
        "--count",
        "1",
        "--batch",
        str(tmp_path / "b.json"),
        "--csv",
        str(tmp_path / "b.csv"),
        "--reader",
        "udp:127.0.0.1:9",
        "--write-secret-file",
        write,
        "--card-timeout",
        "0.1",
        *extra,
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("sun",), "brauchen beides, --sun-secret-file und --admin-secret-file"),
        (("admin",), "brauchen beides, --sun-secret-file und --admin-secret-file"),
        (("sun=write", "admin"), "jedes Geheimnis des Systems muss ein eigenes sein"),
        (("sun", "admin=sun"), "jedes Geheimnis des Systems muss ein eigenes sein"),
        (("sun=short", "admin"), "SUN-Geheimnis ungültig"),
        (("sun", "admin=missing"), "Admin-Geheimnis nicht lesbar"),
        (("sun", "admin", "http"), "kann nicht der Link einer NTAG-424-DNA-Karte sein"),
    ],
)
def test_the_424_secrets_and_base_are_checked_before_any_number_is_reserved(
    live_server, provision_login, tmp_path: Path, capsys, extra, message
):
    _, login_file = provision_login
    files = {
        "sun": _secret_file(tmp_path / "sun.hex", TEST_SUN_SECRET),
        "admin": _secret_file(tmp_path / "admin.hex", TEST_ADMIN_SECRET),
        "write": str(tmp_path / "write.hex"),
        "short": _secret_file(tmp_path / "short.hex", b"x" * 8),
        "missing": str(tmp_path / "none.hex"),
    }
    argv = _issue_argv(login_file, tmp_path)
    for item in extra:
        if item == "http":
            argv += ["--balance-url", "http://karte.hattingen.test"]
            continue
        option, _, source = item.partition("=")
        argv += [f"--{option}-secret-file", files[source or option]]
    (before,) = live_server.staff.reserve_cards(1)
    assert cli.main(argv) == cli.EXIT_INPUT
    out = capsys.readouterr().out
    assert message in out
    assert TEST_SUN_SECRET.hex() not in out
    assert TEST_ADMIN_SECRET.hex() not in out
    assert not (tmp_path / "b.json").exists()
    (after,) = live_server.staff.reserve_cards(1)  # no number was reserved in between
    assert int(after[:-1]) == int(before[:-1]) + 1


@pytest.mark.parametrize("kind", ["sun", "admin"])
def test_new_secret_makes_the_424_secrets_once_0600(tmp_path: Path, capsys, kind: str):
    path = tmp_path / f"{kind}.hex"
    argv = ["--login-file", str(tmp_path / "l.json"), "cards", "new-secret", "--out", str(path)]
    assert cli.main([*argv, "--kind", kind]) == 0
    assert path.stat().st_mode & 0o777 == 0o600
    secret = path.read_text()
    assert len(bytes.fromhex(secret)) == 16
    out = capsys.readouterr().out
    assert {"sun": "SUN-Geheimnis", "admin": "Admin-Geheimnis"}[kind] in out
    assert secret.strip() not in out
    assert cli.main([*argv, "--kind", kind]) == cli.EXIT_INPUT
    assert path.read_text() == secret
