"""Tap-to-result of the till's software path, against the floor of the same I/O.

    .venv/bin/python bench/terminal_tap.py [--payments 500]

Sets up a real server (uvicorn subprocess), the card emulator (subprocess) and
an enrolled terminal, then runs the terminal in a child process (so that its
peak RSS is the terminal's alone, not the harness's):
- online: `TerminalTill.pay` × N, the server authorising each over HTTP;
- offline: the same with the link down (the decision from snapshot + purse);
- floor: bare nfcpy doing the same card I/O a payment does (sense, FAST_READ of
  pages 0..103 and the config pages, READ_SIG, PWD_AUTH, the 20 page writes of
  a purse slot) plus one fsync'd SQLite commit (WAL, synchronous=FULL).
The floor and the till take turns payment by payment (floor, till, floor, till, ...),
so that noise from other work on the machine hits both alike: `overhead_ratio` is
offline p99 over the p99 of the floor taps interleaved with the offline payments, and
`pair_ratio_p50` / `pair_ratio_p99` are the distribution of each offline payment's time
over the floor tap right before it.
Each timing is from the call to the result, the card already on the reader.
The last line of stdout is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LIMITS = {
    "HCARD_LIMIT_PER_PAYMENT_CENTS": "100000",
    "HCARD_LIMIT_PER_CARD_DAY_CENTS": "100000000",
    "HCARD_LIMIT_CONSECUTIVE_OFFLINE": "1000000",
}
WARMUP = 10


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def _ms(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 2),
        "p99_ms": round(_percentile(samples, 0.99) * 1000, 2),
    }


# --------------------------------------------------------------------- child
class _Floor:
    """Bare nfcpy + one fsync'd SQLite commit per tap: what any implementation must pay.

    It drives the till's own ContactlessFrontend (one frontend per `udp:` reader; a
    second one on the same emulator would race the till's for its answers), between the
    till's payments, never during one."""

    def __init__(self, write_secret: bytes, workdir: Path) -> None:
        self.write_secret = write_secret
        self.db = sqlite3.connect(workdir / "floor.sqlite", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY, data BLOB)")

    def tap(self, clf: Any) -> float:
        """One tap's I/O on `clf`; its time in seconds."""
        from hcard.terminal.card import layout
        from hcard.terminal.card.ntag import NTAG215

        first_slot = layout.SLOT_FIRST_PAGES[0]
        started = time.perf_counter()
        tag = clf.connect(
            rdwr={"targets": ["106A"], "on-connect": lambda _tag: False, "iterations": 1},
            terminate=lambda: False,
        )
        memory = bytes(tag.transceive(bytes([0x3A, 0, 59]), timeout=0.1))
        memory += bytes(tag.transceive(bytes([0x3A, 60, layout.LAST_LAYOUT_PAGE]), timeout=0.1))
        tag.transceive(bytes([0x3A, NTAG215.cfg0_page, NTAG215.cfg1_page]), timeout=0.1)
        tag.transceive(bytes([0x3C, 0x00]), timeout=0.1)
        password, _pack = layout.card_password(self.write_secret, bytes(tag.identifier))
        tag.transceive(bytes([0x1B]) + password, timeout=0.1)
        for page in range(first_slot, first_slot + layout.SLOT_PAGES):
            tag.write(page, bytearray(memory[page * 4 : page * 4 + 4]))
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO t (data) VALUES (?)", [memory[:400]])
        self.db.execute("COMMIT")
        return time.perf_counter() - started

    def close(self) -> None:
        self.db.close()


