"""Issue a batch of cards: reserve numbers, write each tag, verify it, and make the print file.

The run is kept in a batch file (JSON, rewritten atomically after every step), so it can be
stopped at any moment (no card on the reader, Ctrl-C, a power cut) and resumed with the same
command: cards already done are not touched again.

How a card is never registered twice, whatever fails:
- One number is bound to at most one tag: the tag's UID is saved in the batch file *before*
  the server is asked to bind it (`POST /v1/cards` with UID + reserved number), and the server
  binds a UID only once (the same request again returns the same card and signature).
- A write that fails (card pulled away, torn write) is retried on the *same* tag: lay it on
  again. Its number stays bound to that tag; the retry rewrites it with the same signature.
- When a different tag comes instead, or the same tag failed `max_attempts` times, the
  number is given up: blocked on the server (so the half-written tag can never pay) and
  marked failed in the batch file and the report. The next number goes on the new tag.
- A tag that already is a card (of this batch or another) is recognised by reading it and
  is put aside, never rewritten; only the tag of the number being written is written again
  (the same bytes), which also completes a write torn after the NDEF message. A tag that is
  not a genuine NXP NTAG215/216 or NTAG 424 DNA is refused before the server hears of it.

Two card types, one batch. An NTAG215/216 is written by `TagSession.format_new_card`; an
NTAG 424 DNA by `Ntag424Session.issue`, which needs two more site secrets (SUN, admin) and
writes the SUN link `<balance page>/k?p=…&m=…` instead of `/c/<number>`. A 424 is blank
while its key 1 is still the factory's (`CARD_FACTORY_KEYS`): a new chip, or one torn half
way through issuance, which `issue` completes by running again (key 1 is changed last). A
424 that reads fine with our keys is a card and is put aside like an NTAG215. Without the
SUN and admin secrets a 424 stops the run before the server binds anything
(`SecretsMissingError`): nothing is written, the batch resumes with the secrets given.
Before either, GetVersion must show an NTAG 424 DNA (any ISO 14443-4 tag comes as a 424
session: a phone, a bank card or a DESFire is refused, `card_not_genuine`); and a blank 424
goes on only when `issue` can complete it, every key the factory's or ours
(`Ntag424Session.require_issuable`): one of another system that changed key 0 but not key 1
is refused (`card_auth_failed`) instead of being bound and failing every attempt.

The print file (CSV) has one row per card that was written *and verified*: card number,
check code, balance-page URL, QR payload. The check code comes from the server with the card
(an HMAC under a server secret, `hcard.server.check_code`): it is printed, never on the chip.
The rows are the same for both card types: a 424's printed `/c/<number>` and check code still
open its balance page from paper, where its chip's link needs no code.
"""

from __future__ import annotations

import csv
import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from hcard import cardnumber, ntag424
from hcard.errors import Code, HCardError
from hcard.ntag424 import KeyNo, MasterKind
from hcard.provisioning.staff import StaffClient
from hcard.terminal.card import CardKeys, CardSession, CardView, Reader, layout, layout424
from hcard.terminal.card.ntag424_session import CHIP_NAME as NTAG424_CHIP
from hcard.terminal.card.ntag424_session import Ntag424Secrets, Ntag424Session
from hcard.terminal.config import write_atomic

CSV_COLUMNS = ("card_number", "check_code", "balance_url", "qr_payload")
DEFAULT_MAX_ATTEMPTS = 3
REMOVE_TIMEOUT_S = 30.0
SUPPORTED_CHIPS = ("NTAG215", "NTAG216", NTAG424_CHIP)
# The longest balance-page base (`https://host`) whose SUN link still fits an NTAG 424 DNA's
# NDEF file beside the issuer record (for the message; `check_sun_base_url` is the check).
SUN_BASE_MAX_CHARS = 61


class Status(StrEnum):
    RESERVED = "reserved"  # number reserved, not yet on a verified card
    DONE = "done"  # written and verified
    FAILED = "failed"  # given up and blocked on the server


def balance_url(base_url: str, card_number: str) -> str:
    """The URL written on the card and printed: `<balance page>/c/<card number>`."""
    return f"{base_url.rstrip('/')}/c/{card_number}"


def qr_payload(base_url: str, card_number: str, code: str) -> str:
    """What the printed QR code holds: the balance page, already unlocked by the check code."""
    return f"{balance_url(base_url, card_number)}?k={code}"


