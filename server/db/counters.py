"""The named counters (`counters` table): card serials and the snapshot version.

`next_value` increments and returns in one statement (`UPDATE ... RETURNING`), which on
PostgreSQL holds the counter's row until the transaction ends: two transactions never get
the same value. The snapshot version is moved only by `services.snapshot.cards_changed`.
"""

from __future__ import annotations

import sqlalchemy as sa

from hcard.server.db.tables import counters
from hcard.server.vocabulary import CounterName

#: built once: every booking moves the snapshot version
_NEXT = (
    sa.update(counters)
    .where(counters.c.name == sa.bindparam("counter"))
    .values(value=counters.c.value + 1)
    .returning(counters.c.value)
)


def next_value(conn: sa.Connection, name: CounterName) -> int:
    """Atomically increment the counter `name` and return its new value."""
    return conn.execute(_NEXT, {"counter": name}).scalar_one()


def current(conn: sa.Connection, name: CounterName) -> int:
    """The counter's value as this transaction sees it."""
    return conn.execute(sa.select(counters.c.value).where(counters.c.name == name)).scalar_one()
