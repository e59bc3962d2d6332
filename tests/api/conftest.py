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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One id per operation. Schemathesis puts the operation only in an item's name, and
    pytest 9 makes the id from the function and its parameters: every operation of a file
    shared one id, and xdist (which goes by id) ran only one of them."""
    for item in items:
        label = getattr(item, "operation_label", None)
        if label is not None and item.parent is not None and "[" not in item.nodeid:
            item._id = item.parent.id.child(item.originalname).with_params(label)  # type: ignore[attr-defined]
