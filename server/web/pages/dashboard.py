"""The office's overview (`/office/`) and the float check on request (`POST /office/float-check`).

The overview is a handful of small queries (`services/dashboard.py`): day totals come from
`daily_totals`, so it answers in milliseconds on a town's year of payments. The float check
is not one of them: it proves the whole ledger first (`ledger.check`, seconds on a big
database), so the overview shows what it can tell at once (no statement yet, or the last
statement and the result of the last check this server made) and runs the full check only
when someone asks for it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from babel.dates import format_date, format_skeleton
from fastapi import APIRouter, Request
from fastapi.responses import Response

from hcard.i18n import N_, Text, text
from hcard.money import format_cents
from hcard.server.api.deps import ContextDep
from hcard.server.services import bank
from hcard.server.services import dashboard as service
from hcard.server.services.dashboard import DayTotal
from hcard.server.web import charts
from hcard.server.web.auth import OfficeUser
from hcard.server.web.templating import LOCALES, language, render

router = APIRouter(include_in_schema=False)

#: on the day chart every fifth day is labelled (counted back from today)
_DAY_LABEL_EVERY = 5

#: what each difference of the float check means, for someone who is not a bookkeeper
DIFFERENCES: dict[str, Text] = {
    bank.Difference.NO_STATEMENT: N_("No bank statement has been uploaded yet."),
    bank.Difference.BANK_BALANCE: N_(
        "The bank's balance on the last statement is not what the books say the bank should"
        " hold (difference {amount}). A bank line may not be uploaded or assigned yet."
    ),
    bank.Difference.IN_TRANSIT: N_(
        "The payouts on their way to merchants in the books differ from the payouts sent to"
        " the bank (difference {amount})."
    ),
    bank.Difference.UNMATCHED_OUTFLOW: N_(
        "Money left the bank account on lines nobody has explained yet ({amount}). Look at the"
        " open bank lines in the monthly close."
    ),
    bank.Difference.LEDGER: N_(
        "The books do not add up (the ledger check failed). Please call technical support."
    ),
}


@dataclass(frozen=True)
class FloatResult:
    """The last float check this server made: when, whether all is well, what differs."""

    checked_s: float
    ok: bool
    report: dict[str, Any]


def _short_day(day: dt.date, lang: str) -> str:
    """`3.12.` (German) or `03/12` (English): fits below a day's bars."""
    return format_skeleton("dM", day, locale=LOCALES[lang])


def _week_labels(weeks: Sequence[DayTotal], lang: str) -> tuple[list[str], list[str]]:
    """Each week's short label on the chart and its long one in the table."""
    short = [text(N_("Wk {week}"), lang, week=w.day.isocalendar().week) for w in weeks]
    long = [
        text(
            N_("Week {week}, from {day}"),
            lang,
            week=w.day.isocalendar().week,
            day=format_date(w.day, "medium", locale=LOCALES[lang]),
        )
        for w in weeks
    ]
    return short, long


def _chart(totals: Sequence[DayTotal], label_every: int) -> charts.BarChart:
    return charts.bar_chart(
        [[t.topup_cents for t in totals], [t.payment_cents for t in totals]],
        label_every=label_every,
        unit=100,
    )


def _last_float_check(request: Request) -> FloatResult | None:
    found = getattr(request.app.state, "last_float_check", None)
    return found if isinstance(found, FloatResult) else None


def _differences(report: dict[str, Any], lang: str) -> list[str]:
    """Each difference of a float check report in plain words."""
    shown = []
    for difference in report["differences"]:
        cents = difference.get("cents")
        amount = "" if cents is None else format_cents(int(cents), lang)
        shown.append(text(DIFFERENCES[difference["name"]], lang, amount=amount))
    return shown


@router.get("/office/", name="office_dashboard")
def dashboard(request: Request, ctx: ContextDep, staff: OfficeUser) -> Response:
    lang = language(request)
    view = service.overview(ctx, staff)
    last_check = _last_float_check(request)
    week_labels, week_long_labels = _week_labels(view.weeks, lang)
    return render(
        request,
        "dashboard/index.html",
        title=text(N_("Overview"), lang),
        view=view,
        share_percent=round(view.share_of_threshold * 100, 1),
        day_chart=_chart(view.days, _DAY_LABEL_EVERY),
        day_labels=[_short_day(t.day, lang) for t in view.days],
        day_long_labels=[format_skeleton("yMMMEd", t.day, locale=LOCALES[lang]) for t in view.days],
        week_chart=_chart(view.weeks, 1),
        week_labels=week_labels,
        week_long_labels=week_long_labels,
        float_check=last_check,
        float_differences=_differences(last_check.report, lang) if last_check else [],
    )


@router.post("/office/float-check", name="office_float_check")
def float_check(request: Request, ctx: ContextDep, staff: OfficeUser) -> Response:
    """Run the float check now and show what it found. A form (POST, with its token, in the
    audit log), not a link: it reads the whole ledger, seconds on a big database, and
    keeps its result for the overview."""
    lang = language(request)
    report = bank.float_check(ctx, staff)
    result = FloatResult(ctx.now(), bool(report["ok"]), report)
    request.app.state.last_float_check = result
    return render(
        request,
        "dashboard/float_check.html",
        title=text(N_("Float check"), lang),
        result=result,
        differences=_differences(report, lang),
    )
