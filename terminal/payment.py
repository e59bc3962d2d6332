"""One payment, from a card on the reader to the result the till shows.

    tap → card read and verified (`hcard.terminal.card`) → journal the intent
    → online: `POST /v1/terminal/authorise` within ~1 s | offline: decide here
    → write the new purse to the card (counter + 1) → mark final → result

Ordering, and why nothing approved is lost and nothing unshown is charged:
1. The payment record is committed *before* the server is asked or the card
   is written: online with fsync (the server will know the seq, so it must
   survive anything), offline without (nobody outside has seen it; the fsync
   of step 2 carries it to the disk, WAL frames are written in order).
2. Only after the card write succeeded is the record marked `final`, with
   fsync, and the result returned as approved. `final` is the till's promise
   to the customer: once it is on disk, the payment is too.
3. At restart (`recover`), a payment journalled but not final was never shown
   as approved: it is voided by a void record, so the server, which may
   already have booked it (online) or will book it at sync (offline), reverses
   it. An online payment whose answer never arrived is settled by the sync
   agent: it uploads it, and the server answers with the outcome it gave at
   authorisation (approved: voided) or, never having seen it, stores it as
   declined, booking nothing (`settle_unshown`).
4. A card write that did not finish is repaired at the card's next tap on this
   terminal: the counter used by the unfinished payment is never used again
   (the server sees every counter once), and if the write did land on the card
   although the payment was voided, the voided amount is given back to the
   purse in the next write.

Top-up (cash at the till): online only, the same path as an online payment.
The `topup_request` is journalled (fsync) before the server is asked; with no
answer in time it is declined `SERVER_UNREACHABLE` and left `unshown` for the
sync agent, which voids it if the server did approve it after all (the server
reverses an approved till top-up by a void, once). Approved: the server's new
balance is written to the card with the next counter, then `final`. A failed
card write, or a crash before `final`, voids it like a payment: the till never
showed it, so the cashier hands the cash back. Until such a void reaches the
server, its balance of the card still holds that top-up: every purse written
from the server's balance (top-ups, online payments), and the snapshot's
balance offline, leave this terminal's unsettled top-ups out
(`Journal.unsettled_topups_cents`). The top-up's counter is not in
its record, so until the card's next online payment the offline decision sees
that write as one the server has not seen (one more toward the consecutive
offline limit, and the snapshot's balance caps the purse): the safe side.

Offline decision (server unreachable or slower than the short timeout): the
rules are the pure function `hcard.terminal.offline.decide`; this module only
gathers its inputs (the tap, the snapshot, this till's journal entries of the
card) in `decide_offline`, and the counter floor and refund of unfinished
payments come from `offline.repair`. A refusal the card could partly pay
carries `available_cents`, so the front end can offer exactly that.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard.errors import Code, HCardError
from hcard.records import Outcome as ServerOutcome
from hcard.records import PaymentMode, Record, RecordKind, SyncStatus
from hcard.terminal import journal as jr
from hcard.terminal import offline
from hcard.terminal.card.model import CardSession, CardView, Purse
from hcard.terminal.client import Clock, ServerClient, ServerUnreachableError
from hcard.terminal.offline import (
    CardFacts,
    CardPayment,
    Decision,
    JournalFacts,
    SnapshotFacts,
    Verdict,
)
from hcard.terminal.snapshot import SnapshotStore
from hcard.terminal.states import SHOWN, State
from hcard.terminal.till import Outcome, PaymentResult, declined

log = logging.getLogger(__name__)

# `meta` key: the purse write of a top-up's void not yet journalled (`Payments.void_topup`)
PENDING_TOPUP_VOID = "topup_void_pending"


class Link:
    """Is the server reachable? Set by every request; read before each payment.

    When the last request failed, payments go offline at once instead of
    waiting for a timeout each time; the sync agent probes with backoff and
    sets it back.
    """

    def __init__(self) -> None:
        self.online = True

    def ok(self) -> None:
        self.online = True

    def down(self) -> None:
        self.online = False


def day_of(now_s: float) -> str:
    """The calendar day of a (server-corrected) time, local time zone."""
    return time.strftime("%Y-%m-%d", time.localtime(now_s))


class Payments:
    """The payment logic of one terminal (journal + snapshot + server link)."""

    def __init__(
        self,
        journal: jr.Journal,
        snapshot: SnapshotStore,
        client: ServerClient,
        clock: Clock,
        link: Link,
        key: Ed25519PrivateKey,
    ) -> None:
        self.journal = journal
        self._key = key
        self.snapshot = snapshot
        self.client = client
        self.clock = clock
        self.link = link
        self.terminal_id = journal.terminal_id

    # ------------------------------------------------------------- decision
    def decide_offline(
        self,
        tap: CardView,
        amount_cents: int,
        refund_cents: int,
        history: list[CardPayment] | None = None,
    ) -> Decision:
        """Gather what the card, the snapshot and the journal say; `offline.decide` decides."""
        state = self.snapshot.state
        known = state.balances.get(tap.card_number)
        snapshot = SnapshotFacts(
            limits=state.limits,
            deny_listed=tap.card_number in state.deny,
            balance_cents=None if known is None else known.balance_cents,
            counter=0 if known is None else known.counter,
            trusted_counter=0 if known is None else known.trusted_counter,
            pending_in_purse_cents=0
            if known is None
            else pending_in_purse_cents(known.pending_topups, tap),
        )
        journal = JournalFacts(
            payments=self.journal.card_payments(tap.card_number) if history is None else history,
            acked_seq=self.journal.acked_seq(),
            today=day_of(self.clock.now_s()),
            # the snapshot may count top-ups this till voided but has not sent yet
            unsettled_topups_cents=(
                0 if known is None else self.journal.unsettled_topups_cents(tap.card_number)
            ),
            refund_cents=refund_cents,
        )
        return offline.decide(amount_cents, _card_facts(tap), snapshot, journal)

    # ------------------------------------------------------------------ pay
    def pay(
        self, session: CardSession, tap: CardView, amount_cents: int, tip_cents: int
    ) -> PaymentResult:
        history = self.journal.card_payments(tap.card_number)
        fix = offline.repair(_card_facts(tap), history, self.terminal_id)
        counter = self._next_counter(tap, fix)
        if self.link.online:
            result = self._pay_online(
                session, tap, amount_cents, tip_cents, counter, fix.refund_cents
            )
            if result is not None:
                return result
            counter += 1  # the online record may hold `counter` at the server: never reuse it
            history = self.journal.card_payments(tap.card_number)  # the try is in it now
        return self._pay_offline(
            session, tap, amount_cents, tip_cents, counter, fix.refund_cents, history
        )

    def _next_counter(self, tap: CardView, fix: offline.Repair) -> int:
        """The counter the next purse write of this till carries: above the card's, above
        those of our unwritten payments (`offline.repair`), and above every counter our
        top-ups named (the server keeps one as a write the card may hold)."""
        floor = self.journal.topup_counter_floor(tap.card_number)
        return max(tap.counter, fix.counter_floor, floor) + 1

    def _known_balance_cents(self, tap: CardView) -> int:
        """The terminal's estimate of the balance before an online payment."""
        if tap.purse is not None:
            return tap.purse.balance_cents
        known = self.snapshot.state.balances.get(tap.card_number)
        return known.balance_cents if known else 0

    def _body(
        self,
        tap: CardView,
        amount_cents: int,
        tip_cents: int,
        mode: PaymentMode,
        counter: int,
        purse_cents: int,
    ) -> dict[str, object]:
        return {
            "card": tap.card_number,
            "uid": tap.uid.hex(),
            "amount_cents": amount_cents,
            "tip_cents": tip_cents,
            "mode": mode,
            "counter": counter,
            "purse_cents": purse_cents,
        }

    def _append(
        self,
        body: dict[str, object],
        state: State,
        durable: bool = True,
        kind: RecordKind = RecordKind.PAYMENT,
        counter: int | None = None,
    ) -> Record:
        now_s = self.clock.now_s()
        return self.journal.append(
            kind,
            body,
            state=state,
            day=day_of(now_s),
            created_s=now_s,
            durable=durable,
            counter=counter,
        )

    def _ask(self, record: Record, write_counter: int | None = None) -> dict[str, object] | None:
        """The server's answer to an online record, or None: no answer in time (`unshown`).

        A refusal of the request itself (revoked, conflict) raises `HCardError`;
        the caller leaves the record `unshown` for the sync agent to settle.
        """
        acked_seq = self.journal.acked_seq()  # the sync agent may move it while we ask
        try:
            answer, chain_head = self.client.authorise(record, write_counter)
            outcome = answer["outcome"]
            if outcome not in (ServerOutcome.APPROVED, ServerOutcome.DECLINED):
                raise ServerUnreachableError(f"unknown outcome {outcome!r}")
        except (ServerUnreachableError, KeyError, TypeError) as exc:
            log.info("online authorisation of seq %s failed (%s)", record.seq, exc)
            self.link.down()
            # no fsync needed: after a crash an `intent` becomes `unshown` anyway
            self.journal.set_state(record.seq, State.UNSHOWN, durable=False)
            return None
        self.link.ok()
        if (
            chain_head is not None
            and chain_head[0] < acked_seq
            and self.journal.restored_before(chain_head)
        ):
            # what it lost goes again at the next sync; first, the voids of top-ups it lost
            # count as unsettled again (`unsettled_topups_cents`) for the purse written now
            log.warning("server holds only up to seq %s (restored?)", chain_head[0])
            self.journal.rewind_acked(chain_head[0], expected=acked_seq)
        return answer

    def _pay_online(
        self,
        session: CardSession,
        tap: CardView,
        amount_cents: int,
        tip_cents: int,
        counter: int,
        refund_cents: int,
    ) -> PaymentResult | None:
        """Authorise with the server; None means "no answer in time: decide offline"."""
        estimate_cents = self._known_balance_cents(tap) + refund_cents - amount_cents
        unsettled_cents = self.journal.unsettled_topups_cents(tap.card_number)  # before asking
        record = self._append(
            self._body(tap, amount_cents, tip_cents, PaymentMode.ONLINE, counter, estimate_cents),
            State.INTENT,
        )
        try:
            answer = self._ask(record)
        except HCardError as exc:
            self.journal.set_state(record.seq, State.UNSHOWN)
            if exc.code in (Code.TERMINAL_REVOKED, Code.UNKNOWN_TERMINAL):
                return declined(exc.code, offline=False)
            log.warning("server refused authorisation of seq %s: %s", record.seq, exc.code)
            self.link.down()
            return None
        if answer is None:
            return None  # decide offline
        if answer["outcome"] == ServerOutcome.DECLINED:
            self.journal.set_state(record.seq, State.DECLINED, outcome=answer)
            code = _code(answer.get("code"))
            return declined(code, offline=False, available_cents=answer.get("available_cents"))
        # No commit here: until `final`, a crash leaves the record `intent`, and
        # the recovery asks the server again and voids it, as it would an
        # `approved` one. One fsync less on the path the customer waits for.
        balance_cents = answer.get("balance_cents")
        purse_cents = (
            self._purse_after_cents(
                tap, answer, balance_cents, unsettled_cents, refund_cents - amount_cents
            )
            if isinstance(balance_cents, int) and not isinstance(balance_cents, bool)
            else estimate_cents
        )
        return self._write_and_finish(
            session, record, purse_cents, counter, offline=False, outcome=answer
        )

    def _purse_after_cents(
        self,
        tap: CardView,
        answer: dict[str, object],
        balance_cents: int,
        unsettled_before_cents: int,
        change_cents: int,
    ) -> int:
        """The purse written after an online approval: the server's balance, at most the card's.

        The server's balance leaves out offline payments it has not seen yet
        (made at other tills, recorded only in the card's purse): writing it
        would erase them, and the next offline till would let the card spend
        that money again. So the lower of the server's balance (less this
        till's unsettled top-ups) and the card's own purse moved by this
        payment or top-up (`change_cents`, with any refund owed, less other
        tills' unconfirmed top-ups in the purse: `pending_in_purse_cents`) is
        written. A top-up the card does not show yet still reaches offline tills
        through the snapshot, whose counter then covers the card's.

        This till's unsettled top-ups are the larger of the count before asking
        (`unsettled_before_cents`: a void the sync agent got acknowledged meanwhile
        is still in the server's answer) and the count now (an answer from a
        restored server took back acknowledgements, `_ask`).
        """
        unsettled_cents = max(
            unsettled_before_cents, self.journal.unsettled_topups_cents(tap.card_number)
        )
        server_cents = balance_cents - unsettled_cents
        if tap.purse is None:
            return server_cents
        pending_cents = pending_in_purse_cents(answer.get("pending_topups"), tap)
        return min(server_cents, tap.purse.balance_cents - pending_cents + change_cents)

    # --------------------------------------------------------------- top-up
    def topup(self, session: CardSession, tap: CardView, amount_cents: int) -> PaymentResult:
        """Cash taken at the till onto the card: the server decides, or it is declined."""
        fix = offline.repair(
            _card_facts(tap), self.journal.card_payments(tap.card_number), self.terminal_id
        )
        counter = self._next_counter(tap, fix)
        body = {"card": tap.card_number, "amount_cents": amount_cents}
        unsettled_cents = self.journal.unsettled_topups_cents(tap.card_number)  # before asking
        record = self._append(body, State.INTENT, kind=RecordKind.TOPUP_REQUEST, counter=counter)
        try:
            # the server keeps the write's counter: another till takes this top-up off a
            # purse we wrote at it until we confirm it (`pending_in_purse_cents`)
            answer = self._ask(record, counter)
        except HCardError as exc:
            log.warning("server refused top-up seq %s: %s", record.seq, exc.code)
            self.journal.set_state(record.seq, State.UNSHOWN)
            return declined(exc.code, offline=False)
        if answer is None:
            return declined(Code.SERVER_UNREACHABLE, offline=True)
        if answer["outcome"] == ServerOutcome.DECLINED:
            self.journal.set_state(record.seq, State.DECLINED, outcome=answer)
            return declined(_code(answer.get("code")), offline=False)
        balance_cents = answer.get("balance_cents")
        if not isinstance(balance_cents, int) or isinstance(balance_cents, bool):
            # approved, but no balance to write: never shown, so the sync agent voids it
            self.journal.set_state(record.seq, State.UNSHOWN)
            return declined(Code.SERVER_UNREACHABLE, offline=False)
        purse_cents = self._purse_after_cents(
            tap, answer, balance_cents, unsettled_cents, fix.refund_cents + amount_cents
        )
        self.journal.note_topup_write(
            jr.TopupWrite(tap.card_number, record.seq, counter, purse_cents)
        )
        return self._write_and_finish(
            session, record, purse_cents, counter, offline=False, outcome=answer
        )

    def take_back_unshown_topup(self, session: CardSession, tap: CardView) -> CardView | Code:
        """At every tap: a card holding a top-up's write that this till never showed gives
        that money back first; returns the card as it is now.

        A top-up's card write can land although the till saw it fail (the card pulled
        away as the last page was written), or land just before a crash: the till voided
        the top-up and the cashier handed the cash back, but the purse holds the money.
        So the write each top-up tries is kept (`Journal.note_topup_write`, on the disk
        before the write; `finish` drops it in its own commit). When the card comes back
        holding exactly that purse and the top-up is not shown (`cancelled`, or `unshown`
        until the sync agent voids it), the purse is written down by the top-up's amount
        with the next counter, before the payment, top-up, void or balance look-up it was
        tapped for. The write is in no record, like the top-up's own: offline tills see a
        counter the server has not seen and take the lower of purse and snapshot. A failed
        write refuses the tap (`CARD_UNREADABLE`), and the entry stays for the next. A card
        holding anything else has moved on: its entry is dropped.
        """
        written = self.journal.topup_write(tap.card_number)
        if written is None:
            return tap
        entry = self.unshown_topup_on(tap, written)
        if entry is not None and tap.purse is not None:
            amount_cents = int(entry.record.body["amount_cents"])
            try:
                purse = Purse(
                    tap.purse.balance_cents - amount_cents, tap.counter + 1, self.terminal_id
                )
                session.write_purse(purse, self._key)
            except Exception as exc:  # the entry stays for the card's next tap
                _log_write_failure(f"card write taking back top-up seq {entry.record.seq}", exc)
                return Code.CARD_UNREADABLE
            log.info("card of the unshown top-up seq %s written back down", entry.record.seq)
            tap = dataclasses.replace(tap, purse=purse, counter=purse.counter)
        self.journal.drop_topup_write(tap.card_number)
        return tap

    def unshown_topup_on(
        self, tap: CardView, written: jr.TopupWrite | None = None
    ) -> jr.Entry | None:
        """The top-up of this till, never shown, whose purse write (`written`, else the one
        kept for the card) the card holds; None when it holds none."""
        if written is None:
            written = self.journal.topup_write(tap.card_number)
        if written is None or not _holds(
            tap, written.counter, written.purse_cents, self.terminal_id
        ):
            return None
        entry = self.journal.entry(written.seq)
        return None if entry is None or entry.state in SHOWN else entry

    def _pay_offline(
        self,
        session: CardSession,
        tap: CardView,
        amount_cents: int,
        tip_cents: int,
        counter: int,
        refund_cents: int,
        history: list[CardPayment],
    ) -> PaymentResult:
        decision = self.decide_offline(tap, amount_cents, refund_cents, history)
        if decision.verdict != Verdict.APPROVE or decision.purse_after_cents is None:
            code = decision.code or Code.INTERNAL_ERROR
            return declined(code, offline=True, available_cents=decision.available_cents)
        purse_cents = decision.purse_after_cents
        # Not fsynced: no one outside this terminal has seen it yet. The `final`
        # commit below is durable and takes this one to the disk with it; a power
        # cut before that can lose it, and then the till never showed it either
        # (the card may keep the lower purse: the safe side).
        record = self._append(
            self._body(tap, amount_cents, tip_cents, PaymentMode.OFFLINE, counter, purse_cents),
            State.APPROVED,
            durable=False,
        )
        return self._write_and_finish(session, record, purse_cents, counter, offline=True)

    def _write_and_finish(
        self,
        session: CardSession,
        record: Record,
        purse_cents: int,
        counter: int,
        *,
        offline: bool,
        outcome: dict[str, object] | None = None,
    ) -> PaymentResult:
        """Write the purse; approved once `final`, else voided (never shown: nothing owed)."""
        try:
            session.write_purse(Purse(purse_cents, counter, self.terminal_id), self._key)
        except Exception as exc:  # any failure: never shown approved
            _log_write_failure(f"card write of seq {record.seq} failed: cancelled", exc)
            if outcome is not None:
                self.journal.set_state(record.seq, State.APPROVED, outcome=outcome)
            self.cancel_unshown(record)
            return declined(Code.CARD_UNREADABLE, offline=offline)
        receipt_no = self.journal.finish(record.seq, outcome=outcome)
        return PaymentResult(
            outcome=Outcome.APPROVED,
            code=None,
            amount_cents=record.body["amount_cents"],
            tip_cents=record.body.get("tip_cents", 0),
            balance_cents=purse_cents,
            receipt_no=receipt_no,
            offline=offline,
            seq=record.seq,
        )

    # ---------------------------------------------------------------- voids
    def cancel_unshown(self, record: Record) -> None:
        """Void a payment or top-up the till never showed as approved (state `cancelled`)."""
        now_s = self.clock.now_s()
        body = {
            "card": record.body["card"],
            "voids_seq": record.seq,
            "amount_cents": record.body["amount_cents"],
        }
        self.journal.void(
            record.seq, body, day=day_of(now_s), created_s=now_s, state=State.CANCELLED
        )

    def voidable(self, receipt_no: int) -> jr.Entry | PaymentResult:
        """The payment or top-up the till showed under `receipt_no` in the current business
        day (since the last day close), or the refusal: not found, already voided, too late."""
        entry = self.journal.by_receipt(receipt_no)
        # only what the till showed as approved can be voided by the cashier
        if entry is None or entry.record.kind not in jr.RECEIPT_KINDS or entry.state not in SHOWN:
            return declined(Code.PAYMENT_NOT_FOUND, offline=not self.link.online)
        if entry.state == State.VOIDED:
            return declined(Code.ALREADY_VOIDED, offline=not self.link.online)
        if entry.record.seq <= self.journal.last_day_close_seq():
            return declined(Code.VOID_TOO_LATE, offline=not self.link.online)
        return entry

    def void(self, receipt_no: int) -> PaymentResult:
        """Void a payment of the current business day (since the last day close); no card.

        `receipt_no` is the number the till showed (`Journal.by_receipt`), not
        the seq; the void record names the payment by its seq (`voids_seq`).
        The result carries the voided payment's receipt number, which is what
        the cashier asked for; a void gets no receipt number of its own. A
        top-up is voided with its card on the reader (`void_topup`).
        """
        entry = self.voidable(receipt_no)
        if isinstance(entry, PaymentResult):
            return entry
        if entry.record.kind != RecordKind.PAYMENT:
            return declined(Code.PAYMENT_NOT_FOUND, offline=not self.link.online)
        seq = entry.record.seq
        body = entry.record.body
        now_s = self.clock.now_s()
        record = self.journal.void(
            seq,
            {"card": body["card"], "voids_seq": seq, "amount_cents": body["amount_cents"]},
            day=day_of(now_s),
            created_s=now_s,
            state=State.VOIDED,
        )
        return PaymentResult(
            outcome=Outcome.APPROVED,
            code=None,
            amount_cents=body["amount_cents"],
            tip_cents=body["tip_cents"],
            balance_cents=None,
            receipt_no=receipt_no,
            offline=body["mode"] == PaymentMode.OFFLINE,
            seq=record.seq,
        )

    def void_topup(self, session: CardSession, tap: CardView, receipt_no: int) -> PaymentResult:
        """The cashier's void of a top-up of the current business day: the cash goes back to
        the customer, so the money comes off the card, on the card too.

        The card on the reader must be the top-up's, and the money must still be on it
        (`_topup_void_purse`: online the server's balance, offline the one an offline
        payment would use, never above the card's own purse); otherwise it is refused
        (`PAYMENT_NOT_FOUND` for another card, `INSUFFICIENT_FUNDS` with what is left) and
        nothing is written. Then the purse is written down by the amount (next counter)
        and only after that the void record is journalled (fsync), the top-up `voided`,
        and the result shown: the till never says "voided" for a card that still holds
        the money, and the server reverses the top-up at sync (docs/protocol.md). A card
        pulled away during the write is refused `CARD_UNREADABLE` with nothing journalled;
        the write it attempted is kept in `meta` (`PENDING_TOPUP_VOID`), so when the card
        comes back holding exactly that purse (the write did land) the void is journalled
        without writing the card down a second time. (A crash between the write and the
        journal commit is the same case.)
        """
        entry = self.voidable(receipt_no)
        if isinstance(entry, PaymentResult):
            return entry
        record = entry.record
        if record.kind != RecordKind.TOPUP_REQUEST or tap.card_number != record.body["card"]:
            # another card than the top-up's: its top-up is not on this card
            return declined(Code.PAYMENT_NOT_FOUND, offline=not self.link.online)
        amount_cents = record.body["amount_cents"]
        pending = self._pending_topup_void()
        if pending.get("seq") == record.seq and _holds(
            tap, pending.get("counter"), pending.get("purse_cents"), self.terminal_id
        ):
            purse_cents = pending["purse_cents"]  # the last try's write landed
        else:
            fix = offline.repair(
                _card_facts(tap), self.journal.card_payments(tap.card_number), self.terminal_id
            )
            # never a counter an earlier try may have written (it may have landed)
            tried = pending.get("counter", 0) if pending.get("card") == tap.card_number else 0
            counter = max(self._next_counter(tap, fix), tried + 1)
            checked = self._topup_void_purse(tap, amount_cents, fix.refund_cents)
            if isinstance(checked, PaymentResult):
                return checked
            purse_cents = checked
            self.journal.set_meta(
                PENDING_TOPUP_VOID,
                json.dumps(
                    {
                        "seq": record.seq,
                        "card": tap.card_number,
                        "counter": counter,
                        "purse_cents": purse_cents,
                    }
                ),
            )
            try:
                session.write_purse(Purse(purse_cents, counter, self.terminal_id), self._key)
            except Exception as exc:  # any failure: the void not shown done
                _log_write_failure(f"card write of the void of seq {record.seq} failed", exc)
                return declined(Code.CARD_UNREADABLE, offline=not self.link.online)
        now_s = self.clock.now_s()
        void = self.journal.void(
            record.seq,
            {"card": tap.card_number, "voids_seq": record.seq, "amount_cents": amount_cents},
            day=day_of(now_s),
            created_s=now_s,
            state=State.VOIDED,
        )
        self.journal.set_meta(PENDING_TOPUP_VOID, "{}")
        return PaymentResult(
            outcome=Outcome.APPROVED,
            code=None,
            amount_cents=amount_cents,
            tip_cents=0,
            balance_cents=purse_cents,
            receipt_no=receipt_no,
            offline=not self.link.online,
            seq=void.seq,
        )

    def _pending_topup_void(self) -> dict[str, Any]:
        try:
            pending = json.loads(self.journal.get_meta(PENDING_TOPUP_VOID) or "{}")
        except ValueError:
            return {}
        return pending if isinstance(pending, dict) else {}

    def _topup_void_purse(
        self, tap: CardView, amount_cents: int, refund_cents: int
    ) -> int | PaymentResult:
        """The purse after taking a top-up's `amount_cents` back off the card, or the refusal.

        What is on the card now: online the server's balance (less this till's unsettled
        top-ups), at most the card's own purse (with any refund owed), which holds offline
        payments the server has not seen; offline the balance an offline payment would use
        (`offline.decide`; a deny-listed card or an untrusted purse is refused with its code).
        Less than the amount: `INSUFFICIENT_FUNDS` with what is there; the cash was spent.
        """
        if self.link.online:
            try:
                answer = self.client.card(tap.card_number)
                balance_cents, blocked = answer["balance_cents"], answer["blocked"]
                if not isinstance(balance_cents, int) or isinstance(balance_cents, bool):
                    raise TypeError(f"balance_cents {balance_cents!r}")
            except (ServerUnreachableError, KeyError, TypeError) as exc:
                log.info("balance for the void of a top-up failed (%s): offline", exc)
                self.link.down()
            except HCardError as exc:
                return declined(exc.code, offline=False)
            else:
                self.link.ok()
                if blocked:
                    return declined(Code.CARD_BLOCKED, offline=False)
                unsettled = self.journal.unsettled_topups_cents(tap.card_number)
                available = balance_cents - unsettled
                if tap.purse is not None:
                    available = min(available, tap.purse.balance_cents + refund_cents)
                if available < amount_cents:
                    return declined(
                        Code.INSUFFICIENT_FUNDS, offline=False, available_cents=available
                    )
                return available - amount_cents
        decision = self.decide_offline(tap, amount_cents, refund_cents)
        if decision.balance_cents is None:
            return declined(decision.code or Code.INTERNAL_ERROR, offline=True)
        if decision.balance_cents < amount_cents:
            return declined(
                Code.INSUFFICIENT_FUNDS, offline=True, available_cents=decision.balance_cents
            )
        return decision.balance_cents - amount_cents

    # ------------------------------------------------------------- recovery
    def recover(self) -> list[int]:
        """At start-up: settle what a crash left unfinished. Returns the voided seqs.

        `approved` (decided, card write or display not confirmed) → voided.
        `intent` (asked the server, no answer kept) → `unshown`, resolved by
        the sync agent.
        """
        cancelled = []
        for entry in self.journal.entries(states=(State.APPROVED, State.INTENT)):
            if entry.state == State.INTENT:
                self.journal.set_state(entry.record.seq, State.UNSHOWN)
            else:
                self.cancel_unshown(entry.record)
                cancelled.append(entry.record.seq)
        return cancelled

    def settle_unshown(self, results: list[dict[str, object]]) -> int:
        """Settle `unshown` online records by the server's sync answer; void approved ones.

        An unanswered online record is uploaded like any other instead of being
        asked about again: the server answers one it authorised with that
        original outcome (approved: the till voids it, it never showed it), and
        stores one it never saw as declined (`payment_not_found`), booking
        nothing. Asking `authorise` again would instead approve it late, and an
        offline payment of the same tap, in the same sync, would take the
        balance below zero and flag an honest card. An answer without an
        outcome settles nothing: the record stays `unshown` for the status.
        Returns how many were settled.
        """
        unshown = {
            entry.record.seq: entry for entry in self.journal.entries(states=(State.UNSHOWN,))
        }
        settled = 0
        for result in results if unshown else []:
            seq, outcome = result.get("seq"), result.get("outcome")
            entry = unshown.get(seq) if isinstance(seq, int) else None
            if entry is None or result.get("status") not in (
                SyncStatus.APPLIED,
                SyncStatus.ALREADY_APPLIED,
            ):
                continue
            if not isinstance(outcome, dict):
                continue
            if outcome.get("outcome") == ServerOutcome.APPROVED:
                self.journal.set_state(entry.record.seq, State.APPROVED, outcome=outcome)
                self.cancel_unshown(entry.record)
            elif outcome.get("outcome") == ServerOutcome.DECLINED:
                self.journal.set_state(entry.record.seq, State.DECLINED, outcome=outcome)
            else:
                continue
            settled += 1
        return settled


