"""Online authorisations from 50 concurrent terminals against the real server.

Starts a real `hcard-server` (uvicorn subprocess; SQLite in a temporary folder, or a fresh
database in the PostgreSQL cluster of `--database-url`), enrols 50 terminals of one
merchant (every payment moves the same merchant account) and gives each its own funded
card. 50 threads, one per terminal, send signed authorisations (sign request + record,
HTTP round trip, the server's decision, booking and durable commit).

Two runs, both reported, so that the figures hold on any machine:
- capacity first (`capacity_per_s`, `capacity_p50_ms`, `capacity_p99_ms`): every
  terminal sends back to back with no pause. This is the capacity of the machine (client
  and server share its cores); latency there is queueing, about 50 / capacity by
  Little's law, not service time. Beside it what one authorisation cost in CPU there
  (`bench/proc_cpu.py`): the server process (`server_cpu_ms_per_auth`), this client
  (`client_cpu_ms_per_auth`), everything else on the machine (`other_cpu_ms_per_auth`:
  PostgreSQL's processes and the kernel, and whatever else runs beside: read it on a quiet
  machine), and what all the cores this bench may use could
  authorise at that cost (`cpu_ceiling_per_s`, cores / the machine's CPU per
  authorisation): capacity stays below it where one process (the server's GIL) is the
  limit, and reaches toward it where the machine's cores are.
- then paced at half of that measured capacity (`paced_per_s`, and the figures
  `auth_per_s`, `auth_p50_ms`, `auth_p99_ms`; target p99 under 50 ms): for as long as
  each terminal needs for `--paced-per-terminal` payments on average, each is a Poisson
  source of `paced_per_s / 50` payments a second (exponential gaps, open loop: the
  schedule does not wait for the answers). A payment's latency runs from its scheduled
  moment (a till still busy with its previous one sends late, and that lateness counts)
  to the parsed answer; `auth_per_s` is what was paid in that time.
The 50 tills are threads of this one process, where real tills are 50 machines: the
client's cyclic garbage collector is off while they pay (`_client_gc_off`, as `timeit`
does), or one collection of the client's heap (46-75 ms, seen in the paced run) stops
all fifty at once and counts as every waiting payment's latency. The server's collector
runs as it does in service.
The last line of stdout is one JSON object.

For PostgreSQL, point `--database-url` at a durable cluster (fsync and
`synchronous_commit` on, as SQLite runs with `synchronous=FULL`), e.g. one made with
`initdb -D DIR -U hcard -A trust` and `pg_ctl -D DIR -o "-p 5433 -c max_connections=200" start`:
`--database-url postgresql+psycopg://hcard@127.0.0.1:5433/hcard`. The bench creates its own
database there (`CREATE DATABASE`) and drops it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.server import ServerInfo, fresh_postgres_database, start_server
from proc_cpu import cpu_s, machine_busy_s

TERMINALS = 50
PACED_PER_TERMINAL = 40
CAPACITY_PER_TERMINAL = 15
WARMUP = 2
#: the paced run offers this share of the measured capacity
PACED_SHARE = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL URL (default: SQLite)")
    parser.add_argument("--terminals", type=int, default=TERMINALS)
    parser.add_argument("--paced-per-terminal", type=int, default=PACED_PER_TERMINAL)
    parser.add_argument("--capacity-per-terminal", type=int, default=CAPACITY_PER_TERMINAL)
    args = parser.parse_args()
    database_url = None
    if args.database_url:
        database_url = fresh_postgres_database(args.database_url)
    try:
        with tempfile.TemporaryDirectory(prefix="hcard-bench-") as tmp:
            server = start_server(Path(tmp), database_url)
            try:
                result = _measure(server, args)
            finally:
                server.stop()
    finally:
        if database_url:
            _drop(args.database_url, database_url)
    print(json.dumps(result))


def _measure(server: ServerInfo, args: argparse.Namespace) -> dict[str, object]:
    terminals = args.terminals
    merchant_id = server.staff.create_merchant("Benchmark GmbH")
    tills = [server.terminal(merchant_id, f"Kasse {i}") for i in range(terminals)]
    cards = [server.new_card(1_000_000) for _ in range(terminals)]
    counters = [0] * terminals

    def pay(index: int) -> float:
        """One authorisation; its latency in ms from now."""
        till, (card, uid) = tills[index], cards[index]
        counters[index] += 1
        started = time.perf_counter()
        record = till.payment(card, uid, 100, counter=counters[index])
        response = till.authorise(record)
        outcome = response.json()
        assert response.status_code == 200, response.text
        assert outcome["outcome"] == "approved", response.text
        return (time.perf_counter() - started) * 1000

    for index in range(terminals):  # warm up: connections, the server's first requests
        for _ in range(WARMUP):
            pay(index)

    def back_to_back(index: int) -> list[float]:
        return [pay(index) for _ in range(args.capacity_per_terminal)]

    cpu_before = _cpu(server)
    capacity, capacity_s = _all_tills(terminals, back_to_back)
    cpu_per_auth = _cpu_ms_per_auth(cpu_before, _cpu(server), len(capacity))
    capacity_per_s = len(capacity) / capacity_s
    paced_per_s = capacity_per_s * PACED_SHARE
    mean_gap_s = terminals / paced_per_s
    paced_s = args.paced_per_terminal * mean_gap_s

    def paced(index: int) -> list[float]:
        rng = random.Random(index)
        latencies = []
        start = time.perf_counter()
        due = start + rng.expovariate(1 / mean_gap_s)
        while due < start + paced_s:
            late_ms = 0.0
            wait_s = due - time.perf_counter()
            if wait_s > 0:
                time.sleep(wait_s)
            else:
                late_ms = -wait_s * 1000
            latencies.append(late_ms + pay(index))
            due += rng.expovariate(1 / mean_gap_s)
        return latencies

    auth, _wall_s = _all_tills(terminals, paced)
    assert server.staff.ledger_check()["ok"]
    return {
        "engine": server.engine,
        "terminals": terminals,
        "capacity_per_s": round(capacity_per_s, 1),
        "capacity_p50_ms": _pct(capacity, 50),
        "capacity_p99_ms": _pct(capacity, 99),
        **cpu_per_auth,
        "paced_per_s": round(paced_per_s, 1),
        "auth_per_s": round(len(auth) / paced_s, 1),
        "auth_p50_ms": _pct(auth, 50),
        "auth_p99_ms": _pct(auth, 99),
    }


def _all_tills(terminals: int, run: Callable[[int], list[float]]) -> tuple[list[float], float]:
    """Run `run(index)` for every till at once; all latencies sorted, and the wall time."""
    with _client_gc_off():
        return _run_tills(terminals, run)


@contextlib.contextmanager
def _client_gc_off() -> Iterator[None]:
    """This process's cyclic garbage collector off (what exists now frozen out of it): the
    tills are its threads, and a collection would stop them all at once."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def _run_tills(terminals: int, run: Callable[[int], list[float]]) -> tuple[list[float], float]:
    barrier = threading.Barrier(terminals + 1)

    def start(index: int) -> list[float]:
        barrier.wait(timeout=120)
        return run(index)

    with ThreadPoolExecutor(max_workers=terminals) as pool:
        futures = [pool.submit(start, index) for index in range(terminals)]
        barrier.wait(timeout=120)
        started = time.perf_counter()
        per_terminal = [future.result() for future in futures]
        wall_s = time.perf_counter() - started
    return sorted(x for xs in per_terminal for x in xs), wall_s


