"""The till's workload for the power-cut test, run once under the tracer (shim.c).

    python -m powercut.till_workload FOLDER

A till's first start (the journal created) and a business day through the real payment
logic (`Payments`: online approved and declined, no answer then offline, offline, a card
write that fails, a void, a day close), acknowledgements (each signs a checkpoint of the
chain), a WAL checkpoint, the archive of the acknowledged day, one more payment, the close;
every journal call is the one the till makes. The server and the card are stand-ins at
the two edges the journal never sees (`ScriptedServer`, `CardOnReader`): what they answer
only picks the path. After each result the till would show, a line goes into the marker
file (`replay.MARKERS`) through the same tracer, so it is ordered with the writes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from powercut.replay import MARKERS

from hcard.errors import Code, HCardError
from hcard.records import Outcome as ServerOutcome
from hcard.records import Record, RecordKind
from hcard.terminal import journal as jr
from hcard.terminal.card.model import CardView, Purse
from hcard.terminal.client import AuthoriseAnswer, Clock, ServerUnreachableError
from hcard.terminal.offline import Limits
from hcard.terminal.payment import Link, Payments, day_of
from hcard.terminal.snapshot import CardKnown, SnapshotState, SnapshotStore
from hcard.terminal.till import Outcome, PaymentResult

TERMINAL_ID = 42
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
CARD = "9276000000000016"  # a valid card number (fixtures.terminal.JOURNAL_CARD)
UID = bytes.fromhex("04a1b2c3d4e5f6")
JOURNAL = "journal.sqlite"
UNREACHABLE = "unreachable"  # ScriptedServer.next: no answer in time


class ScriptedServer:
    """The server's answer to `authorise`, one per online try, from a script."""

    def __init__(self) -> None:
        self.next: str = ServerOutcome.APPROVED
        self.balance_cents = 10_000

    def authorise(self, record: Record, write_counter: int | None = None) -> AuthoriseAnswer:
        if self.next == UNREACHABLE:
            raise ServerUnreachableError("no answer in time")
        if self.next == ServerOutcome.DECLINED:
            declined = {"seq": record.seq, "outcome": "declined", "code": "insufficient_funds"}
            return AuthoriseAnswer(declined, None)
        self.balance_cents -= record.body["amount_cents"]
        approved = {"seq": record.seq, "outcome": "approved", "balance_cents": self.balance_cents}
        return AuthoriseAnswer(approved, None)


class CardOnReader:
    """The card: keeps the purse written; `fail_next` makes the next write fail (pulled away)."""

    def __init__(self) -> None:
        self.purse: Purse | None = None  # never written
        self.fail_next = False

    def write_purse(self, purse: Purse, key: Ed25519PrivateKey) -> None:
        if self.fail_next:
            self.fail_next = False
            raise HCardError(Code.CARD_UNREADABLE)
        self.purse = purse

    def tap(self) -> CardView:
        counter = 0 if self.purse is None else self.purse.counter
        return CardView(CARD, UID, "NTAG215", None, self.purse, counter)


def payments(journal: jr.Journal, folder: Path, server: Any) -> Payments:
    """The till's payment logic over `journal`, as `TerminalTill` builds it."""
    snapshot = SnapshotStore(folder / "snapshot.json", KEY.public_key())
    snapshot.state = SnapshotState(
        limits=Limits(per_payment_cents=5_000, per_card_day_cents=50_000, consecutive_offline=20),
        balances={CARD: CardKnown(10_000, 0)},
    )
    return Payments(journal, snapshot, server, Clock(), Link(), KEY)


def main() -> int:
    folder = Path(sys.argv[1])
    markers = os.open(folder / MARKERS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def shown(line: str) -> None:
        os.write(markers, f"{line}\n".encode())

    def pay(amount_cents: int) -> PaymentResult:
        before = journal.last_seq()
        result = till.pay(card, card.tap(), amount_cents, 0)
        approved = result.seq if result.outcome == Outcome.APPROVED else None
        for seq in range(before + 1, journal.last_seq() + 1):
            entry = journal.entry(seq)
            if entry is not None and entry.record.kind == RecordKind.PAYMENT and seq != approved:
                shown(f"declined {seq}")  # a try the till did not show as approved
        if approved is not None:
            shown(f"approved {approved} {result.receipt_no}")
        return result

    journal = jr.open_verified(folder / JOURNAL, TERMINAL_ID, KEY)
    server = ScriptedServer()
    till = payments(journal, folder, server)
    till.recover()
    card = CardOnReader()
    journal.note_tap_counter(UID.hex(), 7)  # an NTAG 424's tap counter: not fsynced
    for amount_cents in (100, 250, 399):
        pay(amount_cents)  # online, approved
    server.next = ServerOutcome.DECLINED
    pay(120)  # online, declined
    server.next = UNREACHABLE
    pay(500)  # online try without an answer (unshown), then offline
    for amount_cents in (75, 180):
        pay(amount_cents)  # offline (the link is down)
    card.fail_next = True
    pay(60)  # offline, the card write fails: cancelled
    till.link.ok()
    server.next = ServerOutcome.APPROVED
    second = pay(220)  # online again
    voided = till.void(second.receipt_no or 0)
    shown(f"voided {second.receipt_no} {voided.seq}")
    journal.mark_acked(4)
    journal.checkpoint()  # the WAL into the database file
    pay(90)  # after the checkpoint: into the WAL again
    now_s = till.clock.now_s()
    close = journal.append(
        RecordKind.DAY_CLOSE,
        {"count": 9, "sum_cents": 0, "void_count": 1, "void_sum_cents": 220, "offline_count": 3},
        state=None,
        day=day_of(now_s),
        created_s=now_s,
    )
    shown(f"record {close.seq}")
    # the sync agent's round: the server's answer settles the unanswered try, the ack signs
    # a checkpoint, the acknowledged day goes into the archive (`SyncAgent.run_once`)
    unanswered = [e.record.seq for e in journal.entries(states=(jr.State.UNSHOWN,))]
    declined = {"outcome": "declined", "code": "payment_not_found"}
    till.settle_unshown([{"seq": s, "status": "applied", "outcome": declined} for s in unanswered])
    journal.mark_acked(close.seq)
    shown(f"acked {close.seq}")
    shown(f"archived {journal.archive()}")  # as `SyncAgent.run_once` calls it
    pay(140)  # after the archive
    journal.close()
    shown("closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
