"""What the fuzzing runs found, pinned where it was wrong (the runs themselves find it
again only as long as their generation happens to reach it)."""

from __future__ import annotations

import pytest

from hcard.records import Record, RecordError

WIRE = {
    "v": 1,
    "terminal_id": 1,
    "seq": 1,
    "prev": "0" * 64,
    "body": {},
    "sig": "0" * 128,
}


@pytest.mark.parametrize("kind", [{}, [], None, 1])
def test_a_record_kind_that_is_no_string_is_a_bad_record(kind: object) -> None:
    """`{"kind": {}}` was a TypeError (unhashable) in `validate_body`: a 500 on authorise
    and sync instead of 400 `bad_record`."""
    with pytest.raises(RecordError):
        Record.from_wire({**WIRE, "kind": kind})
