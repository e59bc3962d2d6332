"""The journal's signed checkpoint: what lets a till start without checking a year again.

At start-up the journal used to check every signature of every record: a busy year is
about 70,000 Ed25519 verifications, and the start grew with the till's age. Whenever the
server acknowledges records (`Journal.mark_acked`), the journal now signs, in the same
durable transaction, a checkpoint of the acknowledged head with the till's own key:

- `seq`, `hash`: the last acknowledged record and its hash (the chain's link);
- `digest`: a running SHA-256 over the exact stored bytes of every record up to `seq`
  (`digest_over`), so a changed, swapped or re-signed record before the checkpoint is
  still noticed at start at the cost of one SHA-256 of a few hundred bytes per record
  (about 1 µs; an Ed25519 verification is about 60 µs), without parsing any record;
- `created_s`: when (the till's clock, for support).

At start the journal checks the checkpoint's signature, the record at `seq` against
`hash`, the digest over the rows before it, and signatures and links only after it
(`Journal.verify`). No count or sum is kept in it: the bookkeeping the limits, receipts
and day close read (`local`) stays in the journal, and the chain itself is the count.

The signed bytes carry a field no record has (`checkpoint`), so a checkpoint's signature
can never pass as a record's, nor the other way round.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hcard import keys
from hcard.encoding import canonical_bytes

#: The digest before the first record.
DIGEST_START = "0" * 64
_VERSION = 1


def digest_over(start_hex: str, wires: list[bytes]) -> str:
    """The running digest (hex) from `start_hex` over `wires`, in order: each step is the
    SHA-256 of the digest before and one record's exact stored bytes."""
    digest = bytes.fromhex(start_hex)
    for wire in wires:
        digest = hashlib.sha256(digest + wire).digest()
    return digest.hex()


@dataclass(frozen=True)
class Checkpoint:
    terminal_id: int
    seq: int
    hash: str
    digest: str
    created_s: int
    sig: str = ""

    def signed_bytes(self) -> bytes:
        return canonical_bytes(
            {
                "checkpoint": _VERSION,
                "terminal_id": self.terminal_id,
                "seq": self.seq,
                "hash": self.hash,
                "digest": self.digest,
                "created_s": self.created_s,
            }
        )

    def signed(self, key: Ed25519PrivateKey) -> Checkpoint:
        signature = keys.sign(key, self.signed_bytes()).hex()
        return Checkpoint(
            self.terminal_id, self.seq, self.hash, self.digest, self.created_s, signature
        )

    def signature_ok(self, public: Ed25519PublicKey) -> bool:
        try:
            signature = bytes.fromhex(self.sig)
        except ValueError:
            return False
        return keys.verify(public, self.signed_bytes(), signature)