def pending_in_purse_cents(pending: object, tap: CardView) -> int:
    """Other tills' top-ups that the card's purse may hold although the server's balance
    does not (`pending`: the authorise answer's or the snapshot's `pending_topups`): those
    of the till that wrote the purse, at the purse's counter (any, when the server does not
    know it). Such a write may have landed although its till saw it fail and voids it, so
    the purse is taken without them, as the server's balance is. Without this, the lower
    of the two could still count one the purse holds (docs/protocol.md)."""
    if tap.purse is None or not isinstance(pending, list | tuple):
        return 0
    cents = 0
    for write in pending:
        if not isinstance(write, dict):
            continue
        amount = write.get("amount_cents")
        if (
            type(write.get("terminal_id")) is int
            and write["terminal_id"] == tap.purse.terminal_id
            and write.get("counter") in (None, tap.purse.counter)
            and type(amount) is int
            and amount > 0
        ):
            cents += amount
    return cents


def _log_write_failure(what: str, exc: Exception) -> None:
    """A refused or torn write is expected (a card pulled away); anything else is a bug in
    the card layer, logged with its traceback, and still only a failed write: nothing is
    shown approved that the card may not hold."""
    if isinstance(exc, HCardError | ValueError):
        log.info("%s (%s)", what, exc)
    else:
        log.error("%s (unexpected %s)", what, type(exc).__name__, exc_info=exc)


def _holds(tap: CardView, counter: object, purse_cents: object, terminal_id: int) -> bool:
    """Does the card hold exactly the purse this till tried to write (`counter`,
    `purse_cents`)?"""
    return (
        tap.purse is not None
        and tap.purse.terminal_id == terminal_id
        and tap.counter == counter
        and tap.purse.balance_cents == purse_cents
    )


def _card_facts(tap: CardView) -> CardFacts:
    """What the offline decision and the repair read of a tap."""
    return CardFacts(
        card_number=tap.card_number,
        counter=tap.counter,
        purse_cents=None if tap.purse is None else tap.purse.balance_cents,
        purse_terminal_id=None if tap.purse is None else tap.purse.terminal_id,
        purse_code=tap.purse_code,
    )


def _code(value: object) -> Code:
    try:
        return Code(value) if isinstance(value, str) else Code.INTERNAL_ERROR
    except ValueError:
        return Code.INTERNAL_ERROR
