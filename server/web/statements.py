"""A merchant's statement as a file for the browser: the office's close and the portal both
serve it (HTML to read, PDF to keep, CSV for the merchant's own bookkeeping), and the words
both use for what a run decided and where a payout stands.

Served with its content type, a file name and no caching (money and names). The statement's
HTML is one self-contained document with its own `<style>` (the same template as the PDF):
it gets a policy of its own that allows exactly that style block by its hash and nothing
else, no script, no frame, no form (`SecurityHeaders` keeps a policy an answer sets).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from babel.dates import format_date
from fastapi.responses import Response

from hcard.i18n import N_, Text, text
from hcard.server.context import Context
from hcard.server.services import settlement
from hcard.server.services.settlement import Period
from hcard.server.services.users import Staff
from hcard.server.vocabulary import PayoutOutcome, PayoutStatus

Word = TypeVar("Word", bound=StrEnum)

#: what a run decided for a merchant, in plain words
OUTCOME: dict[PayoutOutcome, Text] = {
    PayoutOutcome.TRANSFER: N_("Paid by bank transfer"),
    PayoutOutcome.NOTHING_DUE: N_("Nothing to pay out: carried forward to the next month"),
    PayoutOutcome.BELOW_MINIMUM: N_("Below the minimum payout: carried forward"),
    PayoutOutcome.NO_VALID_IBAN: N_("Held back: no valid IBAN; carried forward"),
}
#: where a payout stands
PAYOUT_STATUS: dict[PayoutStatus, Text] = {
    PayoutStatus.NONE: N_("No transfer"),
    PayoutStatus.PENDING: N_("Prepared, not yet sent to the bank"),
    PayoutStatus.SENT: N_("Sent to the bank"),
    PayoutStatus.EXECUTED: N_("Paid"),
    PayoutStatus.RETURNED: N_("Came back from the bank"),
    PayoutStatus.CANCELLED: N_("Cancelled"),
}


def month_label(period: Period, lang: str) -> str:
    """ "November 2026" in the page's language."""
    return format_date(period.first, "LLLL y", locale=lang)


def short_day(day: dt.date, lang: str) -> str:
    """ "Tue 3" / "Di. 3": a day in a table whose caption names the month."""
    return f"{format_date(day, 'EEE', locale=lang)} {day.day}"


def period_label(first_day: str, last_day: str, lang: str) -> str:
    """A run's period: its month, or its first and last day."""
    period = Period(dt.date.fromisoformat(first_day), dt.date.fromisoformat(last_day))
    if period.whole_month:
        return month_label(period, lang)
    first, last = (format_date(day, "medium", locale=lang) for day in (period.first, period.last))
    return f"{first} – {last}"


def labels(words: Mapping[Word, Text], lang: str) -> dict[str, str]:
    """`words` in the page's language, for a template to look up by the stored value."""
    return {str(key): text(value, lang) for key, value in words.items()}


_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)


class StatementFormat(StrEnum):
    HTML = "html"
    PDF = "pdf"
    CSV = "csv"


_MEDIA_TYPES = {
    StatementFormat.HTML: "text/html; charset=utf-8",
    StatementFormat.PDF: "application/pdf",
    StatementFormat.CSV: "text/csv; charset=utf-8",
}
#: read in the browser, or saved (a CSV is for a spreadsheet)
_DISPOSITIONS = {
    StatementFormat.HTML: "inline",
    StatementFormat.PDF: "inline",
    StatementFormat.CSV: "attachment",
}


def _hash(block: str) -> str:
    return base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()


def _policy_for(html: str) -> str:
    hashes = " ".join(f"'sha256-{_hash(block)}'" for block in _STYLE.findall(html))
    styles = hashes or "'none'"
    return (
        f"default-src 'none'; style-src {styles}; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def statement_file(
    ctx: Context, staff: Staff, run_id: int, merchant_id: int, kind: StatementFormat
) -> Response:
    """The statement of `merchant_id` in run `run_id`; the service checks that `staff` may
    read it (a merchant only its own: another's is refused, a run without it `not_found`)."""
    headers = {
        "Content-Disposition": (
            f'{_DISPOSITIONS[kind]}; filename="statement-{run_id}-{merchant_id}.{kind}"'
        ),
        "Cache-Control": "no-store",
    }
    content: str | bytes
    if kind is StatementFormat.PDF:
        content = settlement.statement_pdf(ctx, staff, run_id, merchant_id)
    elif kind is StatementFormat.CSV:
        content = settlement.statement_csv(ctx, staff, run_id, merchant_id)
    else:
        content = settlement.statement_html(ctx, staff, run_id, merchant_id)
        headers["Content-Security-Policy"] = _policy_for(content)
    return Response(content, media_type=_MEDIA_TYPES[kind], headers=headers)
