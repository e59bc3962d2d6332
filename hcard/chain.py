"""Checking a terminal's hash chain: where is the first record that is not right?

Both sides use this one function: the terminal on its own journal at start-up
(a flipped byte, a deleted or reordered row), the server on every uploaded
batch. It answers with the first bad sequence number and why, never a bare
False, so that what is reported can be acted on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hcard.errors import Code
from hcard.records import GENESIS_HASH, Record


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    code: Code
    detail: str


def first_problem(
    records: Iterable[Record],
    public: Ed25519PublicKey,
    terminal_id: int,
    after_seq: int = 0,
    after_hash: str = GENESIS_HASH,
) -> ChainProblem | None:
    """Return the first problem in `records` continuing from (after_seq, after_hash).

    Checks in order for each record: terminal id, sequence continuity (a gap),
    the link to the previous hash (a fork), the signature.
    """
    expected_seq, expected_prev = after_seq + 1, after_hash
    for record in records:
        if record.terminal_id != terminal_id:
            return ChainProblem(expected_seq, Code.JOURNAL_FOREIGN, "record of another terminal")
        if record.seq != expected_seq:
            return ChainProblem(
                expected_seq, Code.CHAIN_GAP, f"expected seq {expected_seq}, got {record.seq}"
            )
        if record.prev != expected_prev:
            return ChainProblem(record.seq, Code.CHAIN_FORK, "prev does not match previous hash")
        if not record.signature_ok(public):
            return ChainProblem(record.seq, Code.BAD_SIGNATURE, "signature does not verify")
        expected_seq, expected_prev = record.seq + 1, record.hash
    return None
