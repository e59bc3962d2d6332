"""The simulation in the suite: a few hundred seeds in blocks xdist can spread, the seeds
that once found a bug, and one seed run twice to the same byte.

`pytest tests/sim --sim-seed N [--sim-ops M]` replays one seed (the line a failure
prints); `--sim-seeds`/`--sim-ops` change the CI set. The long run is
`python -m tests.sim --seeds 10000 --ops 200` (`make sim`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from sim.run import Runner, SeedResult

#: the CI set: seeds 0 .. CI_SEEDS-1, CI_OPS operations each, in blocks of BLOCK seeds
CI_SEEDS = 120
CI_OPS = 40
BLOCK = 10
#: (seed, operations) of runs that found a bug in the production code, fixed since: each
#: stays in the suite (docs/simulation.md lists what each found)
REGRESSION_SEEDS: list[tuple[int, int]] = []


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    """One town for the module's seeds (made once: argon2, migrations, enrolment)."""
    logging.disable(logging.CRITICAL)  # the production code's warnings are expected here
    made = Runner()
    yield made
    made.close()
    logging.disable(logging.NOTSET)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seeds" not in metafunc.fixturenames:
        return
    config = metafunc.config
    operations = config.getoption("--sim-ops") or CI_OPS
    single = config.getoption("--sim-seed")
    if single is not None:
        blocks = [[single]]
    else:
        count = config.getoption("--sim-seeds") or CI_SEEDS
        blocks = [list(range(s, min(s + BLOCK, count))) for s in range(0, count, BLOCK)]
    metafunc.parametrize(
        ("seeds", "operations"),
        [(block, operations) for block in blocks],
        ids=[f"seeds{block[0]}-{block[-1]}" for block in blocks],
    )


def _failures(results: list[SeedResult]) -> str:
    return "\n\n".join(result.report() for result in results if result.failed())


def test_seeds(runner: Runner, seeds: list[int], operations: int) -> None:
    """Every invariant after every step and at the end, for each seed of the block."""
    results = [runner.run(seed, operations) for seed in seeds]
    failed = _failures(results)
    assert not failed, failed


@pytest.mark.parametrize(
    ("seed", "operations"),
    REGRESSION_SEEDS or [pytest.param(0, 0, marks=pytest.mark.skip(reason="none yet"))],
)
def test_regression_seeds(runner: Runner, seed: int, operations: int) -> None:
    """The seeds that found a bug still pass."""
    result = runner.run(seed, operations)
    assert not result.failed(), result.report()


def test_a_seed_runs_the_same_twice(runner: Runner) -> None:
    """Same seed, same run: the event log (every operation, fault, answer, and at the end
    every journal head and balance) is the same to the byte."""
    first = runner.run(7, 60)
    second = runner.run(7, 60)
    assert len(first.events) > 60
    assert first.events_sha256 == second.events_sha256
    assert first.events == second.events


def test_another_seed_runs_otherwise(runner: Runner) -> None:
    """The log is worth comparing: two seeds give two different runs."""
    assert runner.run(1, 20).events_sha256 != runner.run(2, 20).events_sha256
