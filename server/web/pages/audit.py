"""The audit log (admins only): every staff action, newest first, a page at a time.

Each row says when, who (and their role), what (the action's route, in words where this
page knows it, else its name), to which object (the path's ids), from which address, and
whether it was done or refused. Form values are never logged (`services/audit.py`), so
the page shows none either. Older rows: `?before_id=` the last id of the page.
"""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from hcard.encoding import MAX_ID
from hcard.i18n import N_, Text, text
from hcard.server.api.deps import ContextDep
from hcard.server.services import audit
from hcard.server.web.auth import AdminUser
from hcard.server.web.pages.users import role_label
from hcard.server.web.templating import language, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 100

#: the actions by their route's name (pages and JSON API); an unknown one shows its name
ACTIONS: dict[str, Text] = {
    # logging in and out
    "office_login": N_("Log in"),
    "office_logout": N_("Log out"),
    "login": N_("Log in (API)"),
    "logout": N_("Log out (API)"),
    "account_password": N_("Change own password"),
    "account_logout_everywhere": N_("Log out everywhere"),
    # users
    "user_create": N_("Create user"),
    "create_user": N_("Create user"),
    "user_role": N_("Change role"),
    "user_deactivate": N_("Deactivate user"),
    "user_activate": N_("Activate user"),
    "user_password": N_("Set user's password"),
    # merchants and terminals
    "merchant_create": N_("Add merchant"),
    "create_merchant": N_("Add merchant"),
    "merchant_update": N_("Change merchant"),
    "update_merchant": N_("Change merchant"),
    "merchant_deactivate": N_("Deactivate merchant"),
    "merchant_activate": N_("Activate merchant"),
    "terminal_enrol": N_("Enrol terminal"),
    "create_terminal": N_("Enrol terminal"),
    "terminal_revoke": N_("Revoke terminal"),
    "revoke_terminal": N_("Revoke terminal"),
    # cards
    "issue_card": N_("Issue card"),
    "reserve_cards": N_("Reserve card numbers"),
    "office_card_topup": N_("Top up card"),
    "topup": N_("Top up card"),
    "office_card_block": N_("Block card"),
    "block": N_("Block card"),
    "office_card_unblock": N_("Unblock card"),
    "unblock": N_("Unblock card"),
    "office_card_replace": N_("Replace card"),
    "transfer": N_("Replace card"),
    "office_card_correction": N_("Correction"),
    "correction": N_("Correction"),
    "office_card_check_code": N_("New check code"),
    "renew_check_code": N_("New check code"),
    # alerts and the monthly close
    "office_alert_handle": N_("Handle alert"),
    "settlement_create": N_("Create settlement run"),
    "create_run": N_("Create settlement run"),
    "settlement_cancel": N_("Cancel settlement run"),
    "cancel_run": N_("Cancel settlement run"),
    "settlement_bank_statement": N_("Upload bank statement"),
    "settlement_assign": N_("Assign bank line"),
    "assign_line": N_("Assign bank line"),
    "settlement_fees": N_("Book fee withdrawal"),
    "fee_withdrawal": N_("Book fee withdrawal"),
    "import_statement": N_("Upload bank statement"),
    "office_float_check": N_("Run the float check"),
}
#: what an id of the path names, and where the office shows it
TARGETS: dict[str, tuple[Text, str]] = {
    "merchant_id": (N_("Merchant {id}"), "/office/merchants/{id}"),
    "user_id": (N_("User {id}"), "/office/users/{id}"),
    "terminal_id": (N_("Terminal {id}"), ""),
    "number": (N_("Card {id}"), "/office/cards/{id}"),
    "card_number": (N_("Card {id}"), "/office/cards/{id}"),
    "alert_id": (N_("Alert {id}"), ""),
    "run_id": (N_("Settlement run {id}"), "/office/settlement/runs/{id}"),
}


def action_label(action: str, lang: str) -> str:
    known = ACTIONS.get(action)
    return text(known, lang) if known else action


def targets(target: str, lang: str) -> list[dict[str, str]]:
    """The path's ids in words (`Merchant 3`), each with a link where there is a page."""
    if not target:
        return []
    try:
        params = json.loads(target)
    except ValueError:
        return [{"text": target, "href": ""}]
    if not isinstance(params, dict):
        return [{"text": target, "href": ""}]
    shown = []
    for name, value in sorted(params.items()):
        label, href = TARGETS.get(name, ("", ""))
        if label:
            link = href.format(id=quote(str(value), safe="")) if href else ""
            shown.append({"text": text(label, lang, id=value), "href": link})
        else:
            shown.append({"text": f"{name} {value}", "href": ""})
    return shown


def result(status: int) -> tuple[str, str]:
    """(badge, words) of an answer's HTTP status: done, refused, failed."""
    if status < 400:
        return "ok", N_("Done")
    if status < 500:
        return "warn", N_("Refused")
    return "bad", N_("Failed")


@router.get("/office/audit", name="audit")
def audit_log(
    request: Request,
    ctx: ContextDep,
    staff: AdminUser,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    lang = language(request)
    rows = audit.entries(ctx, staff, before_id=before_id, limit=PAGE_SIZE)
    entries = []
    for row in rows:
        badge, words = result(int(str(row["status"])))
        entries.append(
            {
                **row,
                "role_label": role_label(row["role"], lang) if row["role"] else "–",
                "action_label": action_label(str(row["action"]), lang),
                "targets": targets(str(row["target"]), lang),
                "badge": badge,
                "result": text(words, lang),
            }
        )
    return render(
        request,
        "audit/index.html",
        title=text(N_("Audit log"), lang),
        entries=entries,
        before_id=before_id,
        older=entries[-1]["id"] if len(entries) == PAGE_SIZE else None,
    )
