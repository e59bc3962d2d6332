"""Checking a terminal's hash chain: where is the first record that is not right?

Both sides use this one function: the terminal on its own journal at start-up
(a flipped byte, a deleted or reordered row), the server on every uploaded
batch. It answers with the first bad sequence number and why, never a bare
False, so that what is reported can be acted on.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hcard.errors import Code
from hcard.records import GENESIS_HASH, Record

#: Below this many records a thread pool costs more than it saves.
PARALLEL_MIN_RECORDS = 64


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    code: Code
    detail: str


def _signatures_ok(records: Sequence[Record], public: Ed25519PublicKey, workers: int) -> list[bool]:
    """Every record's signature check, spread over `workers` threads.

    Ed25519 verification in `cryptography` releases the GIL, so the checks
    (most of the CPU time of a sync) really run side by side on several cores.
    """
    size = -(-len(records) // workers)
    chunks = [records[start : start + size] for start in range(0, len(records), size)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
        checked = pool.map(lambda chunk: [r.signature_ok(public) for r in chunk], chunks)
        return [ok for chunk in checked for ok in chunk]


def first_problem(
    records: Sequence[Record],
    public: Ed25519PublicKey,
    terminal_id: int,
    after_seq: int = 0,
    after_hash: str = GENESIS_HASH,
    workers: int = 1,
) -> ChainProblem | None:
    """Return the first problem in `records` continuing from (after_seq, after_hash).

    Checks in order for each record: terminal id, sequence continuity (a gap),
    the link to the previous hash (a fork), the signature. With `workers` > 1
    and a long batch, the signatures are checked up front on that many threads;
    the answer is the same as with one.
    """
    parallel = workers > 1 and len(records) >= PARALLEL_MIN_RECORDS
    signatures = _signatures_ok(records, public, workers) if parallel else None
    expected_seq, expected_prev = after_seq + 1, after_hash
    for index, record in enumerate(records):
        if record.terminal_id != terminal_id:
            return ChainProblem(expected_seq, Code.JOURNAL_FOREIGN, "record of another terminal")
        if record.seq != expected_seq:
            return ChainProblem(
                expected_seq, Code.CHAIN_GAP, f"expected seq {expected_seq}, got {record.seq}"
            )
        if record.prev != expected_prev:
            return ChainProblem(record.seq, Code.CHAIN_FORK, "prev does not match previous hash")
        signature_ok = signatures[index] if signatures else record.signature_ok(public)
        if not signature_ok:
            return ChainProblem(record.seq, Code.BAD_SIGNATURE, "signature does not verify")
        expected_seq, expected_prev = record.seq + 1, record.hash
    return None
