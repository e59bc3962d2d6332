"""How long one tap takes on the card layer alone, over loopback to the card emulator.

Per tap: wait_for_card (nfcpy sense + activation + GET_VERSION), read (FAST_READs,
READ_SIG, originality + issuer + purse checks) and write_purse (PWD_AUTH + 20
page writes), with the real nfcpy stack and `hcard-card-emulator` in its own
process. Prints one JSON object on its last line.

    .venv/bin/python bench/card_tap.py [--taps 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from hcard import cardnumber, keys
from hcard.terminal.card import CardKeys, Purse, open_reader
from hcard.terminal.card import image as images
from hcard.terminal.card.emulator import EmulatorProcess
from hcard.terminal.card.originality import TEST_PUBLIC_KEY_HEX

WRITE_SECRET = b"bench-card-write-secret-0123456789"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--taps", type=int, default=300)
    args = parser.parse_args()
    issuer, terminal = keys.generate(), keys.generate()
    number = cardnumber.from_serial(1)
    card_keys = CardKeys(
        issuer.public_key(), {1: terminal.public_key()}, WRITE_SECRET, TEST_PUBLIC_KEY_HEX
    )
    with tempfile.TemporaryDirectory() as tmp:
        emulator = EmulatorProcess(Path(tmp))
        try:
            card = images.issue(
                images.blank(), number, issuer, f"https://k.test/c/{number}", WRITE_SECRET
            )
            images.save(card, Path(tmp) / "card.json")
            emulator.control.present(Path(tmp) / "card.json")
            reader = open_reader(emulator.reader_path)
            phases: dict[str, list[float]] = {"connect": [], "read": [], "write": [], "tap": []}
            balance = 1_000_000
            for _ in range(args.taps):
                started = time.perf_counter()
                session = reader.wait_for_card(timeout_s=10)
                assert session is not None
                connected = time.perf_counter()
                view = session.read(card_keys)
                was_read = time.perf_counter()
                balance -= 1
                session.write_purse(Purse(balance, view.next_counter, 1), terminal)
                written = time.perf_counter()
                session.close()
                phases["connect"].append((connected - started) * 1000)
                phases["read"].append((was_read - connected) * 1000)
                phases["write"].append((written - was_read) * 1000)
                phases["tap"].append((written - started) * 1000)
            reader.close()
        finally:
            emulator.stop()
    result: dict[str, float | int] = {"taps": args.taps}
    for name, values in phases.items():
        result[f"{name}_p50_ms"] = round(statistics.median(values), 2)
        result[f"{name}_p99_ms"] = round(percentile(values, 99), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