def check_sun_base_url(base_url: str) -> None:
    """ValueError unless an NTAG 424 DNA can carry the SUN link of `base_url` (https, no
    query, short enough for the NDEF file next to the issuer record): checked before a
    batch starts, so no number is bound to a 424 that then cannot be written."""
    probe = layout.IssuerRecord(
        cardnumber.from_serial(1), bytes(ntag424.UID_BYTES), bytes(layout.SIGNATURE_BYTES)
    )
    layout424.ndef_file(base_url.rstrip("/"), probe)


class SecretsMissingError(Exception):
    """An NTAG 424 DNA came, and the run has no SUN and admin secrets to issue it: the run
    stops before anything is written or bound (the batch resumes with them given)."""


@dataclass
class Entry:
    card_number: str
    status: Status = Status.RESERVED
    uid: str | None = None
    chip: str | None = None  # the chip of `uid` (NTAG215, NTAG216, NTAG424DNA)
    attempts: int = 0
    check_code: str | None = None
    error: str | None = None


@dataclass
class Batch:
    """The state of one issuing run, saved after every step."""

    path: Path
    server_url: str
    balance_page_url: str
    entries: list[Entry] = field(default_factory=list)

    def save(self) -> None:
        data = {
            "server_url": self.server_url,
            "balance_page_url": self.balance_page_url,
            "entries": [asdict(entry) for entry in self.entries],
        }
        write_atomic(self.path, json.dumps(data, indent=1).encode())

    @classmethod
    def load(cls, path: Path) -> Batch:
        data = json.loads(path.read_text("utf-8"))
        entries = [Entry(**{**item, "status": Status(item["status"])}) for item in data["entries"]]
        for entry in entries:
            if not cardnumber.is_valid(entry.card_number):
                raise ValueError(f"{path}: bad card number {entry.card_number!r}")
        return cls(path, data["server_url"], data["balance_page_url"], entries)

    @classmethod
    def reserve(cls, path: Path, client: StaffClient, count: int, balance_page_url: str) -> Batch:
        """A new batch: `count` numbers reserved on the server, saved before anything else."""
        numbers = client.reserve_cards(count)
        batch = cls(path, client.server_url, balance_page_url, [Entry(n) for n in numbers])
        batch.save()
        return batch

    def pending(self) -> list[Entry]:
        return [e for e in self.entries if e.status is Status.RESERVED]

    def owner_of(self, uid: str) -> Entry | None:
        return next((e for e in self.entries if e.uid == uid), None)

    def write_csv(self, path: Path) -> int:
        """The print file: one row per verified card, in batch order. Returns the row count."""
        rows = [e for e in self.entries if e.status is Status.DONE]
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for entry in rows:
                assert entry.check_code is not None
                writer.writerow(
                    [
                        cardnumber.pretty(entry.card_number),
                        entry.check_code,
                        balance_url(self.balance_page_url, entry.card_number),
                        qr_payload(self.balance_page_url, entry.card_number, entry.check_code),
                    ]
                )
        os.replace(tmp, path)
        return len(rows)


class EventKind(StrEnum):
    PLACE = "place"  # lay the next card on the reader (for `entry`)
    DONE = "done"  # `entry` written and verified
    RETRY = "retry"  # writing `entry` failed; lay the same card on again
    GIVEN_UP = "given_up"  # `entry` failed for good and was blocked
    TAG_REFUSED = "tag_refused"  # this tag is put aside (not blank, not genuine, ...)
    UNREADABLE = "unreadable"  # the tag did not answer cleanly: lay it on again
    SECRETS_MISSING = "secrets_missing"  # an NTAG 424 DNA, no SUN/admin secret: run stops
    REMOVE = "remove"  # take the card off the reader


@dataclass(frozen=True)
class Event:
    kind: EventKind
    entry: Entry | None = None
    uid: str | None = None
    code: Code | None = None
    detail: str = ""


