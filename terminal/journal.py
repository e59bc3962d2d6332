"""The terminal's journal: signed, hash-chained records in SQLite, append-only.

Every payment, void, top-up request and day close becomes a `hcard.records`
record with the terminal's next sequence number, the hash of the record before
it and an Ed25519 signature by the terminal key. The journal is the terminal's
memory of what it promised: a payment that the till showed as approved must be
in it, whatever instant the power goes.

Why these SQLite settings:
- WAL: the sync agent reads (and marks acknowledgements) while the till writes;
  readers never block the writer, and a crash mid-write leaves the last commit.
- `PRAGMA synchronous=FULL`: in WAL mode `NORMAL` does not fsync at each
  commit, so after a power loss the last commits can roll back although the
  cashier was already shown "approved". `FULL` fsyncs the WAL at every commit:
  once `append` returns, the record survives a power cut. (One commit is
  deliberately made without: the intent of an offline payment, which the
  durable `final` commit after it carries to the disk; see `_tx`.)
- `wal_autocheckpoint=0`: checkpoints (with their own fsyncs) run in the sync
  agent's thread (`checkpoint`) and at close, not inside a payment's commit.

Tables:
- `records`: insert-only. `seq` and the record's exact wire bytes (canonical
  JSON with the signature), nothing else: what is checked is what is stored.
- `head`: one row, the last seq and hash, written in the same transaction as
  every record. It is how a truncated journal (the newest records cut off) is
  noticed: the chain alone cannot tell a short journal from a truncated one.
- `meta`: the terminal id this journal belongs to (a copied journal of another
  terminal is refused) and the sync state (acknowledged up to seq).
- `local`: mutable bookkeeping per record that is not signed and never leaves
  the terminal: the payment's progress (intent, approved, final, voided, ...),
  whether the card was written, the (server-corrected) wall-clock day. It is
  what the restart recovery and the offline limits read. Its rows are never archived.
- `chain_checkpoint`: one row, the signed checkpoint of the acknowledged chain, written
  with each ack (`hcard.terminal.checkpoint`): the start checks signatures only after it.
- `archive`: acknowledged records up to the last acknowledged day close, moved out of
  `records` into compressed chunks, never deleted (`hcard.terminal.archive`).

Receipt numbers (`local.receipt_no`): what the cashier sees, and voids by, is
not the seq. A failed online try, a decline, a cancelled card write, a void
and a day close each use up a seq, so seqs shown as receipt numbers skipped
(1, 3, ...). A payment or top-up gets the next receipt number (highest + 1)
in the same transaction that makes it `final`, the commit that is fsynced
before the till shows "approved": a number is given only to what the till
shows, and once shown it never changes (it is only ever set where it is
NULL). Numbers run on over day closes for the life of the journal. They are
local bookkeeping: the signed records and the protocol keep the seq.
A journal made before receipt numbers is given them once, when it is opened:
its shown payments and top-ups keep the number they were shown with (their
seq), and new numbers continue after its last seq (`receipt_base`), so no
number the old version showed (a void's seq too) is given again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import keys
from hcard.chain import ChainProblem, first_problem
from hcard.encoding import canonical_bytes
from hcard.errors import Code, HCardError
from hcard.records import GENESIS_HASH, PaymentMode, Record, RecordError, RecordKind, make_record
from hcard.terminal import archive as ar
from hcard.terminal.checkpoint import DIGEST_START, Checkpoint, digest_over
from hcard.terminal.offline import CardPayment
from hcard.terminal.states import SHOWN, TRANSITIONS, check_start, check_transition
from hcard.terminal.states import State as State  # the journal's API speaks of it (jr.State)

# What gets a receipt number once shown: payments and top-ups.
RECEIPT_KINDS = (RecordKind.PAYMENT, RecordKind.TOPUP_REQUEST)
# States a record may still leave without the cashier (the restart recovery, the sync
# agent): such a record, and all after it, stay out of the archive.
UNSETTLED = tuple(state for state, moves in TRANSITIONS.items() if moves and state not in SHOWN)
_STATES = {state.value: state for state in State}
_MODES = {mode.value: mode for mode in PaymentMode}


def decode(wire: bytes) -> Record:
    """A stored record from its exact wire bytes (canonical JSON in UTF-8, `records.wire`):
    the one way the journal reads a record back. Raises ValueError (not UTF-8, not JSON)
    or RecordError (not a well-formed record)."""
    return Record.from_wire(json.loads(bytes(wire).decode("utf-8")))


@dataclass(frozen=True)
class Entry:
    """One journalled record with its local bookkeeping."""

    record: Record
    state: State | None  # None for voids and day closes
    card_written: bool
    day: str
    created_s: float
    outcome: dict[str, Any] | None
    receipt_no: int | None = None  # set once the till showed it approved (payments, top-ups)


@dataclass(frozen=True)
class TopupWrite:
    """The purse write a till top-up tried on its card (`Journal.note_topup_write`)."""

    card: str
    seq: int
    counter: int
    purse_cents: int


class Journal:
    """The journal of one terminal. Thread-safe: one connection behind a lock.

    The lock is held for each SQLite transaction only, never during network or
    card I/O, so the sync agent can never block the till for longer than one
    small commit.
    """

    def __init__(self, path: Path, terminal_id: int, key: Ed25519PrivateKey) -> None:
        self.path = path
        self.terminal_id = terminal_id
        self._key = key
        self._public = key.public_key()
        self._lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db = sqlite_utils.Database(connection)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA wal_autocheckpoint=0")  # see the module docstring
        self._create()
        self._check_owner()

    # ----------------------------------------------------------------- set-up
    def _create(self) -> None:
        with self._tx():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, wire BLOB NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS head (id INTEGER PRIMARY KEY CHECK (id = 1),"
                " seq INTEGER NOT NULL, hash TEXT NOT NULL)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS local (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
                " card TEXT, state TEXT, card_written INTEGER NOT NULL DEFAULT 0,"
                " day TEXT NOT NULL, created_s REAL NOT NULL, outcome TEXT,"
                " mode TEXT, counter INTEGER, amount_cents INTEGER, receipt_no INTEGER)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS local_card ON local (card, day)")
            # a year's bookkeeping stays here (`archive`): what the start, each sync
            # round, each void and day close look for must not scan it. (No index on
            # `kind` alone: it would win over `local_card` in `card_payments`, ORDER BY seq.)
            self._db.execute("CREATE INDEX IF NOT EXISTS local_state ON local (state, seq)")
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS local_day_close ON local (seq)"
                f" WHERE kind = '{RecordKind.DAY_CLOSE.value}'"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS chain_checkpoint (id INTEGER PRIMARY KEY"
                " CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL,"
                " digest TEXT NOT NULL, created_s INTEGER NOT NULL, sig TEXT NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS archive (first_seq INTEGER PRIMARY KEY,"
                " last_seq INTEGER NOT NULL, first_prev TEXT NOT NULL,"
                " last_hash TEXT NOT NULL, digest TEXT NOT NULL, data BLOB NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS tap_counters"
                " (uid TEXT PRIMARY KEY, counter INTEGER NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS topup_writes (card TEXT PRIMARY KEY,"
                " seq INTEGER NOT NULL UNIQUE, counter INTEGER NOT NULL,"
                " purse_cents INTEGER NOT NULL)"
            )
            self._add_receipt_numbers()
            self._db.execute(
                "CREATE UNIQUE INDEX IF NOT EXISTS local_receipt ON local (receipt_no)"
                " WHERE receipt_no IS NOT NULL"
            )
            self._db.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('terminal_id', ?)",
                [str(self.terminal_id)],
            )
            self._db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('acked_seq', '0')")
            self._db.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('public_key', ?)",
                [keys.public_hex(self._key)],
            )
            self._db.execute(
                "INSERT OR IGNORE INTO head (id, seq, hash) VALUES (1, 0, ?)", [GENESIS_HASH]
            )

    def _add_receipt_numbers(self) -> None:
        """Give a journal from before receipt numbers its column, once (module docstring).

        In the set-up transaction, so two processes opening the same old journal
        (the app and a CLI command) cannot both add it.
        """
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(local)").fetchall()}
        if "receipt_no" in columns:
            return
        self._db.execute("ALTER TABLE local ADD COLUMN receipt_no INTEGER")
        kinds, shown = ",".join("?" * len(RECEIPT_KINDS)), ",".join("?" * len(SHOWN))
        self._db.execute(
            f"UPDATE local SET receipt_no = seq WHERE kind IN ({kinds})"  # noqa: S608
            f" AND state IN ({shown})",
            [*RECEIPT_KINDS, *SHOWN],
        )
        self._db.execute(
            "INSERT OR REPLACE INTO meta (name, value)"
            " SELECT 'receipt_base', CAST(coalesce(max(seq), 0) AS TEXT) FROM records"
        )

    def _number(self, seq: int) -> None:
        """Give record `seq` the next receipt number if it is a shown payment or top-up.

        Inside the caller's transaction: the number is committed together with
        the state that shows the payment. Never changes a number once given.
        """
        kinds, shown = ",".join("?" * len(RECEIPT_KINDS)), ",".join("?" * len(SHOWN))
        self._db.execute(
            "UPDATE local SET receipt_no = max("  # noqa: S608
            # IS NOT NULL: max() from the partial index, not a scan of a year's rows
            " coalesce((SELECT max(receipt_no) FROM local WHERE receipt_no IS NOT NULL), 0),"
            " coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'receipt_base'), 0)"
            f") + 1 WHERE seq = ? AND receipt_no IS NULL AND kind IN ({kinds})"
            f" AND state IN ({shown})",
            [seq, *RECEIPT_KINDS, *SHOWN],
        )

    def _check_owner(self) -> None:
        owner = self._meta("terminal_id")
        public = self._meta("public_key")
        if owner != str(self.terminal_id) or public != keys.public_hex(self._key):
            raise HCardError(Code.JOURNAL_FOREIGN, journal_terminal=owner, path=str(self.path))

    @contextmanager
    def _tx(self, durable: bool = True) -> Iterator[None]:
        """One IMMEDIATE transaction under the lock; committed (and fsynced) on exit.

        `durable=False` commits without the fsync (`synchronous=NORMAL` for
        this one commit): the transaction is atomic and survives a crash of the
        process, but a power cut may take it back, together with whatever else
        is not yet fsynced. The next durable commit fsyncs the WAL, and with it
        every commit before it: WAL frames reach the disk in order.
        """
        with self._lock:
            if not durable:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")

    def _meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", [name]).fetchone()
        return None if row is None else row[0]

    def checkpoint(self) -> None:
        """Copy the WAL into the database file, on a connection of its own.

        PASSIVE: it never waits for the till; what it cannot copy now it copies
        next time.
        """
        with sqlite3.connect(self.path, isolation_level=None) as connection:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        connection.close()

    def close(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.conn.close()

    # ----------------------------------------------------------- verification
    def verify(self, *, full: bool = False) -> ChainProblem | None:
        """The first problem in the stored chain, or None when it is intact.

        With a signed checkpoint (`hcard.terminal.checkpoint`) and not `full`: its
        signature, the record at its seq against its hash, the running digest over the
        exact bytes of the rows before it (one SHA-256 each, no parsing), and signatures
        and links only after it; so the start costs the same in the third year as in the
        first week. Whenever that finds something, the full check runs to name the first
        bad seq. Without a checkpoint (a journal from before it, or nothing acknowledged
        yet) or with `full`: each stored record's bytes (parse, then
        `hcard.chain.first_problem` for terminal id, sequence, link and signature). Both
        check that the rows continue the archive (`archive`, checked in full only by
        `verify_archive`) and that the chain ends where `head` says (truncation).
        """
        with self._lock:
            rows = self._db.execute("SELECT seq, wire FROM records ORDER BY seq").fetchall()
            head = self._db.execute("SELECT seq, hash FROM head").fetchone()
            base = self._base()
            checkpoint = self._chain_checkpoint()
        base_seq, base_hash, _digest = base
        if checkpoint is None or full:
            return self._chain_problem(rows, base_seq, base_hash, head)
        problem = self._verify_after(checkpoint, rows, base, head)
        if problem is None:
            return None
        return self._chain_problem(rows, base_seq, base_hash, head) or problem

    def _chain_problem(
        self, rows: list[tuple[int, bytes]], after_seq: int, after_hash: str, head: tuple[int, str]
    ) -> ChainProblem | None:
        """The first problem of `rows` as a chain after (`after_seq`, `after_hash`): a
        record unreadable, a signature or link wrong (on every core: without a checkpoint
        this may be a year's records), or the chain not ending at `head`."""
        records, problem = self._parse(rows, after_seq, after_hash)
        if problem is not None:
            return problem
        problem = first_problem(
            records,
            self._public,
            self.terminal_id,
            after_seq=after_seq,
            after_hash=after_hash,
            workers=os.cpu_count() or 1,
        )
        return problem or _head_problem(records, (after_seq, after_hash), head)

    def _verify_after(
        self,
        checkpoint: Checkpoint,
        rows: list[tuple[int, bytes]],
        base: tuple[int, str, str],
        head: tuple[int, str],
    ) -> ChainProblem | None:
        """The checkpoint's part of `verify`: None when all holds, else a problem."""
        base_seq, base_hash, base_digest = base
        c = checkpoint.seq
        if checkpoint.terminal_id != self.terminal_id or not checkpoint.signature_ok(self._public):
            return ChainProblem(c, Code.BAD_SIGNATURE, "checkpoint signature does not verify")
        last_seq = rows[-1][0] if rows else base_seq
        if c > last_seq:
            return ChainProblem(
                last_seq + 1, Code.CHAIN_GAP, f"journal truncated: checkpoint at seq {c}"
            )
        if c < base_seq:
            return ChainProblem(c, Code.JOURNAL_CORRUPT, "checkpoint before the archive's end")
        if [seq for seq, _wire in rows] != list(range(base_seq + 1, last_seq + 1)):
            return ChainProblem(base_seq + 1, Code.CHAIN_GAP, "rows not consecutive")
        before = [bytes(wire) for _seq, wire in rows[: c - base_seq]]
        if digest_over(base_digest, before) != checkpoint.digest:
            return ChainProblem(c, Code.JOURNAL_CORRUPT, "records up to the checkpoint changed")
        try:
            hash_at_c = decode(before[-1]).hash if before else base_hash
        except (ValueError, RecordError) as exc:
            return ChainProblem(c, Code.JOURNAL_CORRUPT, f"record unreadable: {exc}")
        if hash_at_c != checkpoint.hash:
            return ChainProblem(c, Code.JOURNAL_CORRUPT, "checkpoint does not match its record")
        return self._chain_problem(rows[c - base_seq :], c, checkpoint.hash, head)

    def _parse(
        self, rows: list[tuple[int, bytes]], after_seq: int, after_hash: str
    ) -> tuple[list[Record], ChainProblem | None]:
        """The records of `rows`, or those before the first unreadable one and its problem
        (a chain problem before it wins: it is the first)."""
        parsed: list[Record] = []
        for expected_seq, (_seq, wire) in enumerate(rows, start=after_seq + 1):
            try:
                record = decode(wire)
            except (ValueError, RecordError) as exc:  # JSONDecodeError and UnicodeError too
                problem = first_problem(
                    parsed, self._public, self.terminal_id, after_seq, after_hash
                )
                return parsed, problem or ChainProblem(
                    expected_seq, Code.JOURNAL_CORRUPT, f"record unreadable: {exc}"
                )
            parsed.append(record)
        return parsed, None

    def verify_archive(self) -> ChainProblem | None:
        """The first problem in the archive, or None: every chunk opened, every record's
        signature and link checked, the chunks' stored facts (first and last seq, first
        `prev`, last hash, running digest) against their content, and the chain from the
        last chunk into the live journal (or to `head` when nothing is live). Slow on
        purpose (a year is ~70,000 verifications): a command for support, not the start."""
        with self._lock:
            chunks = self._db.execute(
                "SELECT first_seq, last_seq, first_prev, last_hash, digest, data"
                " FROM archive ORDER BY first_seq"
            ).fetchall()
            live = self._db.execute("SELECT seq, wire FROM records ORDER BY seq LIMIT 1").fetchone()
            head = self._db.execute("SELECT seq, hash FROM head").fetchone()
        after_seq, after_hash, digest = 0, GENESIS_HASH, DIGEST_START
        for first_seq, last_seq, first_prev, last_hash, chunk_digest, data in chunks:
            if first_seq != after_seq + 1:
                return ChainProblem(after_seq + 1, Code.CHAIN_GAP, "archive chunks not consecutive")
            try:
                wires = ar.unpack(data)
            except zlib.error as exc:
                return ChainProblem(
                    first_seq, Code.JOURNAL_CORRUPT, f"archive chunk unreadable: {exc}"
                )
            if len(wires) != last_seq - first_seq + 1:
                return ChainProblem(first_seq, Code.JOURNAL_CORRUPT, "archive chunk incomplete")
            records, problem = self._parse(
                list(enumerate(wires, start=first_seq)), after_seq, after_hash
            )
            problem = problem or first_problem(
                records,
                self._public,
                self.terminal_id,
                after_seq=after_seq,
                after_hash=after_hash,
                workers=os.cpu_count() or 1,
            )
            if problem is not None:
                return problem
            digest = digest_over(digest, wires)
            if (records[0].prev, records[-1].hash, digest) != (first_prev, last_hash, chunk_digest):
                return ChainProblem(first_seq, Code.JOURNAL_CORRUPT, "archive chunk facts differ")
            after_seq, after_hash = last_seq, last_hash
        if live is not None:
            try:
                record = decode(live[1])
            except (ValueError, RecordError) as exc:
                return ChainProblem(live[0], Code.JOURNAL_CORRUPT, f"record unreadable: {exc}")
            return first_problem([record], self._public, self.terminal_id, after_seq, after_hash)
        if chunks and tuple(head) != (after_seq, after_hash):
            return ChainProblem(after_seq + 1, Code.CHAIN_GAP, "head does not follow the archive")
        return None

    # ------------------------------------------------------------ checkpoint
    def _chain_checkpoint(self) -> Checkpoint | None:
        row = self._db.execute(
            "SELECT seq, hash, digest, created_s, sig FROM chain_checkpoint"
        ).fetchone()
        return None if row is None else Checkpoint(self.terminal_id, *row)

    def chain_checkpoint(self) -> Checkpoint | None:
        """The signed checkpoint of the acknowledged chain (module `checkpoint`), if any."""
        with self._lock:
            return self._chain_checkpoint()

    def _base(self) -> tuple[int, str, str]:
        """Where the live journal starts: the archive's last (seq, hash, running digest),
        or the chain's beginning."""
        row = self._db.execute(
            "SELECT last_seq, last_hash, digest FROM archive ORDER BY first_seq DESC LIMIT 1"
        ).fetchone()
        return (0, GENESIS_HASH, DIGEST_START) if row is None else (row[0], row[1], row[2])

    def _sign_checkpoint(self, seq: int) -> None:
        """Inside the caller's transaction: sign a checkpoint at `seq` (never backwards).

        The running digest goes on from the previous checkpoint (or the archive's end)
        over the rows after it: each row is hashed once in the journal's life.
        """
        current = self._chain_checkpoint()
        from_seq, from_hash, from_digest = (
            (current.seq, current.hash, current.digest) if current else self._base()
        )
        if seq <= from_seq:  # never backwards, nor into the archive
            return
        rows = self._db.execute(
            "SELECT seq, wire FROM records WHERE seq > ? AND seq <= ? ORDER BY seq",
            [from_seq, seq],
        ).fetchall()
        if [row[0] for row in rows] != list(range(from_seq + 1, seq + 1)):
            raise HCardError(Code.JOURNAL_CORRUPT, seq=seq, detail="checkpoint over missing rows")
        wires = [bytes(wire) for _seq, wire in rows]
        checkpoint = Checkpoint(
            self.terminal_id,
            seq,
            decode(wires[-1]).hash if wires else from_hash,
            digest_over(from_digest, wires),
            int(time.time()),
        ).signed(self._key)
        self._db.execute(
            "INSERT OR REPLACE INTO chain_checkpoint (id, seq, hash, digest, created_s, sig)"
            " VALUES (1, ?, ?, ?, ?, ?)",
            [
                checkpoint.seq,
                checkpoint.hash,
                checkpoint.digest,
                checkpoint.created_s,
                checkpoint.sig,
            ],
        )

    def ensure_checkpoint(self) -> None:
        """After a full `verify` of a journal without a checkpoint (one from before them):
        sign one at the acknowledged seq, so the next start checks only what came after."""
        if self.chain_checkpoint() is not None or self.acked_seq() == 0:
            return  # no write transaction at an ordinary start
        with self._tx():
            self._sign_checkpoint(int(self._meta("acked_seq") or 0))

    # --------------------------------------------------------------- archive
    def archive(self) -> int:
        """Move the records `archive.archive_upto` allows into compressed chunks; returns
        how many moved. One durable transaction per chunk: the chunk is inserted and its
        rows deleted together, so a power cut leaves one or the other, never neither."""
        moved = 0
        while True:
            with self._tx():
                count = self._archive_chunk()
            if count == 0:
                return moved
            moved += count

    def _archive_chunk(self) -> int:
        checkpoint = self._chain_checkpoint()
        if checkpoint is None:
            return 0
        acked = int(self._meta("acked_seq") or 0)
        day_close = self._db.execute(
            "SELECT max(seq) FROM local WHERE kind = ? AND seq <= ?",
            [RecordKind.DAY_CLOSE, min(acked, checkpoint.seq)],
        ).fetchone()[0]
        marks = ",".join("?" * len(UNSETTLED))
        first_open = self._db.execute(
            f"SELECT min(seq) FROM local WHERE state IN ({marks})",  # noqa: S608
            list(UNSETTLED),
        ).fetchone()[0]
        upto = ar.archive_upto(
            acked_seq=acked,
            checkpoint_seq=checkpoint.seq,
            day_close_seq=day_close or 0,
            first_open_seq=first_open,
        )
        base_seq, base_hash, base_digest = self._base()
        last = min(upto, base_seq + ar.CHUNK_RECORDS)
        if last <= base_seq:
            return 0
        rows = self._db.execute(
            "SELECT seq, wire FROM records WHERE seq > ? AND seq <= ? ORDER BY seq",
            [base_seq, last],
        ).fetchall()
        if [row[0] for row in rows] != list(range(base_seq + 1, last + 1)):
            raise HCardError(
                Code.JOURNAL_CORRUPT, seq=base_seq + 1, detail="archive over missing rows"
            )
        wires = [bytes(wire) for _seq, wire in rows]
        first_record, last_record = decode(wires[0]), decode(wires[-1])
        if first_record.prev != base_hash:
            raise HCardError(Code.CHAIN_FORK, seq=first_record.seq, detail="archive")
        self._db.execute(
            "INSERT INTO archive (first_seq, last_seq, first_prev, last_hash, digest, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                base_seq + 1,
                last,
                first_record.prev,
                last_record.hash,
                digest_over(base_digest, wires),
                ar.pack(wires),
            ],
        )
        self._db.execute("DELETE FROM records WHERE seq > ? AND seq <= ?", [base_seq, last])
        return len(wires)

    def archive_size(self) -> tuple[int, int]:
        """(records, chunks) in the archive."""
        with self._lock:
            row = self._db.execute(
                "SELECT coalesce(sum(last_seq - first_seq + 1), 0), count(*) FROM archive"
            ).fetchone()
        return int(row[0]), int(row[1])

    def _archived_wires(self, seqs: Iterable[int]) -> dict[int, bytes]:
        """The exact wire bytes of archived records, by seq (each chunk opened once)."""
        found: dict[int, bytes] = {}
        first, last = 0, -1
        wires: list[bytes] = []
        for seq in sorted(set(seqs)):
            if not first <= seq <= last:
                row = self._db.execute(
                    "SELECT first_seq, last_seq, data FROM archive"
                    " WHERE first_seq <= ? AND last_seq >= ?",
                    [seq, seq],
                ).fetchone()
                if row is None:
                    continue
                first, last = row[0], row[1]
                try:
                    wires = ar.unpack(row[2])
                except zlib.error as exc:
                    raise HCardError(Code.JOURNAL_CORRUPT, seq=first, detail=str(exc)) from None
                if len(wires) != last - first + 1:
                    raise HCardError(Code.JOURNAL_CORRUPT, seq=first, detail="archive chunk")
            found[seq] = wires[seq - first]
        return found

    # ---------------------------------------------------------------- writing
    def append(
        self,
        kind: RecordKind,
        body: dict[str, Any],
        *,
        state: State | None,
        day: str,
        created_s: float,
        card_written: bool = False,
        durable: bool = True,
        counter: int | None = None,
    ) -> Record:
        """Sign `body` as the next record and commit it (fsync) before returning.

        A payment or top-up starts in a state of `states.START`, any other record
        without one (`STATE_TRANSITION_REFUSED` otherwise). Only the intent of an
        offline payment is appended with `durable=False` (see
        `hcard.terminal.payment`): nobody outside the terminal has seen it before
        the `final` commit, which is durable and carries it to the disk. `counter`: the
        purse counter a record that does not carry one stands for (a top-up's write),
        kept beside it (`topup_counter_floor`).
        """
        with self._tx(durable):
            return self._append(kind, body, state, day, created_s, card_written, counter)

    def _append(
        self,
        kind: RecordKind,
        body: dict[str, Any],
        state: State | None,
        day: str,
        created_s: float,
        card_written: bool,
        counter: int | None = None,
    ) -> Record:
        check_start(kind, state)
        head_seq, head_hash = self._db.execute("SELECT seq, hash FROM head").fetchone()
        record = make_record(self._key, self.terminal_id, head_seq + 1, head_hash, kind, body)
        self._db.execute(
            "INSERT INTO records (seq, wire) VALUES (?, ?)",
            [record.seq, canonical_bytes(record.to_wire())],
        )
        self._db.execute("UPDATE head SET seq = ?, hash = ?", [record.seq, record.hash])
        self._db.execute(
            "INSERT INTO local (seq, kind, card, state, card_written, day, created_s,"
            " mode, counter, amount_cents) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                record.seq,
                kind,
                body.get("card"),
                state,
                int(card_written),
                day,
                created_s,
                body.get("mode"),
                body.get("counter", counter),
                body.get("amount_cents"),
            ],
        )
        return record

    def set_state(
        self,
        seq: int,
        state: State,
        *,
        outcome: dict[str, Any] | None = None,
        card_written: bool | None = None,
        durable: bool = True,
    ) -> None:
        """Move a record to `state`; one that becomes shown gets its receipt number (`finish`).

        Only a move that `states.TRANSITIONS` lists: anything else raises
        `HCardError(STATE_TRANSITION_REFUSED)` and changes nothing.
        """
        with self._tx(durable):
            self._set_state(seq, state, outcome, card_written)

    def _set_state(
        self, seq: int, state: State, outcome: dict[str, Any] | None, card_written: bool | None
    ) -> None:
        self._move(seq, state)
        if outcome is not None:
            self._db.execute(
                "UPDATE local SET outcome = ? WHERE seq = ?", [json.dumps(outcome), seq]
            )
        if card_written is not None:
            self._db.execute(
                "UPDATE local SET card_written = ? WHERE seq = ?", [int(card_written), seq]
            )
        if state in SHOWN:
            self._number(seq)

    def finish(self, seq: int, *, outcome: dict[str, Any] | None = None) -> int:
        """Mark a payment or top-up `final` (card written) and return its receipt number.

        One durable commit: the state, and the number the till then shows, are
        on the disk before the result is returned.
        """
        with self._tx():
            self._set_state(seq, State.FINAL, outcome, True)
            self._db.execute("DELETE FROM topup_writes WHERE seq = ?", [seq])  # shown: kept
            row = self._db.execute("SELECT receipt_no FROM local WHERE seq = ?", [seq]).fetchone()
        if row is None or row[0] is None:
            raise ValueError(f"seq {seq} is not a payment or top-up of this journal")
        return int(row[0])

    def void(
        self, seq: int, body: dict[str, Any], *, day: str, created_s: float, state: State
    ) -> Record:
        """Append a void record for payment `seq` and move the payment to `state` (`voided`
        or `cancelled`), atomically; refused like `set_state`."""
        with self._tx():
            self._move(seq, state)
            return self._append(RecordKind.VOID, body, None, day, created_s, False)

    def _move(self, seq: int, state: State) -> None:
        """Inside the caller's transaction: check the move against the table, then make it."""
        row = self._db.execute("SELECT state FROM local WHERE seq = ?", [seq]).fetchone()
        check_transition(seq, None if row is None or row[0] is None else State(row[0]), state)
        self._db.execute("UPDATE local SET state = ? WHERE seq = ?", [state, seq])

    def mark_acked(self, seq: int) -> None:
        """The server has the records up to `seq` (never moves backwards).

        In the same durable transaction, the chain up to `seq` gets a signed checkpoint
        (`checkpoint`): a power cut keeps both or neither.
        """
        with self._tx():
            if seq > self.acked_seq():
                self._db.execute("UPDATE meta SET value = ? WHERE name = 'acked_seq'", [str(seq)])
            self._sign_checkpoint(seq)

    def rewind_acked(self, seq: int, *, expected: int | None = None) -> None:
        """The server holds only up to `seq` (restored from a backup): send the rest again.

        With `expected`, only while the acknowledged seq is still that: a payment's answer
        names the head the server had when it decided, and the sync agent may have moved
        the acknowledgement since (`Payments._ask`)."""
        with self._tx():
            acked = self.acked_seq()
            if seq < acked and expected in (None, acked):
                self._db.execute("UPDATE meta SET value = ? WHERE name = 'acked_seq'", [str(seq)])

    def restored_before(self, chain_head: tuple[int, str]) -> bool:
        """The server's head of our chain (beside a snapshot or an authorisation answer) is
        before what it once acknowledged, and on our chain: a server restored from a backup."""
        seq, head_hash = chain_head
        return seq < self.acked_seq() and self.hash_of(seq) == head_hash

    def hash_of(self, seq: int) -> str | None:
        """The hash of our record `seq` (`GENESIS_HASH` for 0), None when there is none;
        from the archive when it was archived."""
        if seq == 0:
            return GENESIS_HASH
        with self._lock:
            row = self._db.execute("SELECT wire FROM records WHERE seq = ?", [seq]).fetchone()
            wire = self._archived_wires([seq]).get(seq) if row is None else row[0]
        return None if wire is None else decode(wire).hash

    def set_meta(self, name: str, value: str) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [name, value],
            )

    def get_meta(self, name: str) -> str | None:
        with self._lock:
            return self._meta(name)

    # ------------------------------------------------------------ top-up writes
    def note_topup_write(self, write: TopupWrite) -> None:
        """The purse write a top-up is about to try on its card (durable, before the write):
        the card's last one replaces any earlier; `finish` drops it
        (`Payments.take_back_unshown_topup`)."""
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO topup_writes (card, seq, counter, purse_cents)"
                " VALUES (?, ?, ?, ?)",
                [write.card, write.seq, write.counter, write.purse_cents],
            )

    def topup_write(self, card: str) -> TopupWrite | None:
        """The write the card's last top-up here tried and never showed, if it is kept."""
        with self._lock:
            row = self._db.execute(
                "SELECT card, seq, counter, purse_cents FROM topup_writes WHERE card = ?", [card]
            ).fetchone()
        return None if row is None else TopupWrite(*row)

    def drop_topup_write(self, card: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM topup_writes WHERE card = ?", [card])

    # ------------------------------------------------------- NTAG 424 tap counters
    def tap_counter(self, uid_hex: str) -> int | None:
        """The highest tap counter this till saw on the NTAG 424 DNA `uid_hex`, None if never.

        The chip counts every tap and never back; a lower one is a restored copy
        (`hcard.ntag424.require_newer_counter`).
        """
        with self._lock:
            row = self._db.execute(
                "SELECT counter FROM tap_counters WHERE uid = ?", [uid_hex]
            ).fetchone()
        return None if row is None else int(row[0])

    def note_tap_counter(self, uid_hex: str, counter: int) -> None:
        """Keep the highest counter seen. Not fsynced: a power cut that takes the last one
        back only weakens the check for one tap, and a tap must not wait for the disk."""
        with self._tx(durable=False):
            self._db.execute(
                "INSERT INTO tap_counters (uid, counter) VALUES (?, ?) ON CONFLICT(uid)"
                " DO UPDATE SET counter = MAX(counter, excluded.counter)",
                [uid_hex, counter],
            )

    # ---------------------------------------------------------------- reading
    def acked_seq(self) -> int:
        with self._lock:
            return int(self._meta("acked_seq") or 0)

    def last_seq(self) -> int:
        with self._lock:
            return self._db.execute("SELECT seq FROM head").fetchone()[0]

    def last_day_close_seq(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT max(seq) FROM local WHERE kind = ?", [RecordKind.DAY_CLOSE]
            ).fetchone()
        return row[0] or 0

    def unsent(self, limit: int) -> list[Record]:
        """Records after the acknowledged one, in order, at most `limit`.

        Never one at or after a payment still being decided: an online one waiting for its
        answer (`intent`), which the server would take, unauthorised, as declined, and the
        till would then be told "declined" for a payment it is approving; an offline one
        whose card write is under way (`approved`), which the server could not yet be told
        was shown (`shown`), nor the cancelled one's void sent with it.
        """
        with self._lock:
            acked = int(self._meta("acked_seq") or 0)
            waiting = self._db.execute(
                "SELECT min(seq) FROM local WHERE state IN (?, ?)", [State.INTENT, State.APPROVED]
            ).fetchone()[0]
            before = waiting or 2**63 - 1
            # only after a server restored to before the archive: from the archive first
            base_seq = self._base()[0]
            wires = list(
                self._archived_wires(
                    range(acked + 1, min(base_seq + 1, before, acked + 1 + limit))
                ).values()
            )
            rows = self._db.execute(
                "SELECT wire FROM records WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?",
                [acked, before, limit - len(wires)],
            ).fetchall()
        return [decode(wire) for wire in [*wires, *(row[0] for row in rows)]]

    def recorded_s(self, first_seq: int, last_seq: int) -> dict[int, int]:
        """When this till journalled records `first_seq` .. `last_seq`: whole epoch seconds of
        its own clock (`created_s`, corrected by the offset learnt from the server, so it may
        still be wrong), for the sync request's unsigned `recorded_s` (docs/protocol.md). A
        time the server would refuse (below 0, above 2**63 - 1) is left out."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, created_s FROM local WHERE seq BETWEEN ? AND ?", [first_seq, last_seq]
            ).fetchall()
        return {
            seq: int(created_s)
            for seq, created_s in rows
            if isinstance(created_s, int | float) and 0 <= created_s < 2**63
        }

    def shown_seqs(self, first_seq: int, last_seq: int) -> set[int]:
        """The seqs from `first_seq` to `last_seq` of records shown as approved (`SHOWN`)."""
        marks = ",".join("?" * len(SHOWN))
        with self._lock:
            rows = self._db.execute(
                f"SELECT seq FROM local WHERE state IN ({marks}) AND seq BETWEEN ? AND ?",  # noqa: S608
                [*SHOWN, first_seq, last_seq],
            ).fetchall()
        return {seq for (seq,) in rows}

    def unsent_count(self) -> int:
        with self._lock:
            return self.last_seq() - self.acked_seq()

    def entry(self, seq: int) -> Entry | None:
        entries = self._entries("WHERE l.seq = ?", [seq])
        return entries[0] if entries else None

    def by_receipt(self, receipt_no: int) -> Entry | None:
        """The payment or top-up the till showed under `receipt_no`, or None."""
        entries = self._entries("WHERE l.receipt_no = ?", [receipt_no])
        return entries[0] if entries else None

    def entries(self, *, after_seq: int = 0, states: tuple[State, ...] = ()) -> list[Entry]:
        clauses = ["l.seq > ?"]
        params: list[Any] = [after_seq]
        if states:
            clauses.append(f"l.state IN ({','.join('?' * len(states))})")
            params.extend(states)
        where = "WHERE " + " AND ".join(clauses)
        return self._entries(where, params)

    def card_payments(self, card: str) -> list[CardPayment]:
        """This terminal's payments of one card, from the bookkeeping table only.

        Read at every tap, so it parses no record: the few fields the offline
        decision needs are kept beside each record when it is appended.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, mode, counter, amount_cents, state, day FROM local"
                " WHERE card = ? AND kind = ? ORDER BY seq",
                [card, RecordKind.PAYMENT],
            ).fetchall()
        # read at every tap, a row per payment of the card: dict lookups, not Enum calls
        return [
            CardPayment(seq, _MODES[mode], counter, amount_cents, _STATES[state], day)
            for seq, mode, counter, amount_cents, state, day in rows
        ]

    def topup_counter_floor(self, card: str) -> int:
        """The highest purse counter this till's top-ups of `card` named (0: none): never used
        again, since the server keeps a top-up's counter as a write the card may hold."""
        with self._lock:
            row = self._db.execute(
                "SELECT max(counter) FROM local WHERE card = ? AND kind = ?",
                [card, RecordKind.TOPUP_REQUEST],
            ).fetchone()
        return int(row[0] or 0)

    def unsettled_topups_cents(self, card: str) -> int:
        """Top-ups of `card` the server may still count although the till never showed them.

        `unshown` ones (the server may have approved them) and `cancelled` ones whose
        void the server has not acknowledged: until the void arrives, the server's
        balance of the card includes them, so a purse written from that balance
        must leave them out. Read before asking the server, this errs low only.
        A void is read from the archive too: after a server restored from a backup,
        `acked_seq` may be back before the archive's end.
        """
        with self._lock:
            acked = int(self._meta("acked_seq") or 0)
            topups = self._db.execute(
                "SELECT seq, amount_cents, state FROM local WHERE card = ? AND kind = ?"
                " AND state IN (?, ?)",
                [card, RecordKind.TOPUP_REQUEST, State.UNSHOWN, State.CANCELLED],
            ).fetchall()
            if not any(state == State.CANCELLED for _seq, _amount, state in topups):
                return sum(amount for _seq, amount, _state in topups)
            voids = self._db.execute(
                "SELECT l.seq, r.wire FROM local l LEFT JOIN records r ON r.seq = l.seq"
                " WHERE l.card = ? AND l.kind = ? AND l.seq > ?",
                [card, RecordKind.VOID, acked],
            ).fetchall()
            archived = self._archived_wires(seq for seq, wire in voids if wire is None)
        voided = {
            decode(archived[seq] if wire is None else wire).body["voids_seq"]
            for seq, wire in voids
            if wire is not None or seq in archived
        }
        return sum(
            amount for seq, amount, state in topups if state == State.UNSHOWN or seq in voided
        )

    def _entries(self, where: str, params: list[Any]) -> list[Entry]:
        """Records with their bookkeeping; an archived record's bytes come from its chunk
        (the bookkeeping row stays in `local`), so old receipts and history still read."""
        # `where` is built from fixed fragments only; every value is a bound parameter.
        sql = (
            "SELECT l.seq, r.wire, l.state, l.card_written, l.day, l.created_s,"  # noqa: S608
            " l.outcome, l.receipt_no"
            f" FROM local l LEFT JOIN records r ON r.seq = l.seq {where} ORDER BY l.seq"
        )
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
            archived = self._archived_wires(row[0] for row in rows if row[1] is None)
        missing = [row[0] for row in rows if row[1] is None and row[0] not in archived]
        if missing:
            raise HCardError(Code.JOURNAL_CORRUPT, seq=missing[0], detail="record not found")
        return [
            Entry(
                record=decode(archived[seq] if wire is None else wire),
                state=None if state is None else State(state),
                card_written=bool(written),
                day=day,
                created_s=created_s,
                outcome=json.loads(outcome) if outcome else None,
                receipt_no=receipt_no,
            )
            for seq, wire, state, written, day, created_s, outcome, receipt_no in rows
        ]


