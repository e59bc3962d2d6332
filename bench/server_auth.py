"""Online authorisations from 50 concurrent terminals against the real server (SQLite).

Starts a real `hcard-server` (uvicorn subprocess, SQLite in a temporary
folder), enrols 50 terminals and gives each its own funded card. 50 threads,
one per terminal, send signed authorisations (sign request + record, HTTP
round trip, the server's decision, booking and fsync'd commit).

Two runs, both reported:
- paced (the figures `auth_per_s`, `auth_p50_ms`, `auth_p99_ms`; target p99
  under 50 ms): each terminal pays at random intervals averaging
  `PACE_MEAN_S` (exponential), i.e. 50 tills each paying every half second,
  some 40 times busier than a till at a queue of customers. Latency is
  measured from just before the request is signed to the parsed answer.
- saturated (`max_auth_per_s`, `max_p50_ms`, `max_p99_ms`): every terminal
  sends back to back with no pause. This is the capacity of the machine
  (client and server share its cores); latency there is queueing, about
  50 / capacity by Little's law, not service time.
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.server import start_server

TERMINALS = 50
PACED_PER_TERMINAL = 40
PACE_MEAN_S = 0.5
SATURATED_PER_TERMINAL = 15
WARMUP = 2


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="hcard-bench-") as tmp:
        server = start_server(Path(tmp))
        try:
            merchant_id = server.staff.create_merchant("Benchmark GmbH")
            tills = [server.terminal(merchant_id, f"Kasse {i}") for i in range(TERMINALS)]
            cards = [server.new_card(1_000_000) for _ in range(TERMINALS)]
            counters = [0] * TERMINALS

            def run_all(count: int, pace_s: float) -> tuple[list[float], float]:
                barrier = threading.Barrier(TERMINALS)

                def run(index: int) -> list[float]:
                    till, (card, uid) = tills[index], cards[index]
                    rng = random.Random(index)
                    latencies = []
                    barrier.wait(timeout=120)
                    for n in range(WARMUP + count):
                        if pace_s:
                            time.sleep(rng.expovariate(1 / pace_s))
                        counters[index] += 1
                        started = time.perf_counter()
                        record = till.payment(card, uid, 100, counter=counters[index])
                        response = till.authorise(record)
                        outcome = response.json()
                        elapsed = time.perf_counter() - started
                        assert response.status_code == 200, response.text
                        assert outcome["outcome"] == "approved", response.text
                        if n >= WARMUP:
                            latencies.append(elapsed * 1000)
                    return latencies

                started = time.perf_counter()
                with ThreadPoolExecutor(max_workers=TERMINALS) as pool:
                    per_terminal = list(pool.map(run, range(TERMINALS)))
                wall_s = time.perf_counter() - started
                return sorted(x for xs in per_terminal for x in xs), wall_s

            paced, paced_s = run_all(PACED_PER_TERMINAL, PACE_MEAN_S)
            saturated, saturated_s = run_all(SATURATED_PER_TERMINAL, 0)
            assert server.staff.ledger_check()["ok"]
        finally:
            server.stop()
    result = {
        "terminals": TERMINALS,
        "pace_mean_s": PACE_MEAN_S,
        "auth_per_s": round(TERMINALS * (WARMUP + PACED_PER_TERMINAL) / paced_s, 1),
        "auth_p50_ms": _pct(paced, 50),
        "auth_p99_ms": _pct(paced, 99),
        "max_auth_per_s": round(TERMINALS * (WARMUP + SATURATED_PER_TERMINAL) / saturated_s, 1),
        "max_p50_ms": _pct(saturated, 50),
        "max_p99_ms": _pct(saturated, 99),
    }
    print(json.dumps(result))


def _pct(sorted_ms: list[float], percent: int) -> float:
    if percent == 50:
        return round(statistics.median(sorted_ms), 2)
    return round(sorted_ms[max(0, int(len(sorted_ms) * percent / 100) - 1)], 2)


if __name__ == "__main__":
    main()
