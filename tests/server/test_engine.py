"""The write paths of the data layer: group commit keeps each unit all-or-nothing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from hcard.server.db import engine as db_engine
from hcard.server.db import migrate
from hcard.server.db.tables import alerts

UNITS = 40


def test_units_commit_together_but_fail_alone(tmp_path):
    engine = db_engine.make_engine(f"sqlite:///{tmp_path / 'hcard.db'}")
    migrate.upgrade(engine)
    barrier = threading.Barrier(UNITS)

    def unit(index: int) -> object:
        def work(conn: sa.Connection) -> int:
            conn.execute(
                sa.insert(alerts).values(kind="bad_record", detail=str(index), created_s=0.0)
            )
            if index % 2:
                raise ValueError(index)  # after writing: the write must not stay
            return index

        barrier.wait(timeout=60)
        try:
            return db_engine.unit(engine, work)
        except ValueError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=UNITS) as pool:
        answers = list(pool.map(unit, range(UNITS)))

    for index, answer in enumerate(answers):
        if index % 2:
            assert isinstance(answer, ValueError)
            assert answer.args == (index,)
        else:
            assert answer == index
    with db_engine.read(engine) as conn:
        stored = sorted(int(d) for d in conn.execute(sa.select(alerts.c.detail)).scalars())
    assert stored == list(range(0, UNITS, 2))
    engine.dispose()


def test_a_unit_sees_what_it_wrote_and_nothing_leaks_on_error(tmp_path):
    engine = db_engine.make_engine(f"sqlite:///{tmp_path / 'hcard.db'}")
    migrate.upgrade(engine)

    def broken(conn: sa.Connection) -> None:
        conn.execute(sa.insert(alerts).values(kind="bad_record", detail="x", created_s=0.0))
        assert conn.execute(sa.select(sa.func.count()).select_from(alerts)).scalar_one() == 1
        raise KeyError("late")

    with pytest.raises(KeyError):
        db_engine.unit(engine, broken)
    with db_engine.read(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(alerts)).scalar_one() == 0
    engine.dispose()
