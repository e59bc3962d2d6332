"""Terminal endpoints (docs/protocol.md): enrol, authorise, sync, snapshot, card balance."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from hcard.encoding import MAX_ID
from hcard.errors import Code, HCardError
from hcard.server.api.deps import (
    AddressDep,
    ContextDep,
    SignedBookingDep,
    TerminalDep,
    parse_json,
    raw_body,
)
from hcard.server.services import authorise, cards, snapshot, sync, terminals

router = APIRouter(prefix="/v1", tags=["terminal"])


def _body(description: str) -> dict[str, object]:
    """OpenAPI text for a body the handler reads raw (it must hash the exact bytes)."""
    return {
        "requestBody": {
            "required": True,
            "description": f"{description} See docs/protocol.md.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }


@router.post("/enrol", openapi_extra=_body('`{"code", "public_key", "name"}`.'))
def enrol(
    ctx: ContextDep, address: AddressDep, body: Annotated[bytes, Depends(raw_body)]
) -> dict[str, object]:
    """`{"code", "public_key", "name"}` → terminal id, merchant, issuer public key (not signed)."""
    payload = parse_json(body)
    if not isinstance(payload, dict) or not {"code", "public_key"} <= set(payload):
        raise HCardError(Code.MALFORMED_REQUEST, reason="code and public_key are required")
    code, public_key, name = payload["code"], payload["public_key"], payload.get("name")
    if not isinstance(code, str) or not isinstance(public_key, str):
        raise HCardError(Code.MALFORMED_REQUEST, reason="code and public_key are strings")
    if name is not None and not isinstance(name, str):
        raise HCardError(Code.MALFORMED_REQUEST, field="name")
    return terminals.enrol(ctx, code, public_key, name, address)


@router.post(
    "/terminal/authorise",
    openapi_extra=_body('`{"record": <signed payment (online) or topup_request record>}`.'),
)
def authorise_record(ctx: ContextDep, signed: SignedBookingDep) -> Response:
    """Decide one online payment / till top-up; the same record always gets the same bytes."""
    answer = authorise.authorise(ctx, signed, parse_json(signed.body))
    return Response(content=answer, media_type="application/json")


@router.post(
    "/terminal/sync", openapi_extra=_body('`{"records": [<signed record>, ...]}`, at most 1000.')
)
def sync_records(ctx: ContextDep, signed: SignedBookingDep) -> Response:
    """Apply a batch of journal records exactly once; one result per record."""
    answer = sync.sync(ctx, signed, parse_json(signed.body))
    # plain json.dumps: a thousand results need no pydantic round trip
    return Response(content=json.dumps(answer), media_type="application/json")


@router.get("/terminal/snapshot")
def get_snapshot(
    ctx: ContextDep, terminal: TerminalDep, since: Annotated[int, Query(ge=0, le=MAX_ID)] = 0
) -> dict[str, object]:
    """Deny-list, balances, limits, terminal keys; only changes after `since` unless full."""
    del terminal  # authenticated; the snapshot is the same for every terminal
    return snapshot.build(ctx, since)


@router.get("/terminal/cards/{card_number}")
def card_balance(ctx: ContextDep, terminal: TerminalDep, card_number: str) -> dict[str, object]:
    del terminal
    return cards.for_terminal(ctx, card_number)
