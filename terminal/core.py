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
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from hcard import keys
from hcard.errors import Code, HCardError
from hcard.money import is_valid_amount
from hcard.terminal import journal as jr
from hcard.terminal.card import CardKeys, CardSession, CardView, Reader, open_reader
from hcard.terminal.client import Clock, ServerClient, ServerUnreachableError
from hcard.terminal.config import TerminalState
from hcard.terminal.payment import Link, Payments, day_of, declined
from hcard.terminal.snapshot import SnapshotStore
from hcard.terminal.sync import SyncAgent
from hcard.terminal.till import (
    CardInfo,
    DayTotals,
    Outcome,
    PaymentResult,
    Status,
    TodayEntry,
)

log = logging.getLogger(__name__)

# Offline, these leave the terminal without a balance it could show.
_NO_BALANCE = (Code.UNKNOWN_CARD, Code.PURSE_INVALID, Code.CARD_BLOCKED)


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
    ) -> None:
        self.state = TerminalState(state_dir)
        self.config = self.state.load_config()
        key = self.state.load_key()
        self.journal = jr.open_verified(self.state.journal_path, self.config.terminal_id, key)
        self.clock = Clock(float(self.journal.get_meta("clock_offset_s") or 0.0))
        issuer = keys.public_from_hex(self.config.issuer_public_key)
        self.snapshot = SnapshotStore(self.state.snapshot_path, issuer)
        self.client = ServerClient(self.config.server_url, self.config.terminal_id, key, self.clock)
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
        self._reader = reader
        self._reader_path = reader_path or self.config.reader
        if start_sync:
            self.agent.start()

    @property
    def reader(self) -> Reader:
        """Opened at the first card operation: status, void and sync need no reader."""
        if self._reader is None:
            self._reader = open_reader(self._reader_path)
        return self._reader

    def close(self) -> None:
        self.agent.stop()
        if self._reader is not None:
            self._reader.close()
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
            **(
                {"originality_key_hex": self.config.originality_key}
                if self.config.originality_key
                else {}
            ),
        )

    def _tap(self, card_timeout_s: float) -> tuple[CardSession, CardView] | Code | None:
        """Wait for a card and read it: (session, view), a refusal code, or None (no card)."""
        session = self.reader.wait_for_card(card_timeout_s, self._cancel)
        if session is None:
            return None
        try:
            return session, session.read(self.card_keys())
        except HCardError as exc:
            session.close()
            return exc.code

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
        with self._tap_lock:
            self._cancel.clear()
            tapped = self._tap(card_timeout_s)
            if tapped is None:
                return PaymentResult(
                    Outcome.CANCELLED, None, 0, 0, None, None, not self.link.online
                )
            if isinstance(tapped, Code):
                return declined(tapped, offline=not self.link.online)
            session, view = tapped
            try:
                result = self.payments.pay(session, view, amount_cents, tip_cents)
            finally:
                session.close()
        self.agent.wake()
        return result

    def balance(self, card_timeout_s: float = 30) -> CardInfo:
        with self._tap_lock:
            self._cancel.clear()
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
        decision = self.payments.decide_offline(view, 1, 0)
        blocked = view.card_number in self.snapshot.state.deny
        return CardInfo(
            card_number=view.card_number,
            balance_cents=None if decision.code in _NO_BALANCE else decision.balance_cents,
            blocked=blocked,
            code=Code.CARD_BLOCKED if blocked else view.purse_code,
        )

    def void(self, receipt_no: int) -> PaymentResult:
        result = self.payments.void(receipt_no)
        self.agent.wake()
        return result

    def _business_day(self) -> list[jr.Entry]:
        after = self.journal.last_day_close_seq()
        return self.journal.entries(after_seq=after)

    def today(self) -> list[TodayEntry]:
        return [
            TodayEntry(
                receipt_no=e.record.seq,
                amount_cents=e.record.body["amount_cents"],
                tip_cents=e.record.body["tip_cents"],
                card_number=e.record.body["card"],
                offline=e.record.body["mode"] == "offline",
                voided=e.state == jr.VOIDED,
            )
            for e in self._business_day()
            if e.record.kind == "payment" and e.state in (jr.FINAL, jr.VOIDED)
        ]

    def _totals(self) -> dict[str, int]:
        entries = self.today()
        voided = [e for e in entries if e.voided]
        return {
            "count": len(entries),
            "sum_cents": sum(e.amount_cents for e in entries),
            "void_count": len(voided),
            "void_sum_cents": sum(e.amount_cents for e in voided),
            "offline_count": sum(1 for e in entries if e.offline),
        }

    def day_close(self) -> DayTotals:
        """Journal the day's totals (a `day_close` record) and start a new business day."""
        totals = self._totals()
        now_s = self.clock.now_s()
        self.journal.append("day_close", totals, state=None, day=day_of(now_s), created_s=now_s)
        self.agent.wake()
        return DayTotals(**totals, unsynced_count=self.journal.unsent_count())

    def status(self) -> Status:
        return Status(
            enrolled=True,
            online=self.link.online,
            reader_connected=self._reader is not None and self._reader.connected,
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
