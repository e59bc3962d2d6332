"""One seed from start to end: the world, its operations, the checks; and its report.

`run_seed` never raises for a failing seed: a broken invariant or an exception anywhere in
the production code is the seed's failure, reported with the replay lines and the event
log of the last steps (`SeedResult.report`).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from . import checks, ops
from .clock import simulated_time
from .world import World, make_town

#: the event log lines a failure prints
TAIL_LINES = 40


@dataclass
class SeedResult:
    seed: int
    ops: int
    problems: list[str]
    events: list[str] = field(repr=False)
    events_sha256: str = ""

    @property
    def unknown(self) -> list[str]:
        """The problems that are no known finding (`checks.KNOWN_FINDINGS`)."""
        return [p for p in self.problems if not p.startswith(checks.KNOWN)]

    @property
    def ok(self) -> bool:
        return not self.problems

    def failed(self, strict: bool = False) -> bool:
        """Failed: a problem that is no known finding, or any problem when `strict`."""
        return bool(self.problems if strict else self.unknown)

    def report(self) -> str:
        """The failure as it is printed: what broke, how to replay it, the last events."""
        lines = [
            f"simulation seed {self.seed} ({self.ops} operations) failed:",
            *(f"  - {problem}" for problem in self.problems[:20]),
            "replay:",
            f"  .venv/bin/pytest tests/sim --sim-seed {self.seed} --sim-ops {self.ops}",
            f"  .venv/bin/python -m tests.sim --seed {self.seed} --ops {self.ops}",
            f"the last {TAIL_LINES} events:",
            *(f"  {line}" for line in self.events[-TAIL_LINES:]),
        ]
        return "\n".join(lines)


def _scratch() -> Path:
    """A folder for the run's files: in memory when the system has one (fsync is free
    there, and the simulation tests the logic, not the disk)."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="hcard-sim-", dir=shm if shm.is_dir() else None))


class Runner:
    """Runs seeds one after the other, each from a copy of one town (made once)."""

    def __init__(self) -> None:
        self.folder = _scratch()
        self.town = make_town(self.folder)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def run(self, seed: int, operations: int, chances: ops.Chances | None = None) -> SeedResult:
        chances = chances or ops.Chances()
        folder = Path(tempfile.mkdtemp(prefix=f"seed{seed}-", dir=self.folder))
        # the production code's own random choices (the server's nonce clean-up) follow the seed
        random.seed(seed)
        problems: list[str] = []
        world: World | None = None
        events: list[str] = []
        try:
            from .clock import SimClock

            clock = SimClock()
            with simulated_time(clock):
                world = World(seed, folder, self.town, clock=clock)
                events = world.events
                rng = random.Random(world.rng.getrandbits(64))
                for _ in range(operations):
                    ops.step(world, rng, chances)
                    problems = checks.after_step(world)
                    if problems:
                        break
                if not problems:
                    problems = checks.at_end(world)
        except Exception:  # the production code failed: that is the seed's finding
            problems.append(traceback.format_exc().strip().splitlines()[-1])
            events.append(traceback.format_exc())
        finally:
            if world is not None:
                # a seed that failed may leave a till broken: its files go anyway
                with contextlib.suppress(Exception):
                    world.close()
            shutil.rmtree(folder, ignore_errors=True)
        digest = hashlib.sha256("\n".join(events).encode()).hexdigest()
        return SeedResult(seed, operations, problems, events, digest)
