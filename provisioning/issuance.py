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
  not a genuine NXP NTAG215/216 is refused before the server hears of it.

The print file (CSV) has one row per card that was written *and verified*: card number,
check code, balance-page URL, QR payload. The check code comes from the server with the card
(an HMAC under a server secret, `hcard.server.check_code`): it is printed, never on the chip.
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

from hcard import cardnumber
from hcard.errors import Code, HCardError
from hcard.provisioning.staff import StaffClient
from hcard.terminal.card import CardKeys, CardSession, Reader
from hcard.terminal.config import write_atomic

CSV_COLUMNS = ("card_number", "check_code", "balance_url", "qr_payload")
DEFAULT_MAX_ATTEMPTS = 3
REMOVE_TIMEOUT_S = 30.0
SUPPORTED_CHIPS = ("NTAG215", "NTAG216")


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


@dataclass
class Entry:
    card_number: str
    status: Status = Status.RESERVED
    uid: str | None = None
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
    ) -> None:
        self.batch = batch
        self.client = client
        self.reader = reader
        self.keys = keys
        self.report = report
        self.max_attempts = max_attempts

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
            session.format_new_card(
                entry.card_number,
                signature,
                balance_url(self.batch.balance_page_url, entry.card_number),
                self.keys.write_secret,
            )
            view = session.read(self.keys)
            if view.card_number != entry.card_number or view.uid_hex != uid:
                raise HCardError(Code.CARD_UNREADABLE, reason="verification read other data")
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
        card already issued, a small or counterfeit chip is put aside untouched, a tag that
        did not answer cleanly is asked for again."""
        try:
            chip = session.chip
            if chip == "NTAG213":
                raise HCardError(Code.CARD_TOO_SMALL, chip=chip)
            if chip not in SUPPORTED_CHIPS:
                raise HCardError(Code.CARD_UNREADABLE, chip=chip)
            view = session.read(self.keys)
        except HCardError as error:
            if error.code is Code.CARD_NOT_ISSUED:
                return True  # genuine chip, no issuer record: blank
            if error.code is Code.CARD_UNREADABLE and entry.uid == uid:
                return True  # this entry's own torn write: write it again
            kind = (
                EventKind.UNREADABLE
                if error.code is Code.CARD_UNREADABLE
                else EventKind.TAG_REFUSED
            )
            self.report(Event(kind, entry, uid, error.code))
            return False
        if view.card_number == entry.card_number and entry.uid == uid:
            # This entry's own tag from an attempt that tore late (the NDEF complete, the
            # password maybe not) or a run that stopped before saving "done": write it again,
            # same number and signature, so the protection is surely complete.
            return True
        detail = cardnumber.pretty(view.card_number)
        self.report(Event(EventKind.TAG_REFUSED, None, uid, Code.CARD_ALREADY_EXISTS, detail))
        return False

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
