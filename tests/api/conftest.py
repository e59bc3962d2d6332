"""The town each fuzzing file runs against (api/fuzzing.py says why a server per file)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api.fuzzing import Town, make_town


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Town]:
    town = make_town(tmp_path_factory.mktemp("api"))
    try:
        yield town
    finally:
        town.server.stop()
