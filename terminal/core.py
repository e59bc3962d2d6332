"""`TerminalTill`: the terminal core behind the `Till` facade (`hcard.terminal.till`).

It wires the parts together for one enrolled state directory: the reader
(`hcard.terminal.card`), the verified journal, the snapshot, the signed HTTP
client, the payment logic and the sync agent. The CLI and the Kivy app both
use it and hold no payment logic of their own.

Start-up order matters: the journal is verified before anything else (a
broken chain stops the terminal with the first bad seq rather than appending
to it), then payments left unfinished by a crash are settled (`recover`),
then the sync agent starts.

One card operation at a time: `pay` and `balance` hold a lock for the tap, so
a second front-end call waits rather than interleaving two card sessions.

The reader is opened at start and looked at every `reader_check_interval_s`
by a small thread, so `Status.reader_connected` is right before the first
tap, and a reader unplugged between payments shows within seconds, not at the
next payment. The look takes the same lock as a tap, only when no card
operation runs, and a tap cuts it short: nfcpy's ContactlessFrontend is never
used by two threads, and a tap never waits for more than one sense cycle of a
look. What a look can honestly tell depends on the driver:
- `usb:`/`tty:`: a device that cannot be opened, or one that fails a sense
  cycle (an unplugged USB reader), shows as not connected; it is reopened by
  the next looks (the reader's own backoff).
- `udp:` (the card emulator): there is no device to lose. Opening makes a
  socket, and a stopped emulator is indistinguishable from an empty field
  (silence), so it shows as connected. A look sends nothing on `udp:`: a sense
  there waits 1 s for a card that is not there, and would use up frames of
  the emulator's tear tests.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from hcard import keys, ntag424
from hcard.errors import Code, HCardError
from hcard.money import is_valid_amount
from hcard.records import PaymentMode, RecordKind
from hcard.terminal import journal as jr
from hcard.terminal.card import (
    NXP_PUBLIC_KEY_HEX,
    CardKeys,
    CardSession,
    CardView,
    Reader,
    open_reader,
)
from hcard.terminal.client import Clock, ServerClient, ServerUnreachableError
from hcard.terminal.config import TerminalState
from hcard.terminal.payment import Link, Payments, day_of
from hcard.terminal.snapshot import SnapshotStore
from hcard.terminal.sync import SyncAgent
from hcard.terminal.till import (
    CardInfo,
    DayTotals,
    Outcome,
    PaymentResult,
    Status,
    TodayEntry,
    declined,
)

log = logging.getLogger(__name__)

# How long a look at a real reader may sense for a card: one sense cycle.
READER_SENSE_WINDOW_S = 0.02


class _OpenOnly(threading.Event):
    """The `cancel` of a look that must not sense: reads "not set" once, then "set".

    `Reader.wait_for_card` checks `cancel` before it (re)opens the device and
    again (nfcpy's `terminate`) before each sense cycle, so the look opens a
    closed device and then stops before the first frame reaches a card.
    `test_reader_status.py` checks that no frame reaches the emulator.
    """

    def __init__(self) -> None:
        super().__init__()
        self._asked = False

    def is_set(self) -> bool:
        asked, self._asked = self._asked, True
        return asked or super().is_set()


class TerminalTill:
    """The `Till` of one enrolled terminal (state directory)."""

    def __init__(
        self,
        state_dir: Path,
        reader: Reader | None = None,
        *,
        reader_path: str | None = None,
        start_sync: bool = True,
        sync_interval_s: float = 10.0,
        reader_check_interval_s: float | None = 2.0,
    ) -> None:
        self.state = TerminalState(state_dir)
        self.config = self.state.load_config()
        key = self.state.load_key()
        self.journal = jr.open_verified(self.state.journal_path, self.config.terminal_id, key)
        self.clock = Clock(float(self.journal.get_meta("clock_offset_s") or 0.0))
        issuer = keys.public_from_hex(self.config.issuer_public_key)
        self.snapshot = SnapshotStore(self.state.snapshot_path, issuer)
        self.client = ServerClient(
            self.config.server_url,
            self.config.terminal_id,
            key,
            self.clock,
            records_waiting=self.journal.unsent_count,
        )
        self.link = Link()
        self.payments = Payments(
            self.journal, self.snapshot, self.client, self.clock, self.link, key
        )
        self.recovered = self.payments.recover()
        self.agent = SyncAgent(
            self.journal,
            self.payments,
            self.snapshot,
            self.client,
            self.link,
            idle_interval_s=sync_interval_s,
        )
        self._public = key.public_key()
        self._issuer = issuer
        self._tap_lock = threading.Lock()
        self._cancel = threading.Event()
        self.reader = reader or open_reader(reader_path or self.config.reader)
        self._look_stop = threading.Event()  # a tap wants the reader: end the look
        self._closing = threading.Event()
        self._watch: threading.Thread | None = None
        if reader_check_interval_s is not None:
            self._watch = threading.Thread(
                target=self._watch_reader,
                args=(reader_check_interval_s,),
                name="reader-watch",
                daemon=True,
            )
            self._watch.start()
        if start_sync:
            self.agent.start()

    def close(self) -> None:
        self._closing.set()
        self._look_stop.set()
        if self._watch is not None:
            self._watch.join()
        self.agent.stop()
        self.reader.close()
        self.journal.set_meta("clock_offset_s", repr(self.clock.offset_s))
        self.journal.close()

    # ------------------------------------------------------------------ card
    def card_keys(self) -> CardKeys:
        """What the card layer needs to check cards, from config and snapshot."""
        terminal_keys = {
            terminal_id: keys.public_from_hex(public)
            for terminal_id, public in self.snapshot.state.terminal_keys.items()
        }
        terminal_keys[self.config.terminal_id] = self._public
        return CardKeys(
            issuer_public=self._issuer,
            terminal_keys=terminal_keys,
            write_secret=bytes.fromhex(self.config.card_write_secret),
            originality_key_hex=self.config.originality_key or NXP_PUBLIC_KEY_HEX,
            originality_424_key_hex=(
                self.config.originality_424_key or ntag424.NXP_ORIGINALITY_KEY_HEX
            ),
            last_tap_counter=lambda uid: self.journal.tap_counter(uid.hex()),
        )

    def _watch_reader(self, interval_s: float) -> None:
        while not self._closing.is_set():
            self.look_at_reader()
            self._closing.wait(interval_s)

    def look_at_reader(self) -> bool:
        """Open the reader if it is closed and, on a real device, sense once (module
        docstring); skipped while a card operation runs. Returns `connected`."""
        if not self._tap_lock.acquire(blocking=False):
            return self.reader.connected
        try:
            if self.reader.path.startswith("udp:") or not self.reader.connected:
                self.reader.wait_for_card(READER_SENSE_WINDOW_S, _OpenOnly())
            elif not self._look_stop.is_set():
                session = self.reader.wait_for_card(READER_SENSE_WINDOW_S, self._look_stop)
                if session is not None:  # a card left on the reader between payments
                    session.close()
        finally:
            self._tap_lock.release()
        return self.reader.connected

    @contextlib.contextmanager
    def _card_operation(self) -> Iterator[None]:
        """Hold the reader for one tap; a look in progress stops after its sense cycle."""
        self._look_stop.set()
        with self._tap_lock:
            self._look_stop.clear()
            self._cancel.clear()
            yield

    def _tap(self, card_timeout_s: float) -> tuple[CardSession, CardView] | Code | None:
        """Wait for a card and read it: (session, view), a refusal code, or None (no card)."""
        session = self.reader.wait_for_card(card_timeout_s, self._cancel)
        if session is None:
            return None
        try:
            view = session.read(self.card_keys())
        except HCardError as exc:
            session.close()
            return exc.code
        if view.tap_counter is not None:
            self.journal.note_tap_counter(view.uid_hex, view.tap_counter)
        taken_back = self.payments.take_back_unshown_topup(session, view)
        if isinstance(taken_back, Code):
            session.close()
            return taken_back
        return session, taken_back

    # ------------------------------------------------------------------ till
    def pay(
        self, amount_cents: int, tip_cents: int = 0, card_timeout_s: float = 30
    ) -> PaymentResult:
        if (
            not is_valid_amount(amount_cents)
            or not isinstance(tip_cents, int)
            or not 0 <= tip_cents < amount_cents
        ):
            return declined(Code.INVALID_AMOUNT, offline=not self.link.online)
        return self._with_card(
            card_timeout_s,
            lambda session, view: self.payments.pay(session, view, amount_cents, tip_cents),
        )

    def topup(self, amount_cents: int, card_timeout_s: float = 30) -> PaymentResult:
        """Cash onto the card: online only (`Payments.topup`)."""
        if not is_valid_amount(amount_cents):
            return declined(Code.INVALID_AMOUNT, offline=not self.link.online)
        return self._with_card(
            card_timeout_s,
            lambda session, view: self.payments.topup(session, view, amount_cents),
        )

    def _with_card(
        self,
        card_timeout_s: float,
        act: Callable[[CardSession, CardView], PaymentResult],
    ) -> PaymentResult:
        """Wait for a card, run `act` on it, then let the sync agent carry the record."""
        with self._card_operation():
            tapped = self._tap(card_timeout_s)
            if tapped is None:
                return PaymentResult(
                    Outcome.CANCELLED, None, 0, 0, None, None, not self.link.online
                )
            if isinstance(tapped, Code):
                return declined(tapped, offline=not self.link.online)
            session, view = tapped
            try:
                result = act(session, view)
            finally:
                session.close()
        self.agent.wake()
        return result

    def balance(self, card_timeout_s: float = 30) -> CardInfo:
        with self._card_operation():
            tapped = self._tap(card_timeout_s)
            if tapped is None:
                return CardInfo("", None, False, code=None)
            if isinstance(tapped, Code):
                return CardInfo("", None, False, code=tapped)
            session, view = tapped
            session.close()
        if self.link.online:
            try:
                answer = self.client.card(view.card_number)
                return CardInfo(
                    card_number=view.card_number,
                    balance_cents=int(answer["balance_cents"]),
                    blocked=bool(answer["blocked"]),
                    recent=[(int(r["amount_cents"]), str(r["label"])) for r in answer["recent"]],
                    code=Code.CARD_BLOCKED if answer["blocked"] else None,
                )
            except ServerUnreachableError:
                self.link.down()
            except (HCardError, KeyError, TypeError, ValueError) as exc:
                log.info("balance from server failed: %s", exc)
        # offline: the balance the offline decision would use; None when it has none it
        # can trust (deny-listed, purse invalid, unknown card)
        decision = self.payments.decide_offline(view, 1, 0)
        blocked = view.card_number in self.snapshot.state.deny
        return CardInfo(
            card_number=view.card_number,
            balance_cents=decision.balance_cents,
            blocked=blocked,
            code=Code.CARD_BLOCKED if blocked else view.purse_code,
        )

    def void(self, receipt_no: int, card_timeout_s: float = 30) -> PaymentResult:
        """Void what the till showed under `receipt_no` today: a payment at once, no card
        (`Payments.void`); a top-up with its card on the reader, which is written down
        (`Payments.void_topup`). A refusal that needs no card (not found, already voided,
        too late) comes before waiting for one."""
        entry = self.payments.voidable(receipt_no)
        if isinstance(entry, jr.Entry) and entry.record.kind == RecordKind.TOPUP_REQUEST:
            return self._with_card(
                card_timeout_s,
                lambda session, view: self.payments.void_topup(session, view, receipt_no),
            )
        result = entry if isinstance(entry, PaymentResult) else self.payments.void(receipt_no)
        self.agent.wake()
        return result

    def needs_card_to_void(self, receipt_no: int) -> bool:
        """True when `void(receipt_no)` will wait for a card (a top-up of today)."""
        entry = self.payments.voidable(receipt_no)
        return isinstance(entry, jr.Entry) and entry.record.kind == RecordKind.TOPUP_REQUEST

    def _business_day(self) -> list[jr.Entry]:
        after = self.journal.last_day_close_seq()
        return self.journal.entries(after_seq=after)

    def today(self) -> list[TodayEntry]:
        """The business day's receipts in order: payments, and top-ups (marked `topup`), so
        the numbers the cashier saw are all in the list."""
        return [
            TodayEntry(
                receipt_no=e.receipt_no,
                amount_cents=e.record.body["amount_cents"],
                tip_cents=e.record.body.get("tip_cents", 0),
                card_number=e.record.body["card"],
                offline=e.record.body.get("mode") == PaymentMode.OFFLINE,
                voided=e.state == jr.State.VOIDED,
                topup=e.record.kind == RecordKind.TOPUP_REQUEST,
            )
            for e in self._business_day()
            if e.receipt_no is not None
        ]

    def _totals(self, entries: list[TodayEntry]) -> dict[str, int]:
        """The day-close record's totals: payments only (the record's signed body)."""
        entries = [e for e in entries if not e.topup]
        voided = [e for e in entries if e.voided]
        return {
            "count": len(entries),
            "sum_cents": sum(e.amount_cents for e in entries),
            "void_count": len(voided),
            "void_sum_cents": sum(e.amount_cents for e in voided),
            "offline_count": sum(1 for e in entries if e.offline),
        }

    def day_close(self) -> DayTotals:
        """Journal the day's totals (a `day_close` record) and start a new business day.

        The record's totals count payments (top-ups are not sales; its body is fixed).
        The top-ups (their cash, voided ones apart: what the merchant holds for the
        operator) and the day's receipt numbers (payments and top-ups) come with the
        answer from the journal, for the screen, the CLI and the printed receipt, but
        not into the record.
        """
        entries = self.today()
        totals = self._totals(entries)
        now_s = self.clock.now_s()
        self.journal.append(
            RecordKind.DAY_CLOSE, totals, state=None, day=day_of(now_s), created_s=now_s
        )
        self.agent.wake()
        numbers = [e.receipt_no for e in entries]
        topups = [e for e in entries if e.topup]
        voided = [e for e in topups if e.voided]
        return DayTotals(
            **totals,
            unsynced_count=self.journal.unsent_count(),
            first_receipt_no=min(numbers) if numbers else None,
            last_receipt_no=max(numbers) if numbers else None,
            topup_count=len(topups),
            topup_sum_cents=sum(e.amount_cents for e in topups),
            topup_void_count=len(voided),
            topup_void_sum_cents=sum(e.amount_cents for e in voided),
        )

    def status(self) -> Status:
        return Status(
            enrolled=True,
            online=self.link.online,
            reader_connected=self.reader.connected,
            unsynced_count=self.journal.unsent_count(),
            last_sync_s=self.agent.last_sync_s,
            terminal_id=self.config.terminal_id,
            merchant_name=self.config.merchant_name,
            server_url=self.config.server_url,
        )

    def sync_now(self) -> None:
        """One sync round now, in the caller's thread; a missing server is not an error."""
        try:
            self.agent.run_once()
        except ServerUnreachableError:
            self.link.down()

    def cancel(self) -> None:
        self._cancel.set()