def child(state_dir: Path, reader_path: str, count: int, write_secret: bytes) -> None:
    """Per mode: floor tap, till payment, floor tap, till payment, ... so that whatever else
    the machine does hits both alike; each payment is paired with the floor tap before it."""
    from hcard.terminal.core import TerminalTill
    from hcard.terminal.till import Outcome

    till = TerminalTill(state_dir, reader_path=reader_path, start_sync=False)
    till.sync_now()
    floor = _Floor(write_secret, state_dir)
    timings: dict[str, list[float]] = {
        "online": [],
        "offline": [],
        "floor_online": [],
        "floor_offline": [],
    }
    for mode in ("online", "offline"):
        for n in range(count + WARMUP):
            # the till opens its reader at its first payment: the floor taps on it too
            clf = till.reader._clf  # type: ignore[attr-defined]
            floor_s = floor.tap(clf) if clf is not None else 0.0
            if mode == "offline":
                till.link.down()
            started = time.perf_counter()
            result = till.pay(1, card_timeout_s=10)
            elapsed = time.perf_counter() - started
            if result.outcome != Outcome.APPROVED or result.offline != (mode == "offline"):
                raise SystemExit(f"{mode} payment {n} not approved as expected: {result}")
            if n >= WARMUP:
                timings[mode].append(elapsed)
                timings[f"floor_{mode}"].append(floor_s)
        if mode == "online":
            till.sync_now()  # the online records go up; offline ones stay in the journal
    till.close()
    floor.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**timings, "rss_mb": rss_mb}))


# -------------------------------------------------------------------- parent
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=500)
    parser.add_argument("--child", nargs=3, metavar=("STATE", "READER", "SECRET"))
    args = parser.parse_args()
    if args.child:
        state, reader, secret = args.child
        child(Path(state), reader, args.payments, bytes.fromhex(secret))
        return 0

    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures.card import TEST_WRITE_SECRET, CardEmulator
    from fixtures.server import start_server
    from fixtures.terminal import enrol_terminal, server_card

    with tempfile.TemporaryDirectory(prefix="hcard-bench-") as tmp:
        workdir = Path(tmp)
        server = start_server(workdir / "server", env=LIMITS)
        emulator = CardEmulator(workdir)
        try:
            _number, image = server_card(server, 1_000_000)
            terminal = enrol_terminal(server, workdir / "terminal", emulator.reader_path)
            emulator.present(image)
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--payments",
                    str(args.payments),
                    "--child",
                    str(terminal.state_dir),
                    emulator.reader_path,
                    TEST_WRITE_SECRET.hex(),
                ],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            data = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            emulator.stop()
            server.stop()
    online, offline, floor = _ms(data["online"]), _ms(data["offline"]), _ms(data["floor_offline"])
    pairs = sorted(
        till_s / floor_s
        for till_s, floor_s in zip(data["offline"], data["floor_offline"], strict=True)
    )
    print(f"payments per mode: {args.payments} (after {WARMUP} warm-up)")
    print(f"online  tap-to-result: p50 {online['p50_ms']} ms, p99 {online['p99_ms']} ms")
    print(f"offline tap-to-result: p50 {offline['p50_ms']} ms, p99 {offline['p99_ms']} ms")
    print(f"floor (nfcpy I/O + fsync commit): p50 {floor['p50_ms']} ms, p99 {floor['p99_ms']} ms")
    print(f"peak RSS of the terminal process: {data['rss_mb']:.1f} MB")
    pair_p50, pair_p99 = statistics.median(pairs), _percentile(pairs, 0.99)
    print(f"offline / floor per pair: p50 {pair_p50:.2f}, p99 {pair_p99:.2f}")
    result = {
        "offline_p50_ms": offline["p50_ms"],
        "offline_p99_ms": offline["p99_ms"],
        "online_p50_ms": online["p50_ms"],
        "online_p99_ms": online["p99_ms"],
        "rss_mb": round(data["rss_mb"], 1),
        "floor_p99_ms": floor["p99_ms"],
        "overhead_ratio": round(offline["p99_ms"] / floor["p99_ms"], 2),
        "pair_ratio_p50": round(pair_p50, 2),
        "pair_ratio_p99": round(pair_p99, 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
