"""How long one tap takes on the card layer alone, per card type and per reader stack.

A tap: wait_for_card (sense and activation), read with every check and a purse write,
through the real stacks against `hcard-card-emulator` in its own process:
- NTAG215: FAST_READs, READ_SIG, originality, issuer and purse checks; PWD_AUTH and 20
  page writes.
- NTAG 424 DNA: select, the NDEF file, Read_Sig, AuthenticateEV2First with the card's
  diversified key 1, the encrypted signatures and the tap counter; two WriteData (the
  slot's head plain, its signature encrypted) in the same session.
- stacks: nfcpy's `udp:` driver, and PC/SC (pyscard, pcscd, vsmartcard's vpcd; needs a
  running pcscd or root to start one, as `make test` has).

On each stack the two card types sit on two readers side by side and are tapped in turn,
tap by tap, so noise from other work hits both alike: the figure that counts is their
ratio in the same run (target: a 424 tap within 2x an NTAG215 tap). Prints one JSON
object on its last line.

    .venv/bin/python bench/card_tap.py [--taps 300] [--stacks udp,pcsc]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hcard import cardnumber, keys
from hcard.terminal.card import CardKeys, Purse, Reader, open_reader
from hcard.terminal.card import image as images
from hcard.terminal.card.emulator import EmulatorProcess
from hcard.terminal.card.ntag424_cards import issued_state
from hcard.terminal.card.ntag424_model import TEST_ORIGINALITY_PUBLIC_KEY_HEX, CardState
from hcard.terminal.card.ntag424_session import Ntag424Secrets
from hcard.terminal.card.originality import TEST_PUBLIC_KEY_HEX

# the pcscd and vpcd slot handling of the test suite (one place for it)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fixtures.pcsc import ensure_pcscd, slot_lease

SECRETS = Ntag424Secrets(
    write_secret=b"bench-card-write-secret-0123456789",
    sun_secret=b"bench-card-sun-secret-0123456789",
    admin_secret=b"bench-card-admin-secret-012345678",
)
CARD_TYPES = ("NTAG215", "NTAG424DNA")
TERMINAL_ID = 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def issued(card_type: str, issuer: Ed25519PrivateKey, serial: int) -> images.CardImage | CardState:
    number = cardnumber.from_serial(serial)
    if card_type == "NTAG424DNA":
        return issued_state(images.blank424(), number, issuer, "https://k.test", SECRETS)
    url = f"https://k.test/c/{number}"
    return images.issue(images.blank(), number, issuer, url, SECRETS.write_secret)


@contextlib.contextmanager
def emulators(stack: str, workdir: Path) -> Iterator[list[EmulatorProcess]]:
    """One emulator (and so one reader) per card type on `stack`."""
    with contextlib.ExitStack() as stack_of_things:
        ports: list[int | None] = [None] * len(CARD_TYPES)
        if stack == "pcsc":
            ensure_pcscd()
            ports = [stack_of_things.enter_context(slot_lease()).port for _ in CARD_TYPES]
        started: list[EmulatorProcess] = []
        try:
            for card_type, port in zip(CARD_TYPES, ports, strict=True):
                folder = workdir / f"{stack}-{card_type}"
                folder.mkdir()
                started.append(EmulatorProcess(folder, vpcd_port=port))
            yield started
        finally:
            for emulator in started:
                emulator.stop()


def tap(reader: Reader, card_keys: CardKeys, key: Ed25519PrivateKey) -> dict[str, float]:
    """One tap: connect, read with every check, write the purse one cent lower."""
    started = time.perf_counter()
    session = reader.wait_for_card(timeout_s=10)
    assert session is not None, "no card"
    connected = time.perf_counter()
    view = session.read(card_keys)
    was_read = time.perf_counter()
    assert view.purse is not None
    balance = view.purse.balance_cents - 1
    session.write_purse(Purse(balance, view.next_counter, TERMINAL_ID), key)
    written = time.perf_counter()
    session.close()
    return {
        "connect": (connected - started) * 1000,
        "read": (was_read - connected) * 1000,
        "write": (written - was_read) * 1000,
        "tap": (written - started) * 1000,
    }


def measure_stack(stack: str, taps: int, workdir: Path) -> dict[str, float]:
    issuer, terminal = keys.generate(), keys.generate()
    card_keys = CardKeys(
        issuer.public_key(),
        {TERMINAL_ID: terminal.public_key()},
        SECRETS.write_secret,
        TEST_PUBLIC_KEY_HEX,
        originality_424_key_hex=TEST_ORIGINALITY_PUBLIC_KEY_HEX,
    )
    phases = {
        card_type: {"connect": [], "read": [], "write": [], "tap": []} for card_type in CARD_TYPES
    }
    with emulators(stack, workdir) as running:
        readers = []
        for serial, (card_type, emulator) in enumerate(zip(CARD_TYPES, running, strict=True), 1):
            path = emulator.workdir / "card.json"
            images.save(issued(card_type, issuer, serial), path)
            emulator.control.present(path)
            reader = open_reader(emulator.reader_path)
            readers.append(reader)
            # a first purse, so every measured tap reads a signed one and writes the next
            session = reader.wait_for_card(timeout_s=30)
            assert session is not None, f"{card_type} on {stack}: no card"
            view = session.read(card_keys)
            session.write_purse(Purse(1_000_000, view.next_counter, TERMINAL_ID), terminal)
            session.close()
        for _ in range(taps):
            for card_type, reader in zip(CARD_TYPES, readers, strict=True):
                for name, value in tap(reader, card_keys, terminal).items():
                    phases[card_type][name].append(value)
        for reader in readers:
            reader.close()
    result: dict[str, float] = {}
    for card_type, measured in phases.items():
        for name, values in measured.items():
            prefix = f"{stack}_{card_type.lower()}_{name}"
            result[f"{prefix}_p50_ms"] = round(statistics.median(values), 2)
            if name == "tap":
                result[f"{prefix}_p99_ms"] = round(percentile(values, 99), 2)
    for q in ("p50", "p99"):
        result[f"{stack}_ratio_424_to_215_{q}"] = round(
            result[f"{stack}_ntag424dna_tap_{q}_ms"] / result[f"{stack}_ntag215_tap_{q}_ms"], 2
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--taps", type=int, default=300, help="taps per card type and stack")
    parser.add_argument("--stacks", default="udp,pcsc", help="udp, pcsc or both")
    args = parser.parse_args()
    result: dict[str, float | int] = {"taps": args.taps}
    with tempfile.TemporaryDirectory() as tmp:
        for stack in args.stacks.split(","):
            result.update(measure_stack(stack, args.taps, Path(tmp)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