def _head_problem(
    records: list[Record], after: tuple[int, str], head: tuple[int, str]
) -> ChainProblem | None:
    """Does the chain end where `head` says? (Truncation: the chain alone cannot tell a
    short journal from a truncated one.) `after`: (seq, hash) before `records`."""
    head_seq, head_hash = head
    last_seq = records[-1].seq if records else after[0]
    last_hash = records[-1].hash if records else after[1]
    if head_seq > last_seq:
        return ChainProblem(
            last_seq + 1, Code.CHAIN_GAP, f"journal truncated: head says seq {head_seq}"
        )
    if (head_seq, head_hash) != (last_seq, last_hash):
        return ChainProblem(head_seq, Code.JOURNAL_CORRUPT, "head does not match last record")
    return None


def open_verified(path: Path, terminal_id: int, key: Ed25519PrivateKey) -> Journal:
    """Open the journal and refuse it when its chain is broken (`JOURNAL_CORRUPT` etc.).

    A terminal must not keep appending to a damaged chain: the server would
    refuse everything after the damage. The error names the first bad seq so
    that support can compare with the server's copy.
    """
    journal = Journal(path, terminal_id, key)
    problem = journal.verify()
    if problem is not None:
        journal.close()
        raise HCardError(problem.code, seq=problem.seq, detail=problem.detail)
    journal.ensure_checkpoint()  # a journal from before checkpoints: verified in full once
    return journal
