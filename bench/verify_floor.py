"""The floor of every ingest bench: cryptography's raw Ed25519 verify rate on EVERY core.

A sync checks every record's signature, so the server can ingest at most as fast as the
machine verifies; the benches report their ingest against this rate measured in the same
run (`verify_all_cores_per_s`), so the ratio holds on any machine. One process per core
(`os.cpu_count()`), all at once, each calling `Ed25519PublicKey.verify` on the records'
own bytes for a fixed time; their rates summed.
"""

from __future__ import annotations

import multiprocessing
import os
import time

#: how long each measurement runs on every core
VERIFY_S = 3.0

#: (public key raw bytes, signed bytes, signature)
Message = tuple[bytes, bytes, bytes]


def _verify_for(job: tuple[list[Message], float]) -> float:
    """Verifications per second in this process for `seconds` (a worker of the pool)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    messages, seconds = job
    checks = [(Ed25519PublicKey.from_public_bytes(p), m, s) for p, m, s in messages]
    done = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for public, message, signature in checks:
            public.verify(signature, message)
        done += len(checks)
    return done / elapsed


def verify_all_cores(messages: list[Message], seconds: float = VERIFY_S) -> float:
    """The machine's raw verify rate: one process per core, all at once, summed."""
    cores = os.cpu_count() or 1
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.map(_verify_for, [(messages[:10], 0.2)] * cores)  # started and warm
        return sum(pool.map(_verify_for, [(messages, seconds)] * cores))
