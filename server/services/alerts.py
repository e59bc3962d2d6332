"""Alerts: what the server saw and a person must look at (gaps, forks, rollbacks, overdraws,
a revoked terminal that still calls).

Written by `sync` inside the transaction that found the problem, so an alert
exists exactly when the refusal or booking that it explains does.

A person marks an alert handled with a note (`handle`); it stays, with who, when and the
note, as the history. An alert is never reopened: what happens again after it was handled
is a new alert (a revoked terminal that calls again gets a new open one; the handled one
keeps its count and note), so the history says what was known when someone acted.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from hcard.errors import Code, HCardError
from hcard.server import names
from hcard.server.context import Context
from hcard.server.db import engine as db_engine
from hcard.server.db import locking
from hcard.server.db.tables import alerts, merchants, terminals, users
from hcard.server.services.users import Staff
from hcard.server.vocabulary import OFFICE, AlertKind

#: what an alert's detail keeps of the request path (the query is the terminal's own text)
_DETAIL_MAX = 200


def record(
    conn: sa.Connection, ctx: Context, kind: AlertKind, detail: str, *, card: str | None = None
) -> None:
    """One alert written in the caller's transaction (a staff action that needs a look)."""
    conn.execute(
        sa.insert(alerts).values(
            kind=kind, card=card, detail=detail[:_DETAIL_MAX], created_s=ctx.now()
        )
    )


def revoked_terminal_called(ctx: Context, terminal_id: int, method: str, path: str) -> None:
    """Record that a revoked terminal made a request that its own key signed.

    The caller checks the signature first: only the lost or stolen device itself can
    make this row change, never unauthenticated noise. One alert per terminal, counting
    repeats (`count`, `last_s`, `detail` = the latest request), so a till that keeps
    retrying its sync cannot fill the table. Once that alert is handled, the next call
    opens a new one.
    """
    now = ctx.now()
    detail = f"revoked terminal {terminal_id} called {method} {path}"[:_DETAIL_MAX]

    def record(conn: sa.Connection) -> None:
        # The terminal's row lock (PostgreSQL; SQLite writers are serialised anyway) makes
        # two requests at once find or make the same one alert.
        locking.terminal(conn, terminal_id)
        repeated = conn.execute(
            sa.update(alerts)
            .where(
                alerts.c.kind == AlertKind.REVOKED_TERMINAL,
                alerts.c.terminal_id == terminal_id,
                alerts.c.handled_s.is_(None),
            )
            .values(count=alerts.c.count + 1, last_s=now, detail=detail)
        ).rowcount
        if not repeated:
            conn.execute(
                sa.insert(alerts).values(
                    kind=AlertKind.REVOKED_TERMINAL,
                    terminal_id=terminal_id,
                    detail=detail,
                    created_s=now,
                )
            )

    db_engine.unit(ctx.engine, record)


def list_alerts(ctx: Context, actor: Staff, limit: int = 200) -> list[dict[str, object]]:
    """Newest activity first: an old alert that just happened again comes back to the top."""
    actor.require(*OFFICE)
    latest = sa.func.coalesce(alerts.c.last_s, alerts.c.created_s)
    with db_engine.read(ctx.engine) as conn:
        rows = conn.execute(
            sa.select(alerts)
            .order_by(latest.desc(), alerts.c.id.desc())
            .limit(max(1, min(limit, 1000)))
        ).mappings()
        return [dict(row) for row in rows]


#: a handling note: a few words at least, a paragraph at most
NOTE_MIN_CHARS = 3
NOTE_MAX_CHARS = 500


def _note(text: str) -> str:
    """The note as stored: line breaks and runs of spaces as one space, printable, 3..500."""
    note = names.printable(" ".join(str(text).split()), field="note", max_chars=NOTE_MAX_CHARS)
    if len(note) < NOTE_MIN_CHARS:
        raise HCardError(
            Code.INVALID_NAME, field="note", min_chars=NOTE_MIN_CHARS, max_chars=NOTE_MAX_CHARS
        )
    return note


