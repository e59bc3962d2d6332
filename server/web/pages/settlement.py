"""The monthly close ("Monatsabschluss"), guided step by step for the office.

1. choose the month (the oldest one not yet settled: runs go in order),
2. check the figures (`settlement.preview_run`: the run's own rules, nothing booked),
3. create the run (booked, bank file made; the statements follow in the background),
4. download the bank file and upload it in the online banking (from then on the run cannot
   be cancelled; before that it can),
5. upload the bank's statement (camt.053/054): executed and returned payouts, top-ups by
   transfer; lines nobody could match are assigned by hand here,
6. done: every payout paid or back, each merchant's statement ready (here and in their
   portal).

Where a run stands is read from the run itself (`_stage`), so the office can leave and come
back at any step. Every refusal is shown on the page it came from, in the page's language.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from enum import IntEnum, StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response

from hcard.errors import Code, HCardError, message
from hcard.i18n import N_, Text, text
from hcard.server.api.deps import ContextDep
from hcard.server.api.errors import status_of
from hcard.server.api.settlement import STATEMENT_MAX_BYTES
from hcard.server.api.staff import IdPath
from hcard.server.context import Context
from hcard.server.services import bank, settlement
from hcard.server.services.settlement import Period
from hcard.server.services.users import Staff
from hcard.server.vocabulary import LineMatch, PayoutStatus, RunStatus
from hcard.server.web import statements
from hcard.server.web.auth import OfficeUser
from hcard.server.web.notices import done_notices, redirect_done
from hcard.server.web.statements import StatementFormat
from hcard.server.web.templating import language, render

router = APIRouter(include_in_schema=False)

HOME = "/office/settlement"
LineKey = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")]
MonthText = Annotated[str, Query(max_length=7)]
#: a month as a form sends it (`2026-11`); [0-9], not \d, which takes any script's digits
_MONTH = re.compile(r"(20[0-9]{2})-(0[1-9]|1[0-2])")
#: how far back the month list goes when nothing was ever settled
_FIRST_YEAR_MONTHS = 12


class Step(IntEnum):
    MONTH = 1
    CHECK = 2
    CREATE = 3
    DOWNLOAD = 4
    BANK = 5
    DONE = 6


_STEP_NAMES: dict[Step, Text] = {
    Step.MONTH: N_("Choose the month"),
    Step.CHECK: N_("Check the figures"),
    Step.CREATE: N_("Create the run"),
    Step.DOWNLOAD: N_("Download the bank file"),
    Step.BANK: N_("Upload the bank statement"),
    Step.DONE: N_("Done"),
}
_RUN_STATUS: dict[RunStatus, tuple[Text, str]] = {
    RunStatus.CREATED: (N_("Booked, bank file not downloaded yet"), "warn"),
    RunStatus.DOWNLOADED: (N_("Bank file downloaded"), "ok"),
    RunStatus.CANCELLED: (N_("Cancelled"), "bad"),
}
_LINE_MATCH: dict[LineMatch, Text] = {
    LineMatch.PAYOUT_EXECUTED: N_("Payout paid by the bank"),
    LineMatch.PAYOUT_RETURNED: N_("Payout came back"),
    LineMatch.CARD_TOPUP: N_("Card topped up by bank transfer"),
    LineMatch.CASH_DEPOSIT: N_("Office cash paid into the bank"),
    LineMatch.FEE_WITHDRAWAL: N_("Operator's own money (fees, bank charges)"),
    LineMatch.UNMATCHED: N_("Not recognised: needs you (see below)"),
}


class Done(StrEnum):
    """What a redirect after a form tells the next page (`?done=`)."""

    CREATED = "created"
    CANCELLED = "cancelled"
    ASSIGNED = "assigned"
    FEES = "fees"


_DONE: dict[Done, Text] = {
    Done.CREATED: N_(
        "The run is created and booked, and the bank file is ready. Next: download it."
    ),
    Done.CANCELLED: N_(
        "The run is cancelled: every booking of it was reversed. You can settle the month again."
    ),
    Done.ASSIGNED: N_("The transfer was booked onto the card."),
    Done.FEES: N_("The line was booked as the operator's own money."),
}


def _steps(current: Step | None, lang: str) -> list[dict[str, object]]:
    """The steps for `ol.steps`: done before the current one (none current: a cancelled run)."""
    return [
        {
            "label": text(name, lang),
            "done": current is not None and step < current,
            "current": step == current,
        }
        for step, name in _STEP_NAMES.items()
    ]


def _stage(run: dict[str, Any]) -> Step | None:
    """Where a run stands: its file to download, the bank to hear from, or done."""
    if run["status"] == RunStatus.CANCELLED:
        return None
    if run["status"] == RunStatus.CREATED:
        return Step.DOWNLOAD if run["files"] else Step.DONE  # nothing to transfer: no file
    if any(line["payout_status"] == PayoutStatus.SENT for line in run["lines"]):
        return Step.BANK
    return Step.DONE


# --- step 1: choose the month ----------------------------------------------------------


def _months(ctx: Context, runs: list[dict[str, Any]]) -> tuple[list[Period], Period | None]:
    """The months that can be settled now, oldest first, and the one to suggest: the
    oldest not yet settled (runs go in order: a month skipped could never be settled)."""
    this_month = Period.containing(settlement.local_day(ctx.now()))
    settled = [run for run in runs if run["status"] != RunStatus.CANCELLED]
    if settled:  # the first whole month after the last settled day
        after = dt.date.fromisoformat(max(str(run["last_day"]) for run in settled))
        after += dt.timedelta(days=1)
        start = Period.containing(after).months_later(0 if after.day == 1 else 1)
    else:
        start = this_month.months_later(-_FIRST_YEAR_MONTHS)
    months = []
    month = start
    while month.first < this_month.first:
        months.append(month)
        month = month.months_later(1)
    if not months:
        return [], None
    return months, months[0] if settled else months[-1]


def _runs(runs: list[dict[str, Any]], lang: str) -> list[dict[str, Any]]:
    for run in runs:
        label, badge = _RUN_STATUS[RunStatus(str(run["status"]))]
        run["label"] = statements.period_label(str(run["first_day"]), str(run["last_day"]), lang)
        run["status_text"], run["badge"] = text(label, lang), badge
    return runs


def _open_run(ctx: Context, staff: Staff, runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest run, when its close is not finished yet (to continue with)."""
    latest = next((run for run in runs if run["status"] != RunStatus.CANCELLED), None)
    if latest is None:
        return None
    full = settlement.get_run(ctx, staff, int(latest["run_id"]))
    return latest if _stage(full) != Step.DONE else None


