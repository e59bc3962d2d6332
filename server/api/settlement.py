"""Settlement API: runs, bank files, statements, bank statements, float check, exports.

Thin: each handler is one service call; the services check the role (admin and
marketing run settlement; a merchant reads only its own statements) and own their
transactions. Statements are made in the background after a run is created (every core,
progress in the run's `statements_done`), so nobody waits on a request.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.concurrency import run_in_threadpool

from hcard.errors import Code, HCardError
from hcard.server.api import openapi
from hcard.server.api.deps import ContextDep, StaffDep
from hcard.server.api.staff import CardNumber, IdPath
from hcard.server.context import Context
from hcard.server.services import bank, settlement
from hcard.server.settlement import sepa

router = APIRouter(prefix="/v1", tags=["accounting"])

#: a bank statement of a month is far below this; the body limit of the app applies first
STATEMENT_MAX_BYTES = 2 * 1024 * 1024


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    #: a calendar month `YYYY-MM`, or `first_day` and `last_day` (ISO dates, inclusive)
    month: Annotated[StrictStr | None, Field(max_length=7)] = None
    first_day: dt.date | None = None
    last_day: dt.date | None = None
    #: pain.001.001.09 (German banks since November 2026) or .03 for older bank software
    schema_: sepa.Schema = Field(sepa.Schema.PAIN_001_001_09, alias="schema")

    def period(self) -> settlement.Period:
        if self.month is not None and self.first_day is None and self.last_day is None:
            return settlement.Period.month(self.month)
        if self.month is None and self.first_day is not None and self.last_day is not None:
            return settlement.Period(self.first_day, self.last_day)
        raise HCardError(Code.PERIOD_INVALID, reason="month, or first_day and last_day")


def _statements_in_background(ctx: Context, run_id: object) -> None:
    threading.Thread(
        target=settlement.make_statements,
        args=(ctx, run_id),
        name=f"statements-{run_id}",
        daemon=True,
    ).start()


@router.post("/settlement/runs", responses=openapi.errors(404, 409))
def create_run(ctx: ContextDep, staff: StaffDep, body: RunIn) -> dict[str, object]:
    """Settle a period: booked, bank files made; the statements follow in the background."""
    run = settlement.create_run(ctx, staff, body.period(), schema=body.schema_)
    _statements_in_background(ctx, run["run_id"])
    return run


@router.get("/settlement/runs")
def list_runs(ctx: ContextDep, staff: StaffDep) -> list[dict[str, object]]:
    return settlement.list_runs(ctx, staff)


@router.get("/settlement/runs/{run_id}", responses=openapi.errors(404))
def get_run(ctx: ContextDep, staff: StaffDep, run_id: IdPath) -> dict[str, object]:
    return settlement.get_run(ctx, staff, run_id)


@router.get(
    "/settlement/runs/{run_id}/files/{number}",
    response_class=openapi.XmlFile,
    responses=openapi.errors(404, 409),
)
def sepa_file(ctx: ContextDep, staff: StaffDep, run_id: IdPath, number: IdPath) -> Response:
    """The bank file; the first download ends the time in which the run can be cancelled."""
    content = settlement.sepa_file(ctx, staff, run_id, number)
    return Response(
        content,
        media_type="application/xml",
        headers={"Content-Disposition": f'attachment; filename="hcard-run{run_id}-{number}.xml"'},
    )


@router.post("/settlement/runs/{run_id}/cancel", responses=openapi.errors(404, 409))
def cancel_run(ctx: ContextDep, staff: StaffDep, run_id: IdPath) -> dict[str, object]:
    return settlement.cancel_run(ctx, staff, run_id)


@router.get(
    "/settlement/runs/{run_id}/statements/{merchant_id}.pdf",
    response_class=openapi.PdfFile,
    responses=openapi.errors(404),
)
def statement_pdf(
    ctx: ContextDep, staff: StaffDep, run_id: IdPath, merchant_id: IdPath
) -> Response:
    pdf = settlement.statement_pdf(ctx, staff, run_id, merchant_id)
    return Response(pdf, media_type="application/pdf")


@router.get(
    "/settlement/runs/{run_id}/statements/{merchant_id}.html",
    response_class=HTMLResponse,
    responses=openapi.errors(404),
)
def statement_html(
    ctx: ContextDep, staff: StaffDep, run_id: IdPath, merchant_id: IdPath
) -> HTMLResponse:
    return HTMLResponse(settlement.statement_html(ctx, staff, run_id, merchant_id))


@router.get(
    "/settlement/runs/{run_id}/statements/{merchant_id}.csv",
    response_class=openapi.CsvFile,
    responses=openapi.errors(404),
)
def statement_csv(
    ctx: ContextDep, staff: StaffDep, run_id: IdPath, merchant_id: IdPath
) -> Response:
    return Response(
        settlement.statement_csv(ctx, staff, run_id, merchant_id), media_type="text/csv"
    )


@router.get("/merchants/{merchant_id}/statements", responses=openapi.errors(404))
def merchant_statements(
    ctx: ContextDep, staff: StaffDep, merchant_id: IdPath
) -> list[dict[str, object]]:
    return settlement.merchant_statements(ctx, staff, merchant_id)


@router.post(
    "/bank/statements",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A camt.053 or camt.054 XML file, as the bank sends it.",
            "content": {"application/xml": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses=openapi.errors(409),
)
async def import_statement(ctx: ContextDep, staff: StaffDep, request: Request) -> dict[str, object]:
    """Match and book every line once; importing the same statement again books nothing."""
    data = await request.body()
    if len(data) > STATEMENT_MAX_BYTES:
        raise HCardError(Code.BODY_TOO_LARGE)
    return await run_in_threadpool(bank.import_statement, ctx, staff, data)


@router.get("/bank/unmatched")
def unmatched(ctx: ContextDep, staff: StaffDep) -> list[dict[str, object]]:
    return bank.unmatched_lines(ctx, staff)


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    card_number: CardNumber


LineKey = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")]


@router.post("/bank/lines/{key}/assign", responses=openapi.errors(404, 409))
def assign_line(
    ctx: ContextDep, staff: StaffDep, key: LineKey, body: AssignIn
) -> dict[str, object]:
    """An unmatched incoming transfer meant for a card: top that card up with it."""
    return bank.assign_to_card(ctx, staff, key, body.card_number)


@router.post("/bank/lines/{key}/fee-withdrawal", responses=openapi.errors(404, 409))
def fee_withdrawal(ctx: ContextDep, staff: StaffDep, key: LineKey) -> dict[str, object]:
    """An unmatched outgoing line that is the operator's own money (fees, bank charges)."""
    return bank.book_fee_withdrawal(ctx, staff, key)