def handle(ctx: Context, actor: Staff, alert_id: int, note: str) -> None:
    """Mark an open alert handled by `actor` with a note of what was done (ALERT_ALREADY_HANDLED
    if someone did already: the first note stands)."""
    actor.require(*OFFICE)
    note = _note(note)
    with db_engine.write(ctx.engine) as conn:
        exists = conn.execute(sa.select(alerts.c.id).where(alerts.c.id == alert_id)).first()
        if exists is None:
            raise HCardError(Code.NOT_FOUND, what="alert")
        done = conn.execute(
            sa.update(alerts)
            .where(alerts.c.id == alert_id, alerts.c.handled_s.is_(None))
            .values(handled_s=ctx.now(), handled_by=actor.user_id, handled_note=note)
        ).rowcount
        if not done:
            raise HCardError(Code.ALERT_ALREADY_HANDLED, alert_id=alert_id)


@dataclass(frozen=True)
class Alert:
    """An alert as the office reads it: with its terminal's name and merchant, and who marked
    it handled (`handled_by_name`)."""

    id: int
    kind: AlertKind
    detail: str
    terminal_id: int | None
    terminal_name: str | None
    merchant_id: int | None
    merchant_name: str | None
    seq: int | None
    card: str | None
    created_s: float
    count: int
    last_s: float | None
    handled_s: float | None
    handled_by_name: str | None
    handled_note: str | None


def _alert(row: sa.RowMapping) -> Alert:
    return Alert(
        id=int(row["id"]),
        kind=AlertKind(row["kind"]),
        detail=str(row["detail"]),
        terminal_id=row["terminal_id"],
        terminal_name=row["terminal_name"],
        merchant_id=row["merchant_id"],
        merchant_name=row["merchant_name"],
        seq=row["seq"],
        card=row["card"],
        created_s=float(row["created_s"]),
        count=int(row["count"]),
        last_s=row["last_s"],
        handled_s=row["handled_s"],
        handled_by_name=row["username"],
        handled_note=row["handled_note"],
    )


@dataclass(frozen=True)
class AlertList:
    #: open alerts, newest activity first (at most the limit; `open_total` counts them all)
    still_open: list[Alert]
    open_total: int
    #: handled alerts, the last handled first (at most the limit)
    handled: list[Alert]


def office_list(ctx: Context, actor: Staff, limit: int = 200) -> AlertList:
    """The alerts page: what is open, and what was handled by whom with which note."""
    actor.require(*OFFICE)
    limit = max(1, min(limit, 1000))
    latest = sa.func.coalesce(alerts.c.last_s, alerts.c.created_s)
    with_name = sa.select(
        alerts,
        users.c.username,
        terminals.c.name.label("terminal_name"),
        terminals.c.merchant_id,
        merchants.c.name.label("merchant_name"),
    ).select_from(
        alerts.outerjoin(users, users.c.id == alerts.c.handled_by)
        .outerjoin(terminals, terminals.c.id == alerts.c.terminal_id)
        .outerjoin(merchants, merchants.c.id == terminals.c.merchant_id)
    )
    is_open = alerts.c.handled_s.is_(None)
    with db_engine.read(ctx.engine) as conn:
        open_rows = conn.execute(
            with_name.where(is_open).order_by(latest.desc(), alerts.c.id.desc()).limit(limit)
        ).mappings()
        still_open = [_alert(row) for row in open_rows]
        open_total = conn.execute(
            sa.select(sa.func.count()).select_from(alerts).where(is_open)
        ).scalar_one()
        handled_rows = conn.execute(
            with_name.where(alerts.c.handled_s.is_not(None))
            .order_by(alerts.c.handled_s.desc(), alerts.c.id.desc())
            .limit(limit)
        ).mappings()
        return AlertList(still_open, int(open_total), [_alert(row) for row in handled_rows])