def _start_page(
    request: Request,
    ctx: Context,
    staff: Staff,
    *,
    chosen: str = "",
    refused: HCardError | None = None,
    done: str = "",
) -> Response:
    """Step 1; after a refused preview or run, with its message and status."""
    lang = language(request)
    runs = _runs(settlement.list_runs(ctx, staff), lang)
    months, suggested = _months(ctx, runs)
    selected = chosen or (f"{suggested.first:%Y-%m}" if suggested else "")
    return render(
        request,
        "settlement/start.html",
        status_code=status_of(refused.code) if refused else 200,
        title=text(N_("Monthly close"), lang),
        notices=done_notices(done, _DONE, lang),
        steps=_steps(Step.MONTH, lang),
        months=[
            {"value": f"{m.first:%Y-%m}", "label": statements.month_label(m, lang)} for m in months
        ],
        selected=selected,
        error=message(refused.code, lang) if refused else "",
        open_run=_open_run(ctx, staff, runs),
        settled=[run for run in runs if run["status"] != RunStatus.CANCELLED],
        runs=runs,
    )


@router.get(HOME, name="settlement_start")
def start(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    return _start_page(request, ctx, staff, done=done)


def month_period(month: str) -> Period:
    """The month a form or link names (`2026-11`), else PERIOD_INVALID: the close's pages
    and the merchant portal read months alike."""
    if not _MONTH.fullmatch(month):
        raise HCardError(Code.PERIOD_INVALID)
    return Period.month(month)


# --- steps 2 and 3: check the figures, create the run ----------------------------------


@router.get(HOME + "/preview", name="settlement_preview")
def preview(
    request: Request, ctx: ContextDep, staff: OfficeUser, month: MonthText = ""
) -> Response:
    try:
        period = month_period(month)
        figures = settlement.preview_run(ctx, staff, period)
    except HCardError as error:
        return _start_page(request, ctx, staff, chosen=month, refused=error)
    return _preview_page(request, month, period, figures)


def _preview_page(
    request: Request,
    month: str,
    period: Period,
    figures: dict[str, Any],
    *,
    error: str = "",
    status_code: int = 200,
) -> Response:
    lang = language(request)
    label = statements.month_label(period, lang)
    return render(
        request,
        "settlement/preview.html",
        status_code=status_code,
        title=text(N_("Monthly close {month}: check the figures"), lang, month=label),
        steps=_steps(Step.CHECK, lang),
        month=month,
        label=label,
        figures=figures,
        lines=figures["lines"],
        outcome=statements.labels(statements.OUTCOME, lang),
        error=error,
    )


#: runs whose statements are being made in this process (one maker per run)
_MAKING: set[int] = set()
_MAKING_LOCK = threading.Lock()


def _make_statements(ctx: Context, run_id: int) -> None:
    """Make the run's statement PDFs in the background, once at a time per run (the pages
    serve a statement not made yet by making it then)."""
    with _MAKING_LOCK:
        if run_id in _MAKING:
            return
        _MAKING.add(run_id)

    def work() -> None:
        try:
            settlement.make_statements(ctx, run_id)
        finally:
            with _MAKING_LOCK:
                _MAKING.discard(run_id)

    threading.Thread(target=work, name=f"statements-{run_id}", daemon=True).start()


@router.post(HOME + "/runs", name="settlement_create")
def create(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    month: Annotated[str, Form(max_length=7)] = "",
) -> Response:
    try:
        period = month_period(month)
        run: dict[str, Any] = settlement.create_run(ctx, staff, period)
    except HCardError as error:
        return _start_page(request, ctx, staff, chosen=month, refused=error)
    run_id = int(run["run_id"])
    _make_statements(ctx, run_id)
    return redirect_done(f"{HOME}/runs/{run_id}", Done.CREATED)


# --- steps 4 to 6: the run ------------------------------------------------------------


def _run_page(
    request: Request,
    ctx: Context,
    staff: Staff,
    run_id: int,
    *,
    status_code: int = 200,
    error: str = "",
    done: str = "",
    imported: dict[str, Any] | None = None,
    line_error: dict[str, str] | None = None,
) -> Response:
    lang = language(request)
    run: dict[str, Any] = settlement.get_run(ctx, staff, run_id)
    stage = _stage(run)
    label = statements.period_label(str(run["first_day"]), str(run["last_day"]), lang)
    if stage == Step.DONE and run["statements_done"] < run["merchants"]:
        _make_statements(ctx, run_id)
    status_text, badge = _RUN_STATUS[RunStatus(str(run["status"]))]
    booked_lines = []
    if imported is not None:
        booked_lines = bank.statement_lines(ctx, staff, int(imported["statement_row"]))
    return render(
        request,
        "settlement/run.html",
        status_code=status_code,
        title=text(N_("Monthly close {month}"), lang, month=label),
        notices=done_notices(done, _DONE, lang),
        steps=_steps(stage, lang),
        stage=int(stage) if stage is not None else 0,
        step=Step,
        run=run,
        label=label,
        status_text=text(status_text, lang),
        badge=badge,
        cancellable=run["status"] == RunStatus.CREATED,
        cancelled=run["status"] == RunStatus.CANCELLED,
        outcome=statements.labels(statements.OUTCOME, lang),
        payout_status=statements.labels(statements.PAYOUT_STATUS, lang),
        returned=[line for line in run["lines"] if line["payout_status"] == PayoutStatus.RETURNED],
        waiting=[line for line in run["lines"] if line["payout_status"] == PayoutStatus.SENT],
        open_lines=bank.unmatched_lines(ctx, staff) if stage in (Step.BANK, Step.DONE) else [],
        imported=imported,
        booked_lines=booked_lines,
        line_match=statements.labels(_LINE_MATCH, lang),
        error=error,
        line_error=line_error or {},
        max_mb=STATEMENT_MAX_BYTES // (1024 * 1024),
    )


@router.get(HOME + "/runs/{run_id}", name="settlement_run")
def run_page(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    run_id: IdPath,
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    return _run_page(request, ctx, staff, run_id, done=done)


@router.get(HOME + "/runs/{run_id}/files/{number}", name="settlement_file")
def bank_file(ctx: ContextDep, staff: OfficeUser, run_id: IdPath, number: IdPath) -> Response:
    """The bank file; its first download ends the time in which the run can be cancelled."""
    content = settlement.sepa_file(ctx, staff, run_id, number)
    return Response(
        content,
        media_type="application/xml",
        headers={
            "Content-Disposition": (
                f'attachment; filename="hattingen-card-run-{run_id}-file-{number}.xml"'
            ),
            "Cache-Control": "no-store",
        },
    )


@router.post(HOME + "/runs/{run_id}/cancel", name="settlement_cancel")
def cancel(request: Request, ctx: ContextDep, staff: OfficeUser, run_id: IdPath) -> Response:
    try:
        settlement.cancel_run(ctx, staff, run_id)
    except HCardError as error:
        return _run_page(
            request,
            ctx,
            staff,
            run_id,
            status_code=status_of(error.code),
            error=message(error.code, language(request)),
        )
    return redirect_done(HOME, Done.CANCELLED)


@router.post(HOME + "/runs/{run_id}/bank-statement", name="settlement_bank_statement")
def upload_statement(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    run_id: IdPath,
    statement: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Book a bank statement; the page then shows what each of its lines was found to be
    (importing the same file again books nothing twice)."""
    lang = language(request)
    if statement is None or not statement.filename:
        return _run_page(
            request,
            ctx,
            staff,
            run_id,
            status_code=400,
            error=text(N_("Please choose the bank statement file first."), lang),
        )
    data = statement.file.read(STATEMENT_MAX_BYTES + 1)
    try:
        if len(data) > STATEMENT_MAX_BYTES:
            raise HCardError(Code.BODY_TOO_LARGE)
        imported = bank.import_statement(ctx, staff, data)
    except HCardError as error:
        return _run_page(
            request,
            ctx,
            staff,
            run_id,
            status_code=status_of(error.code),
            error=message(error.code, lang),
        )
    return _run_page(request, ctx, staff, run_id, imported=imported)


@router.post(HOME + "/runs/{run_id}/lines/{key}/assign", name="settlement_assign")
def assign(
    request: Request,
    ctx: ContextDep,
    staff: OfficeUser,
    run_id: IdPath,
    key: LineKey,
    card_number: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """An incoming transfer the statement did not tie to a card: top that card up with it."""
    try:
        bank.assign_to_card(ctx, staff, key, card_number)
    except HCardError as error:
        return _line_refused(request, ctx, staff, run_id, key, error)
    return redirect_done(f"{HOME}/runs/{run_id}", Done.ASSIGNED)


@router.post(HOME + "/runs/{run_id}/lines/{key}/fee-withdrawal", name="settlement_fees")
def fee_withdrawal(
    request: Request, ctx: ContextDep, staff: OfficeUser, run_id: IdPath, key: LineKey
) -> Response:
    """Money that left the bank as the operator's own (fees taken out, bank charges)."""
    try:
        bank.book_fee_withdrawal(ctx, staff, key)
    except HCardError as error:
        return _line_refused(request, ctx, staff, run_id, key, error)
    return redirect_done(f"{HOME}/runs/{run_id}", Done.FEES)


def _line_refused(
    request: Request, ctx: Context, staff: Staff, run_id: int, key: str, error: HCardError
) -> Response:
    lang = language(request)
    return _run_page(
        request,
        ctx,
        staff,
        run_id,
        status_code=status_of(error.code),
        error=message(error.code, lang),
        line_error={"key": key, "message": message(error.code, lang)},
    )


def _statement(
    ctx: Context, staff: Staff, run_id: int, merchant_id: int, kind: StatementFormat
) -> Response:
    return statements.statement_file(ctx, staff, run_id, merchant_id, kind)


@router.get(HOME + "/runs/{run_id}/statements/{merchant_id}.html", name="settlement_html")
def statement_html(
    ctx: ContextDep, staff: OfficeUser, run_id: IdPath, merchant_id: IdPath
) -> Response:
    return _statement(ctx, staff, run_id, merchant_id, StatementFormat.HTML)


@router.get(HOME + "/runs/{run_id}/statements/{merchant_id}.pdf", name="settlement_pdf")
def statement_pdf(
    ctx: ContextDep, staff: OfficeUser, run_id: IdPath, merchant_id: IdPath
) -> Response:
    return _statement(ctx, staff, run_id, merchant_id, StatementFormat.PDF)


@router.get(HOME + "/runs/{run_id}/statements/{merchant_id}.csv", name="settlement_csv")
def statement_csv(
    ctx: ContextDep, staff: OfficeUser, run_id: IdPath, merchant_id: IdPath
) -> Response:
    return _statement(ctx, staff, run_id, merchant_id, StatementFormat.CSV)
