"""Fixtures shared by the whole suite live in tests/fixtures/, one module per part."""

import os

import pytest

# The suite starts some hundred throwaway servers, each hashing its admin's password and
# more: at argon2's standard cost (64 MiB, 3 passes) that was a sixth of the suite's CPU.
# The same code and checks run at its cheapest parameters (`PasswordHashCost.TEST_ONLY`);
# the standard cost is the default everywhere else, and `test_settings` checks it.
os.environ.setdefault("HCARD_PASSWORD_HASH_COST", "test-only")

pytest_plugins = [
    "fixtures.postgres",
    "fixtures.server",
    "fixtures.terminal",
    "fixtures.card",
    "fixtures.pcsc",
    "fixtures.provisioning",
    "fixtures.app",
]


def pytest_addoption(parser):
    """The simulation's options (tests/sim, docs/simulation.md)."""
    group = parser.getgroup("sim", "deterministic simulation (tests/sim)")
    group.addoption(
        "--sim-seed",
        type=int,
        default=None,
        help="run only this seed of the simulation (the replay line of a failure)",
    )
    group.addoption(
        "--sim-seeds",
        type=int,
        default=None,
        help="how many seeds tests/sim runs (default: the CI set)",
    )
    group.addoption(
        "--sim-ops", type=int, default=None, help="operations per seed (default: the CI set's)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules marked `slow` first, each whole and in its order. `--dist loadfile` hands
    whole modules to the workers in this order: a module of minutes handed out last made
    the suite wait for one worker at the end (tests/server/test_settlement.py alone takes
    three minutes of one)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable
