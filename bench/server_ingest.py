"""Journal ingest through the real HTTP sync endpoint, against the raw Ed25519 verify rate.

Starts a real `hcard-server` (uvicorn subprocess, SQLite in a temporary
folder), enrols one terminal, issues cards, and signs N offline payment
records in advance (the till's work, not timed). Then:
- `verify_all_cores_per_s`: Ed25519 verifications per second of those records'
  bytes on every core at once (`bench/verify_floor.py`, one process per core;
  the machine's raw rate, same run, the mean of a run just before and one just
  after the ingest), and `verify_per_s` the same in this one process (one core);
- `ingest_per_s`: records per second through `POST /v1/terminal/sync` in
  batches of 1000, each record signature-checked, chain-checked and booked
  (journal row, ledger transaction with two postings, balances);
- `ratio` = ingest / verify on all cores (issue 13's target: at least 0.7), and
  `ratio_one_core` = ingest / one core's verify (issue 9's figure);
- `server_cpu_us_per_record`: the server process's CPU time (user + system,
  `bench/proc_cpu.py`) during the ingest per record: it holds on a busy machine, where
  the rates follow the other load.
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures.server import start_server
from proc_cpu import cpu_s
from verify_floor import verify_all_cores

from hcard import keys
from hcard.encoding import canonical_bytes

RECORDS = 20_000
BATCH = 1_000
CARDS = 200


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hcard-bench-") as tmp:
        server = start_server(Path(tmp))
        try:
            till = server.terminal()
            cards = [server.new_card(1_000_000) for _ in range(CARDS)]
            records = [
                till.payment(
                    cards[i % CARDS][0],
                    cards[i % CARDS][1],
                    100 + i % 900,
                    mode="offline",
                    counter=i + 1,
                )
                for i in range(RECORDS)
            ]
            bodies = [
                canonical_bytes({"records": [r.to_wire() for r in records[i : i + BATCH]]})
                for i in range(0, RECORDS, BATCH)
            ]

            messages = [(r.signed_bytes(), bytes.fromhex(r.sig)) for r in records]
            public = till.key.public_key()
            raw = public.public_bytes_raw()
            floor = [(raw, message, signature) for message, signature in messages[:1000]]

            def verify_rate() -> float:
                started = time.perf_counter()
                for message, signature in messages:
                    assert keys.verify(public, message, signature)
                return len(messages) / (time.perf_counter() - started)

            # measured before and after the ingest run and averaged: the machine is shared,
            # so its speed drifts while the benchmark runs
            verify_before = verify_rate()
            all_before = verify_all_cores(floor)
            till.snapshot(0)  # warm the connection
            cpu_before = cpu_s(server.process.pid)
            started = time.perf_counter()
            for body in bodies:
                response = till.signed("POST", "/v1/terminal/sync", body)
                assert response.status_code == 200, response.text[:500]
                assert response.json()["results"][-1]["status"] == "applied"
            ingest_per_s = RECORDS / (time.perf_counter() - started)
            cpu_after = cpu_s(server.process.pid)
            verify_per_s = (verify_before + verify_rate()) / 2
            all_cores_per_s = (all_before + verify_all_cores(floor)) / 2
            assert server.staff.ledger_check()["ok"]
        finally:
            server.stop()
    result = {
        "records": RECORDS,
        "batch": BATCH,
        "ingest_per_s": round(ingest_per_s, 1),
        "verify_all_cores_per_s": round(all_cores_per_s, 1),
        "verify_per_s": round(verify_per_s, 1),
        "ratio": round(ingest_per_s / all_cores_per_s, 3),
        "ratio_one_core": round(ingest_per_s / verify_per_s, 3),
        "server_cpu_us_per_record": None
        if cpu_before is None or cpu_after is None
        else round((cpu_after - cpu_before) / RECORDS * 1e6, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
