"""The merchant portal: a merchant's own payments, payouts, statements, tills and details.

Every page takes the merchant from the logged-in user (`MerchantUser`), never from the URL:
a statement's URL names only the run, and the service refuses a run the merchant was not
in (404). Nothing here can show another merchant's data.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hcard.errors import HCardError
from hcard.i18n import N_, text
from hcard.server.api.deps import ContextDep
from hcard.server.api.staff import IdPath
from hcard.server.context import Context
from hcard.server.services import merchants, portal, settlement
from hcard.server.services.portal import Day
from hcard.server.services.settlement import Period
from hcard.server.vocabulary import TerminalStatus
from hcard.server.web import charts, statements
from hcard.server.web.auth import MerchantUser
from hcard.server.web.pages.settlement import MonthText, month_period
from hcard.server.web.statements import StatementFormat
from hcard.server.web.templating import language, render

router = APIRouter(include_in_schema=False)

_TERMINAL_STATUS = {
    TerminalStatus.ACTIVE: (N_("Active"), "ok"),
    TerminalStatus.PENDING: (N_("Not yet set up"), "warn"),
    TerminalStatus.REVOKED: (N_("Switched off for good"), "bad"),
}


def _area(lang: str) -> str:
    return text(N_("Merchant portal"), lang)


def this_month(ctx: Context) -> Period:
    return Period.containing(settlement.local_day(ctx.now()))


def _chart(days: list[Day]) -> charts.BarChart:
    """Payments less voids per day (a day with more voids draws no bar; the table has it)."""
    return charts.bar_chart([[day.net_cents for day in days]], label_every=5, unit=100)


def _totals(days: list[Day]) -> dict[str, int]:
    return {
        "payments": sum(day.payments for day in days),
        "payments_cents": sum(day.payments_cents for day in days),
        "voids": sum(day.voids for day in days),
        "voids_cents": sum(day.voids_cents for day in days),
        "net_cents": sum(day.net_cents for day in days),
    }


@router.get("/portal/", name="portal_overview")
def overview(request: Request, ctx: ContextDep, staff: MerchantUser) -> Response:
    lang = language(request)
    month = this_month(ctx)
    days = portal.payments_per_day(ctx, staff, month)
    tills = portal.terminals_of(ctx, staff)
    for till in tills:
        label, badge = _TERMINAL_STATUS[TerminalStatus(str(till["status"]))]
        till["status_text"], till["badge"] = text(label, lang), badge
    return render(
        request,
        "portal/overview.html",
        title=text(N_("Overview"), lang),
        area=_area(lang),
        merchant=merchants.get_merchant(ctx, staff, portal.merchant_of(staff)),
        month=statements.month_label(month, lang),
        totals=_totals(days),
        payout=portal.last_payout(ctx, staff),
        payout_status=statements.labels(statements.PAYOUT_STATUS, lang),
        terminals=tills,
    )


@router.get("/portal/payments", name="portal_payments")
def payments(
    request: Request, ctx: ContextDep, staff: MerchantUser, month: MonthText = ""
) -> Response:
    lang = language(request)
    current = this_month(ctx)
    period, error = current, ""
    if month:
        try:
            period = month_period(month)
        except HCardError:
            error = text(N_("Please choose a month as year and month, for example {example}."),
                         lang, example=f"{current.first:%Y-%m}")  # fmt: skip
    days = portal.payments_per_day(ctx, staff, period)
    return render(
        request,
        "portal/payments.html",
        status_code=400 if error else 200,
        title=text(N_("Payments"), lang),
        area=_area(lang),
        error=error,
        month_value=f"{period.first:%Y-%m}",
        month=statements.month_label(period, lang),
        previous=f"{period.months_later(-1).first:%Y-%m}",
        following=f"{period.months_later(1).first:%Y-%m}" if period.first < current.first else "",
        days=days,
        day_labels=[statements.short_day(day.day, lang) for day in days],
        totals=_totals(days),
        chart=_chart(days),
        best=max(days, key=lambda day: day.net_cents),
    )


@router.get("/portal/statements", name="portal_statements")
def statement_list(request: Request, ctx: ContextDep, staff: MerchantUser) -> Response:
    lang = language(request)
    found = settlement.merchant_statements(ctx, staff, portal.merchant_of(staff))
    for statement in found:
        statement["label"] = statements.period_label(
            str(statement["first_day"]), str(statement["last_day"]), lang
        )
    return render(
        request,
        "portal/statements.html",
        title=text(N_("Statements"), lang),
        area=_area(lang),
        statements=found,
        payout_status=statements.labels(statements.PAYOUT_STATUS, lang),
        outcome=statements.labels(statements.OUTCOME, lang),
    )


def _statement(ctx: Context, staff: MerchantUser, run_id: int, kind: StatementFormat) -> Response:
    return statements.statement_file(ctx, staff, run_id, portal.merchant_of(staff), kind)


@router.get("/portal/statements/{run_id}.html", name="portal_statement_html")
def statement_html(ctx: ContextDep, staff: MerchantUser, run_id: IdPath) -> Response:
    return _statement(ctx, staff, run_id, StatementFormat.HTML)


@router.get("/portal/statements/{run_id}.pdf", name="portal_statement_pdf")
def statement_pdf(ctx: ContextDep, staff: MerchantUser, run_id: IdPath) -> Response:
    return _statement(ctx, staff, run_id, StatementFormat.PDF)


@router.get("/portal/statements/{run_id}.csv", name="portal_statement_csv")
def statement_csv(ctx: ContextDep, staff: MerchantUser, run_id: IdPath) -> Response:
    return _statement(ctx, staff, run_id, StatementFormat.CSV)


@router.get("/portal/details", name="portal_details")
def details(request: Request, ctx: ContextDep, staff: MerchantUser) -> Response:
    lang = language(request)
    config = ctx.settings.settlement
    return render(
        request,
        "portal/details.html",
        title=text(N_("Our details"), lang),
        area=_area(lang),
        merchant=merchants.get_merchant(ctx, staff, portal.merchant_of(staff)),
        office_name=config.operator_name,
        office_address=list(config.operator_address_lines),
    )
