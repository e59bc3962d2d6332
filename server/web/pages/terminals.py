"""Terminals in the office: every till at a glance, enrolling a new one, revoking one.

The list shows what each till said of itself with its last signed request (when, its
software version, how many journal records it has not uploaded yet) and marks the two
things somebody should look at: an active till not seen for a day (switched off, no
network) and records waiting (payments the server does not know yet).

Enrolling makes a pending terminal and its one-time code, shown exactly once: as big text
to type on the till and as a QR code, on a page meant to be printed. It cannot be shown
again (only its hash is stored); a lost code is no harm: revoke the terminal, enrol anew.
"""

from __future__ import annotations

import re
from enum import StrEnum

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hcard.i18n import N_, Text, text
from hcard.server.api.deps import ContextDep
from hcard.server.api.staff import IdPath
from hcard.server.services import terminals
from hcard.server.vocabulary import TerminalStatus
from hcard.server.web.auth import OfficeUser
from hcard.server.web.notices import done_notices, redirect_done
from hcard.server.web.templating import language, render

router = APIRouter(include_in_schema=False)

#: where a revocation goes back to: this list, or the merchant's page it was made on
_BACK = re.compile(r"/office/(terminals|merchants/[1-9][0-9]{0,18})")


class Done(StrEnum):
    """What a redirect after a form tells the page (`?done=`): the terminals list, or the
    merchant's page the terminal was revoked on."""

    REVOKED = "terminal-revoked"


DONE: dict[Done, Text] = {
    Done.REVOKED: N_("The terminal is revoked. Its requests are refused from now on."),
}
#: the QR code's module size (the stylesheet scales it; this keeps the SVG small)
_QR_SCALE = 4

STATUS_LABELS: dict[TerminalStatus, Text] = {
    TerminalStatus.ACTIVE: N_("Active"),
    TerminalStatus.PENDING: N_("Waiting to be set up"),
    TerminalStatus.REVOKED: N_("Revoked"),
}
#: the badge colour of each status (office.css `.badge ok|warn|bad`)
STATUS_BADGES = {
    TerminalStatus.ACTIVE: "ok",
    TerminalStatus.PENDING: "warn",
    TerminalStatus.REVOKED: "bad",
}


def terminal_rows(rows: list[dict[str, object]], lang: str) -> list[dict[str, object]]:
    """Each terminal with its status in words and what to look at: `not_seen` (the
    service's `silent`: active, not heard of for a day) and `waiting` (records not uploaded
    yet)."""
    shown = []
    for row in rows:
        status = TerminalStatus(str(row["status"]))
        waiting = row["records_waiting"]
        shown.append(
            {
                **row,
                "status_label": text(STATUS_LABELS[status], lang),
                "badge": STATUS_BADGES[status],
                "live": status is not TerminalStatus.REVOKED,
                "not_seen": bool(row["silent"]),
                "waiting": isinstance(waiting, int) and waiting > 0,
            }
        )
    return shown


@router.get("/office/terminals", name="terminals")
def terminal_list(request: Request, ctx: ContextDep, staff: OfficeUser) -> Response:
    lang = language(request)
    rows = terminal_rows(terminals.all_terminals(ctx, staff), lang)
    return render(
        request,
        "terminals/list.html",
        title=text(N_("Terminals"), lang),
        terminals=rows,
        not_seen=sum(1 for row in rows if row["not_seen"]),
        waiting=sum(1 for row in rows if row["waiting"]),
        notices=done_notices(request.query_params.get("done", ""), DONE, lang),
    )


def qr_data_uri(code: str) -> str:
    """The code as a QR code, an SVG `data:` URI for an <img> (no inline style, CSP-safe)."""
    return str(segno.make(code, error="m").svg_data_uri(scale=_QR_SCALE, border=4))


@router.post("/office/terminals/{terminal_id}/revoke", name="terminal_revoke")
async def terminal_revoke(
    ctx: ContextDep,
    staff: OfficeUser,
    terminal_id: IdPath,
    back: str = Form("", max_length=200),
) -> Response:
    """Revoke (lost, stolen, replaced): the till's requests are refused from now on. Back
    to the page the form was on (`back`: this list or a merchant's page, nothing else)."""
    await run_in_threadpool(terminals.revoke, ctx, staff, terminal_id)
    where = back if _BACK.fullmatch(back) else "/office/terminals"
    return redirect_done(where, Done.REVOKED)