@router.get("/settlement/float-check")
def float_check(ctx: ContextDep, staff: StaffDep) -> dict[str, object]:
    return bank.float_check(ctx, staff)


@router.get("/figures/payments-12-months")
def payments_12_months(ctx: ContextDep, staff: StaffDep) -> dict[str, object]:
    """The running sum of payments over the last 12 months against the €1 million line."""
    return settlement.payments_last_12_months(ctx, staff)


async def period_query(
    month: Annotated[str | None, Query(max_length=7, description="YYYY-MM")] = None,
    first_day: dt.date | None = None,
    last_day: dt.date | None = None,
) -> settlement.Period:
    """A period in the query: `?month=2026-11`, or `?first_day=…&last_day=…` (inclusive)."""
    return RunIn(month=month, first_day=first_day, last_day=last_day).period()


PeriodDep = Annotated[settlement.Period, Depends(period_query)]


@router.get("/exports/datev", response_class=openapi.CsvFile)
def datev(ctx: ContextDep, staff: StaffDep, period: PeriodDep) -> Response:
    """The DATEV Buchungsstapel (EXTF 700) of a period, for the tax adviser."""
    text = settlement.datev_export(ctx, staff, period)
    return Response(
        text.encode("cp1252", errors="replace"),
        media_type="text/csv; charset=windows-1252",
        headers={"Content-Disposition": 'attachment; filename="EXTF_Buchungsstapel.csv"'},
    )


@router.get("/exports/transactions.csv", response_class=openapi.CsvFile)
def transactions_csv(ctx: ContextDep, staff: StaffDep, period: PeriodDep) -> Response:
    """Every posting of every transaction of a period (UTF-8 CSV)."""
    text = settlement.transactions_export(ctx, staff, period)
    return Response(text, media_type="text/csv; charset=utf-8")
