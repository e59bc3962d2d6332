"""The terminal snapshot with a town's cards: its size on the wire, and what it costs the till.

`measure(ctx, since_version)` gives the sizes of the full snapshot and of the delta since
`since_version` as the server sends them (`snapshot.answer` through `snapshot.encode`,
what `GET /v1/terminal/snapshot` answers a client that accepts gzip): `snapshot_full_kb`,
`snapshot_delta_kb` compressed, `*_raw_kb` before, in KiB; `snapshot_delta_full` says
when the delta was answered in full (`snapshot.answer_in_full`). `bench/town_year.py`
imports it for its own database.

Run as a script, it issues `--cards` cards (20,000) into a fresh SQLite server database
(balances, tap counters, 1 % blocked) and enrols `--tills` tills (400), measures an idle
round's delta (`idle_delta_kb`; `idle_delta_with_keys_kb` for a till that does not send
the digest of its keys), changes 1 % of the cards (a sync round's delta, some minutes of a
busy day) and measures that, then what the till does with it
(`hcard.terminal.snapshot.SnapshotStore`, fsync and all, best of three): applying the
full snapshot, the delta, a delta with nothing in it, loading both files at start. Then a
month: `--month-share` (60 %) of the cards change, and the delta since the first version
must still be one answer. The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.town_cards import change_cards, enrol_terminals, issue_cards

from hcard.server.context import Context
from hcard.server.db import counters
from hcard.server.db import engine as db_engine
from hcard.server.services import snapshot
from hcard.server.settings import Settings
from hcard.server.vocabulary import CounterName
from hcard.terminal.snapshot import SnapshotStore

KIB = 1024
GZIP = "gzip"
REPEATS = 3


def wire(ctx: Context, since: int, keys_sha256: str | None = None) -> tuple[bytes, bytes]:
    """(the answer's JSON body, the bytes sent to a client that accepts gzip)."""
    body = snapshot.answer(ctx, since, keys_sha256)
    return body, snapshot.encode(body, GZIP)[0]


def measure(ctx: Context, since_version: int) -> dict[str, Any]:
    """Sizes in KiB of the full snapshot and of the delta since `since_version` as a till
    that holds the current terminal keys gets it (it sends their digest, `keys_sha256`)."""
    full_body, full_sent = wire(ctx, 0)
    keys_sha256 = json.loads(full_body)["snapshot"]["terminal_keys_sha256"]
    delta_body, delta_sent = wire(ctx, since_version, keys_sha256)
    return {
        "snapshot_full_kb": round(len(full_sent) / KIB, 1),
        "snapshot_full_raw_kb": round(len(full_body) / KIB, 1),
        "snapshot_delta_kb": round(len(delta_sent) / KIB, 1),
        "snapshot_delta_raw_kb": round(len(delta_body) / KIB, 1),
        "snapshot_delta_full": bool(json.loads(delta_body)["snapshot"]["full"]),
    }


def version(ctx: Context) -> int:
    with db_engine.read(ctx.engine) as conn:
        return counters.current(conn, CounterName.VERSION)


def best_ms(run: Callable[[], object], setup: Callable[[], None] = lambda: None) -> float:
    """The fastest of `REPEATS` runs of `run` after `setup` (not timed) in ms: the machine is
    shared, the least disturbed run counts."""
    times = []
    for _ in range(REPEATS):
        setup()
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return round(min(times), 1)


def till_costs(ctx: Context, full: bytes, delta: bytes, folder: Path) -> dict[str, float]:
    """What the till spends on the answer `full`, then `delta` after it, an empty delta, and
    a start (`SnapshotStore.apply_body` and loading, as the sync agent and the till do)."""
    issuer = ctx.issuer_key.public_key()
    path = folder / "snapshot.json"

    store = SnapshotStore(path, issuer)

    def fresh() -> None:
        nonlocal store
        path.unlink(missing_ok=True)
        store = SnapshotStore(path, issuer)

    def full_held() -> None:
        fresh()
        store.apply_body(full)

    full_ms = best_ms(lambda: store.apply_body(full), fresh)
    delta_ms = best_ms(lambda: store.apply_body(delta), full_held)
    empty = snapshot.answer(ctx, store.state.version, store.keys_sha256())
    empty_ms = best_ms(lambda: store.apply_body(empty))
    load_ms = best_ms(lambda: SnapshotStore(path, issuer))
    return {
        "till_full_apply_ms": full_ms,
        "till_delta_apply_ms": delta_ms,
        "till_empty_delta_ms": empty_ms,
        "till_load_ms": load_ms,
        "till_files_kb": round(
            sum(p.stat().st_size for p in folder.glob("snapshot*.json")) / KIB, 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=20_000)
    parser.add_argument("--tills", type=int, default=400)
    parser.add_argument("--round-share", type=float, default=0.01)
    parser.add_argument("--month-share", type=float, default=0.6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hcard-bench-") as tmp:
        folder = Path(tmp)
        ctx = Context.open(
            Settings.build(folder, f"sqlite:///{folder / 'hcard.db'}"), create_key=True
        )
        started = time.perf_counter()
        issue_cards(ctx, args.cards)
        enrol_terminals(ctx, args.tills)
        build_s = time.perf_counter() - started
        first = version(ctx)
        full = wire(ctx, 0)[0]
        server_full_ms = best_ms(lambda: wire(ctx, 0))
        change_cards(ctx, args.round_share, seed=3)
        sizes = measure(ctx, first)
        delta = wire(ctx, first, json.loads(full)["snapshot"]["terminal_keys_sha256"])[0]
        idle = measure(ctx, version(ctx))
        idle_keys_kb = round(len(wire(ctx, version(ctx))[1]) / KIB, 1)
        till_folder = folder / "till"
        till_folder.mkdir()
        costs = till_costs(ctx, full, delta, till_folder)
        month_cards = change_cards(ctx, args.month_share, seed=4)
        month = measure(ctx, first)
        ctx.engine.dispose()
    result = {
        "cards": args.cards,
        **sizes,
        "delta_cards": len(json.loads(delta)["snapshot"]["balances"]),
        "tills": args.tills,
        "idle_delta_kb": idle["snapshot_delta_kb"],
        "idle_delta_with_keys_kb": idle_keys_kb,
        "server_full_ms": server_full_ms,
        **costs,
        "month_cards": month_cards,
        "month_kb": month["snapshot_delta_kb"],
        "month_full": month["snapshot_delta_full"],
        "build_s": round(build_s, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
