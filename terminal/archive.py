"""The journal's archive: old acknowledged records, kept compressed and verifiable.

Pure: which records may go (`archive_upto`) and how a chunk is packed. The journal
(`Journal.archive`) moves them: per chunk, in ONE durable SQLite transaction, it inserts
the chunk into the `archive` table and deletes its rows from `records`, so a power cut
leaves either the rows or the chunk, never neither and never a half. Nothing is ever
deleted from the archive.

A chunk is the exact signed wire bytes of consecutive records (canonical JSON, which
never holds a raw newline), joined by newlines and zlib-compressed, with its first and
last seq, the `prev` of its first record, the hash of its last, and the journal's running
digest (`checkpoint.digest_over`) after its last record: the live journal continues from
there at start-up without opening a chunk. `Journal.verify_archive`
(`hcard-terminal verify-journal`) checks every chunk in full: every signature,
the chain across chunks and into the live journal, the stored facts.

Which records may go: only what can no longer change and no reader of the day needs.
- acknowledged by the server and covered by the signed checkpoint;
- up to the last such day close: the cashier voids only since the last day close
  (`void_too_late` before it), so a `final` payment there is final for good, and the
  day's list and the day close read only what came after it;
- before the first record whose state may still move without the cashier (`intent`,
  `approved`, `unshown`: the restart recovery and the sync agent settle those).
So the live journal holds the current business day and what the server has not yet
acknowledged, and the start checks as much in the third year as in the first week. The
bookkeeping row of each record (`local`: state, card, day, amount, receipt number) stays in
the journal, so the offline limits, receipts by number and the counters read it as before;
a reader that needs an archived record's signed bytes (an old receipt, a server restored
from a backup that needs records again) gets them from its chunk
(`Journal._archived_wires`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

#: Records per chunk at most: a day of a busy till; a chunk opened to read one record
#: costs a few milliseconds.
CHUNK_RECORDS = 1000
_SEPARATOR = b"\n"
_LEVEL = 6


def archive_upto(
    *, acked_seq: int, checkpoint_seq: int, day_close_seq: int, first_open_seq: int | None
) -> int:
    """The highest seq that may be archived (0: none), by the rules of the module docstring.

    `day_close_seq`: the last day close at or before min(acked, checkpoint), 0 if none;
    `first_open_seq`: the first record in a state that may still move without the
    cashier, None when there is none.
    """
    upto = day_close_seq if day_close_seq <= min(acked_seq, checkpoint_seq) else 0
    if first_open_seq is not None:
        upto = min(upto, first_open_seq - 1)
    return max(upto, 0)


def pack(wires: Sequence[bytes]) -> bytes:
    """The compressed chunk of these records' exact wire bytes."""
    if any(_SEPARATOR in wire for wire in wires):
        raise ValueError("a record's wire bytes hold a newline: not canonical JSON")
    return zlib.compress(_SEPARATOR.join(wires), _LEVEL)


def unpack(data: bytes) -> list[bytes]:
    """The records' wire bytes of a chunk, in order. Raises zlib.error when damaged."""
    return zlib.decompress(data).split(_SEPARATOR)
