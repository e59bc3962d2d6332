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
