"""The sync agent: a background thread that brings the server up to date.

Each round: upload the unsent records in sequence order in batches, mark
them acknowledged (which signs the journal's checkpoint), settle online
payments whose answer never arrived by the outcome the server answers for
them (void the approved ones), then pull the snapshot and archive old
acknowledged business days (`Journal.archive`). A failed round is
retried with exponential backoff and jitter (so that fifty tills coming back
after an outage do not knock on the server in step).

Why it can never block the till: it runs in its own thread, holds the journal
lock only for single small commits, and the till never waits for it.

Why it is safe when the server applied a batch but its answer was lost: the
records are identified by (terminal, seq). Sending the same batch again gets
`already_applied` for each, which acknowledges them just as `applied` does.
A record refused for a reason (a broken chain, a bad signature) stops the
upload at that record and is kept in `last_error` for the status screen: it
will never go through by retrying, and skipping it would hide a gap.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from hcard.errors import Code, HCardError
from hcard.records import SyncStatus
from hcard.terminal.client import ServerClient, ServerUnreachableError
from hcard.terminal.journal import Journal
from hcard.terminal.payment import Link, Payments
from hcard.terminal.snapshot import SnapshotStore
from hcard.terminal.states import STATEFUL_KINDS

log = logging.getLogger(__name__)

BATCH_SIZE = 200
IDLE_INTERVAL_S = 10.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 60.0


class SyncAgent:
    def __init__(
        self,
        journal: Journal,
        payments: Payments,
        snapshot: SnapshotStore,
        client: ServerClient,
        link: Link,
        idle_interval_s: float = IDLE_INTERVAL_S,
    ) -> None:
        self.journal = journal
        self.payments = payments
        self.snapshot = snapshot
        self.client = client
        self.link = link
        self.idle_interval_s = idle_interval_s
        self.last_sync_s: float | None = None
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._round_lock = threading.Lock()
        self._send_recorded = True  # False after a server refused `recorded_s` (`_send`)
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- control
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hcard-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def wake(self) -> None:
        """Something new to upload (or the cashier pressed "sync"): run a round soon."""
        self._wake.set()

    def _run(self) -> None:
        backoff_s = BACKOFF_FIRST_S
        while not self._stop.is_set():
            try:
                self.run_once()
                backoff_s = BACKOFF_FIRST_S
                delay_s = self.idle_interval_s
            except ServerUnreachableError as exc:
                self.link.down()
                self.last_error = f"{Code.SERVER_UNREACHABLE.value}: {exc}"
                delay_s = backoff_s * random.uniform(0.5, 1.5)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
            except Exception as exc:  # keep the thread alive whatever happens; say why
                log.exception("sync round failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay_s = backoff_s * random.uniform(0.5, 1.5)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
            self._wake.wait(delay_s)
            self._wake.clear()

    # ---------------------------------------------------------------- round
    def run_once(self) -> dict[str, Any]:
        """One full round; raises ServerUnreachableError when the server is not there."""
        with self._round_lock:
            try:
                uploaded = self._upload()
            except HCardError as exc:  # refused as a whole (revoked): nothing is settled
                self.last_error = exc.code.value
                raise
            snapshot_error, chain_head = self._pull_snapshot()
            if chain_head is not None and self.journal.restored_before(chain_head):
                uploaded = self._after_restore(uploaded, chain_head[0])
            now_s = self.payments.clock.now_s()
            self.link.ok()
            self.last_sync_s = now_s
            if uploaded.get("refused") is None and snapshot_error is None:
                self.last_error = None
            # old acknowledged business days into the archive (their checkpoint was
            # signed with the ack, `Journal.mark_acked`); here, not in a payment's path
            self.journal.archive()
            self.journal.checkpoint()
            return {**uploaded, "snapshot_error": snapshot_error}

    def _upload(self) -> dict[str, Any]:
        sent, settled, rewound = 0, 0, False
        booked_refusals: list[str] = []
        while True:
            batch = self.journal.unsent(BATCH_SIZE)
            if not batch:
                refused = "; ".join(booked_refusals) or None
                return {"uploaded": sent, "resolved": settled, "refused": refused}
            answer = self._send(batch)
            if not rewound and self._server_behind(answer, batch):
                # sent again from its head; the online records the till showed as approved
                # go marked `shown`, so the server books them instead of declining them
                rewound = True
                self.journal.rewind_acked(answer["last_seq"])
                continue
            acked, refusals = self._acknowledged(answer, batch)
            if acked:
                # unanswered online records first: the void of an approved one goes in the
                # next batch. Then the ack: a crash between the two sends the batch again and
                # the server answers the same; acked first, a crash left an unanswered record
                # acked and unsettled for good, and an approved one never voided.
                settled += self.payments.settle_unshown(answer["results"])
                self.journal.mark_acked(acked)
            sent += max(0, acked - batch[0].seq + 1)
            booked_refusals += [text for seq, text in refusals if seq <= acked]
            stopped = [text for seq, text in refusals if seq > acked]
            if stopped:
                # the chain stops here (gap, fork, signature): retrying will not help,
                # skipping would hide it; it stays unsent and is shown in the status
                log.error("server refused the chain at %s", stopped[0])
                self.last_error = stopped[0]
                return {"uploaded": sent, "resolved": settled, "refused": stopped[0]}
            if acked < batch[-1].seq:
                raise ServerUnreachableError("sync answer does not cover the batch")
            for text in booked_refusals:
                log.warning("server booked a record as refused: %s", text)

    def _after_restore(self, uploaded: dict[str, Any], head: int) -> dict[str, Any]:
        """The snapshot answer says the server holds our chain only up to `head`: it was
        restored from a backup. With nothing unsent, the upload would never see it (only a
        batch's answer shows the head), so the acknowledgement goes back to the head and the
        lost records go again in this round, the shown online ones marked `shown`."""
        if uploaded.get("refused") is not None:
            return uploaded
        log.warning("server holds only up to seq %s (restored?): sending again from there", head)
        self.journal.rewind_acked(head)
        again = self._upload()
        return {
            "uploaded": uploaded["uploaded"] + again["uploaded"],
            "resolved": uploaded["resolved"] + again["resolved"],
            "refused": again["refused"],
        }

    def _send(self, batch: list[Any]) -> dict[str, Any]:
        """Upload one batch with the times the till journalled its records (`recorded_s`,
        for settlement's list of late payments) and the payments and top-ups it showed as
        approved (`shown`: a server restored from a backup taken before it approved an online
        one books it instead of declining it as never seen; a shown write is on the card, so
        the server's balance of the card may be trusted along it). A server from before these
        fields refuses the body as `malformed_request`, rather than the till stopping to
        sync: the batch goes again without `shown` (tried again with every batch: a server
        updated later must get it), then without `recorded_s` too (and every later batch of
        this agent goes without it)."""
        shown = self._shown(batch)
        recorded = (
            self.journal.recorded_s(batch[0].seq, batch[-1].seq) if self._send_recorded else {}
        )
        if shown:
            try:
                return self.client.sync(batch, recorded, shown)
            except HCardError as exc:
                if exc.code != Code.MALFORMED_REQUEST:
                    raise
                log.warning("server refused shown (%s): sending the batch without it", exc)
        if not recorded:
            return self.client.sync(batch)
        try:
            return self.client.sync(batch, recorded)
        except HCardError as exc:
            if exc.code != Code.MALFORMED_REQUEST:
                raise
            log.warning("server refused recorded_s (%s): sending the records alone", exc)
            self._send_recorded = False
            return self.client.sync(batch)

    def _shown(self, batch: list[Any]) -> list[int]:
        """The payments and top-ups of `batch` this till showed as approved: their card
        write landed (the server trusts its balance of a card only along such writes)."""
        stateful = [record.seq for record in batch if record.kind in STATEFUL_KINDS]
        if not stateful:
            return []
        shown = self.journal.shown_seqs(stateful[0], stateful[-1])
        return [seq for seq in stateful if seq in shown]

    def _server_behind(self, answer: dict[str, Any], batch: list[Any]) -> bool:
        """The server's head is before what it once acknowledged, and on our chain.

        That is a server restored from a backup: the records after its head are
        sent again (they are signed, the server applies each once), instead of
        reporting a gap that no retry could ever close.
        """
        head = answer.get("last_seq")
        if not isinstance(head, int) or isinstance(head, bool) or head >= batch[0].seq - 1:
            return False
        if head < 0 or self.journal.hash_of(head) != answer.get("last_hash"):
            return False
        log.warning("server holds only up to seq %s (restored?): sending again from there", head)
        return True

    @staticmethod
    def _acknowledged(
        answer: dict[str, Any], batch: list[Any]
    ) -> tuple[int, list[tuple[int, str]]]:
        """(highest seq of the batch the server's chain holds, refusals as (seq, text)).

        The server's `last_seq`/`last_hash` is its head of this terminal's chain:
        everything up to it is there, also a record it refused for itself (a
        void of an unknown payment), which must not be sent again. The head must
        be one of our records, same hash, or nothing is acknowledged.
        """
        by_seq = {record.seq: record for record in batch}
        try:
            head = by_seq.get(answer["last_seq"])
            acked = head.seq if head is not None and head.hash == answer["last_hash"] else 0
            refusals = [
                (result["seq"], f"seq {result['seq']}: {result.get('code')}")
                for result in answer["results"]
                if result["status"] == SyncStatus.REFUSED and result["seq"] in by_seq
            ]
        except (KeyError, TypeError) as exc:
            raise ServerUnreachableError("sync answer malformed") from exc
        return acked, refusals

    def _pull_snapshot(self) -> tuple[str | None, tuple[int, str] | None]:
        """(why the snapshot was refused or None, our chain head on the server if it said:
        also beside a refused body, whose headers are as trusted as a sync answer)."""
        chain_head = None
        try:
            # a server restored from a backup is behind `since`: it answers in full; one
            # answer however long the till was off (docs/protocol.md), checked as it came
            answer = self.client.snapshot_body(self.snapshot.since(), self.snapshot.keys_sha256())
            chain_head = answer.chain_head
            state = self.snapshot.apply_body(answer.body)
        except HCardError as exc:
            log.error("snapshot refused: %s", exc.code)
            self.last_error = exc.code.value
            return exc.code.value, chain_head
        self.payments.clock.learn(state.server_time_s)
        return None, chain_head
