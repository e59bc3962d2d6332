"""The tracer (shim.c) compiled once per session into build/powercut/ (git ignores build/)."""

from pathlib import Path

import pytest
from powercut.harness import build_shim

BUILD_DIR = Path(__file__).resolve().parents[2] / "build" / "powercut"


@pytest.fixture(scope="session")
def powercut_shim() -> Path:
    return build_shim(BUILD_DIR)