def _cpu(server: ServerInfo) -> tuple[float | None, float | None, float]:
    """CPU seconds so far: (the server process, the machine's cores, this client)."""
    client = os.times()
    return cpu_s(server.process.pid), machine_busy_s(), client.user + client.system


def _cpu_ms_per_auth(
    before: tuple[float | None, float | None, float],
    after: tuple[float | None, float | None, float],
    payments: int,
) -> dict[str, float]:
    """The CPU of one authorisation between two `_cpu` readings, by where it ran, and the
    rate all cores could keep at that cost; nothing where /proc was not there to read."""
    (server_0, machine_0, client_0), (server_1, machine_1, client_1) = before, after
    if None in (server_0, server_1, machine_0, machine_1):
        return {}
    server_ms = (cast(float, server_1) - cast(float, server_0)) * 1000 / payments
    machine_ms = (cast(float, machine_1) - cast(float, machine_0)) * 1000 / payments
    client_ms = (client_1 - client_0) * 1000 / payments
    return {
        "server_cpu_ms_per_auth": round(server_ms, 2),
        "client_cpu_ms_per_auth": round(client_ms, 2),
        "other_cpu_ms_per_auth": round(machine_ms - server_ms - client_ms, 2),
        "cpu_ceiling_per_s": round(len(os.sched_getaffinity(0)) * 1000 / machine_ms, 1),
    }


def _drop(admin_url: str, database_url: str) -> None:
    name = sa.make_url(database_url).database
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _pct(sorted_ms: list[float], percent: int) -> float:
    if percent == 50:
        return round(statistics.median(sorted_ms), 2)
    return round(sorted_ms[max(0, int(len(sorted_ms) * percent / 100) - 1)], 2)


if __name__ == "__main__":
    main()