class Issuer:
    """Writes the pending cards of a batch, one tag after another."""

    def __init__(
        self,
        batch: Batch,
        client: StaffClient,
        reader: Reader,
        keys: CardKeys,
        report: Callable[[Event], None],
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        secrets_424: Ntag424Secrets | None = None,
    ) -> None:
        """`keys`: what the verification read checks with (a till's checks; its
        `originality_424_key_hex` for 424s). `secrets_424`: the three site secrets that
        issue an NTAG 424 DNA (its write secret must be `keys.write_secret`); None: a 424
        on the reader stops the run (`SecretsMissingError`)."""
        if secrets_424 is not None:
            if secrets_424.write_secret != keys.write_secret:
                raise ValueError("secrets_424 and keys have different card write secrets")
            check_sun_base_url(batch.balance_page_url)
        self.batch = batch
        self.client = client
        self.reader = reader
        self.keys = keys
        self.report = report
        self.max_attempts = max_attempts
        self.secrets_424 = secrets_424

    def run(self, card_timeout_s: float, cancel: threading.Event | None = None) -> bool:
        """Issue until every number is done or failed (True), or no card came within
        `card_timeout_s` / `cancel` was set (False: resume later with the same batch)."""
        while pending := self.batch.pending():
            entry = pending[0]
            self.report(Event(EventKind.PLACE, entry))
            session = self.reader.wait_for_card(card_timeout_s, cancel)
            if session is None:
                return False
            try:
                self._handle(session, entry)
            finally:
                self.report(Event(EventKind.REMOVE))
                session.wait_removed(REMOVE_TIMEOUT_S)
                session.close()
        return True

    # --- one tag -------------------------------------------------------------------------

    def _handle(self, session: CardSession, entry: Entry) -> None:
        uid = session.uid.hex()
        owner = self.batch.owner_of(uid)
        if owner is not None and owner is not entry:
            detail = f"{cardnumber.pretty(owner.card_number)} ({owner.status.value})"
            self.report(Event(EventKind.TAG_REFUSED, owner, uid, Code.CARD_ALREADY_EXISTS, detail))
            return
        if not self._blank_or_ours(session, entry, uid):
            return
        if entry.uid is not None and entry.uid != uid:
            # A usable new tag instead of the one that failed for `entry`: that one was put
            # aside, so its number is given up; the new tag takes the next number.
            self._give_up(entry, "another card was laid on instead")
            pending = self.batch.pending()
            if not pending:
                return
            entry = pending[0]
        entry.uid = uid
        entry.chip = session.chip
        entry.attempts += 1
        self.batch.save()  # the binding is on disk before the server makes it
        try:
            answer = self.client.issue_card(uid, entry.card_number)
        except HCardError as error:
            if error.code is not Code.CARD_ALREADY_EXISTS:
                raise
            self._already_bound(entry, uid, error)
            return
        signature = bytes.fromhex(str(answer["issuer_signature"]))
        code = str(answer["check_code"])
        try:
            if isinstance(session, Ntag424Session):
                assert self.secrets_424 is not None  # checked in _blank_or_ours
                sun_base_url = self.batch.balance_page_url.rstrip("/")
                session.issue(entry.card_number, signature, sun_base_url, self.secrets_424)
            else:
                session.format_new_card(
                    entry.card_number,
                    signature,
                    balance_url(self.batch.balance_page_url, entry.card_number),
                    self.keys.write_secret,
                )
            view = session.read(self.keys)
            if view.card_number != entry.card_number or view.uid_hex != uid:
                raise HCardError(Code.CARD_UNREADABLE, reason="verification read other data")
            if isinstance(session, Ntag424Session):
                self._check_sun_link(view)
        except HCardError as error:
            entry.error = error.code.value
            if entry.attempts >= self.max_attempts:
                self._give_up(entry, f"{entry.attempts} attempts")
            else:
                self.batch.save()
                self.report(Event(EventKind.RETRY, entry, uid, error.code, str(entry.attempts)))
            return
        self._done(entry, code)

    def _blank_or_ours(self, session: CardSession, entry: Entry, uid: str) -> bool:
        """Read the tag first: a genuine, blank tag (or `entry`'s own tag again) goes on; a
        card already issued, a small or counterfeit chip, a tag that is no NTAG 424 DNA
        although it speaks ISO 14443-4, a 424 of another system is put aside untouched; a
        tag that did not answer cleanly is asked for again."""
        try:
            chip = session.chip
            if chip == "NTAG213":
                raise HCardError(Code.CARD_TOO_SMALL, chip=chip)
            if chip not in SUPPORTED_CHIPS:
                raise HCardError(Code.CARD_UNREADABLE, chip=chip)
            if isinstance(session, Ntag424Session):
                # Any ISO 14443-4 tag comes as a 424 session: a phone or a bank card is
                # refused here, and never stops the run for the 424 secrets.
                session.require_ntag424()
                if self.secrets_424 is None:
                    # Before the read, the binding and any write: the run stops here.
                    self.report(Event(EventKind.SECRETS_MISSING, entry, uid))
                    raise SecretsMissingError(uid)
            view = session.read(self.keys)
        except HCardError as error:
            if error.code is Code.CARD_NOT_ISSUED:
                return True  # genuine chip, no issuer record: blank
            if error.code is Code.CARD_FACTORY_KEYS and isinstance(session, Ntag424Session):
                # Key 1 is the factory's: a new 424, one torn before its issuance changed
                # key 1 (the last step), or another system's that changed only other keys.
                # Genuine: the read checked Read_Sig first.
                return self._issuable_424(session, entry, uid)
            if error.code is Code.CARD_UNREADABLE and entry.uid == uid:
                return True  # this entry's own torn write: write it again
            self._refused(entry, uid, error.code)
            return False
        if view.card_number == entry.card_number and entry.uid == uid:
            # This entry's own tag from an attempt that tore late (the NDEF complete, the
            # password maybe not) or a run that stopped before saving "done": write it again,
            # same number and signature, so the protection is surely complete.
            return True
        detail = cardnumber.pretty(view.card_number)
        self.report(Event(EventKind.TAG_REFUSED, None, uid, Code.CARD_ALREADY_EXISTS, detail))
        return False

    def _issuable_424(self, session: Ntag424Session, entry: Entry, uid: str) -> bool:
        """A 424 whose key 1 is the factory's goes on only when `issue` can complete it
        (every key the factory's or ours, `require_issuable`): another system's 424 with
        key 0 changed would otherwise be bound, fail every attempt and lose its number."""
        assert self.secrets_424 is not None  # checked before the read
        try:
            session.require_issuable(self.secrets_424)
        except HCardError as error:
            self._refused(entry, uid, error.code)
            return False
        return True

    def _refused(self, entry: Entry, uid: str, code: Code) -> None:
        """A tag put aside (or, when it did not answer cleanly, asked for again)."""
        kind = EventKind.UNREADABLE if code is Code.CARD_UNREADABLE else EventKind.TAG_REFUSED
        self.report(Event(kind, entry, uid, code))

    def _check_sun_link(self, view: CardView) -> None:
        """The link the 424 just mirrored verifies under the SUN secret and names this UID:
        the balance page will accept the card's taps (keys 2 and 3 and the SUN offsets are
        right). SUN_INVALID (a retry) when it does not."""
        assert self.secrets_424 is not None
        parts = urlsplit(view.url or "")
        query = parse_qs(parts.query)
        base = self.batch.balance_page_url.rstrip("/")
        picc, mac = query.get("p", [""])[0], query.get("m", [""])[0]
        if f"{parts.scheme}://{parts.netloc}{parts.path}" != base + layout424.SUN_PATH:
            raise HCardError(Code.SUN_INVALID, reason="link not on the balance page")
        sun_master = ntag424.master_key(self.secrets_424.sun_secret, MasterKind.SUN)
        tap = ntag424.verify_sun(
            picc,
            mac,
            ntag424.site_key(sun_master, KeyNo.SUN_META_READ),
            lambda uid: ntag424.card_key(sun_master, uid, KeyNo.SUN_FILE_READ),
        )
        if tap.uid.hex() != view.uid_hex:
            raise HCardError(Code.SUN_INVALID, reason="link of another UID")

    def _already_bound(self, entry: Entry, uid: str, error: HCardError) -> None:
        bound_number = error.details.get("card_number")
        if bound_number == entry.card_number:
            # The number is bound to another tag (a run whose batch file was lost).
            entry.uid = None
            self._give_up(entry, "number bound to another tag")
            return
        # This tag is already a card on the server (another batch): put it aside.
        entry.uid = None
        entry.attempts -= 1
        self.batch.save()
        self.report(
            Event(EventKind.TAG_REFUSED, None, uid, Code.CARD_ALREADY_EXISTS, str(bound_number))
        )

    def _done(self, entry: Entry, code: str) -> None:
        entry.status = Status.DONE
        entry.check_code = code
        entry.error = None
        self.batch.save()
        self.report(Event(EventKind.DONE, entry, entry.uid))

    def _give_up(self, entry: Entry, why: str) -> None:
        if entry.uid is not None:
            self.client.set_blocked(entry.card_number, True)
        entry.status = Status.FAILED
        entry.error = entry.error or why
        self.batch.save()
        self.report(Event(EventKind.GIVEN_UP, entry, entry.uid, None, why))
