"""Fixtures shared by the whole suite live in tests/fixtures/, one module per part."""

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
