"""Terminal endpoints (docs/protocol.md): enrol, authorise, sync, snapshot, card balance."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from hcard import records, reqsign
from hcard.encoding import MAX_ID
from hcard.errors import Code, HCardError
from hcard.server.api import openapi
from hcard.server.api.deps import (
    AddressDep,
    ContextDep,
    SignedCallDep,
    parse_json,
    raw_body,
)
from hcard.server.api.staff import CardPath
from hcard.server.services import authorise, cards, snapshot, sync, terminals
from hcard.server.services.terminals import Terminal
from hcard.server.settings import Settings

router = APIRouter(prefix="/v1", tags=["terminal"])


def _body(description: str, schema: Mapping[str, object]) -> dict[str, object]:
    """OpenAPI text for a body the handler reads raw (it must hash the exact bytes)."""
    return {
        "requestBody": {
            "required": True,
            "description": f"{description} See docs/protocol.md.",
            "content": {"application/json": {"schema": {"type": "object", **schema}}},
        }
    }


#: the default of `Settings.max_batch_records` (a larger batch is 413 `batch_too_large`)
BATCH_RECORDS = Settings.max_batch_records
#: a signed journal record as `Record.to_wire` sends it (its body per kind: docs/protocol.md)
_RECORD_FIELDS: dict[str, object] = {
    "v": {"const": records.VERSION},
    "terminal_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    "seq": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    "prev": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    "kind": {"enum": [kind.value for kind in records.RecordKind]},
    "body": {"type": "object"},
    "sig": {"type": "string", "pattern": "^[0-9a-f]{128}$"},
}
_RECORD = {
    "type": "object",
    "description": "a signed journal record (docs/protocol.md)",
    "required": list(_RECORD_FIELDS),
    "additionalProperties": False,
    "properties": _RECORD_FIELDS,
}
_ENROL = {
    "required": ["code", "public_key"],
    "properties": {
        "code": {"type": "string", "minLength": 1, "maxLength": 64, "example": "K7QM-3XPA"},
        "public_key": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
        "name": {"type": ["string", "null"], "maxLength": terminals.NAME_MAX_CHARS},
    },
}
_CODE_OR_NONE = {"enum": [*(code.value for code in Code), None]}
_OUTCOME = {"enum": [outcome.value for outcome in records.Outcome]}
_CENTS_OR_NONE = {"type": ["integer", "null"]}
#: `services/authorise.answer`: the decision, the same bytes every time it is asked again
_AUTHORISED = {
    "type": "object",
    "required": ["seq", "outcome", "code", "balance_cents", "available_cents"],
    "additionalProperties": False,
    "properties": {
        "seq": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        "outcome": _OUTCOME,
        "code": _CODE_OR_NONE,
        "balance_cents": _CENTS_OR_NONE,
        "available_cents": _CENTS_OR_NONE,
        "pending_topups": {
            "type": "array",
            "description": "other tills' top-ups of the card whose card write a purse may"
            " hold although the balance does not (not yet confirmed, or voided while the"
            " card may still hold the write); only when there are any. A purse that till"
            " wrote at that counter (any counter when null) is taken without the amount",
            "items": {
                "type": "object",
                "required": ["terminal_id", "counter", "amount_cents"],
                "additionalProperties": False,
                "properties": {
                    "terminal_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                    "counter": {
                        "type": ["integer", "null"],
                        "minimum": 1,
                        "maximum": records.MAX_COUNTER,
                    },
                    "amount_cents": {"type": "integer", "minimum": 1},
                },
            },
        },
    },
}
#: `services/sync.sync`: one result per record sent, and the terminal's chain head after it
_SYNCED = {
    "type": "object",
    "required": ["results", "last_seq", "last_hash"],
    "additionalProperties": False,
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["seq", "status", "code", "outcome"],
                "additionalProperties": False,
                "properties": {
                    "seq": {"description": "the record's seq as sent (null: none readable)"},
                    "status": {"enum": [status.value for status in records.SyncStatus]},
                    "code": _CODE_OR_NONE,
                    "outcome": {
                        "description": "an online record's authorisation, as it was answered",
                        "anyOf": [_AUTHORISED, {"type": "null"}],
                    },
                },
            },
        },
        "last_seq": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
        "last_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
}


def _answer(
    schema: dict[str, object], *statuses: int, headers: dict[str, Any] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The 200 answer's body (and headers), and the route's own refusals."""
    ok: dict[str, Any] = {
        "description": "Successful Response",
        "content": {"application/json": {"schema": schema}},
    }
    if headers is not None:
        ok["headers"] = headers
    return {200: ok, **openapi.errors(*statuses)}


_CHAIN_HEAD_HEADERS = {
    reqsign.HEADER_CHAIN_SEQ: {
        "description": "the last seq of this terminal's chain the server holds (0: none)",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
    },
    reqsign.HEADER_CHAIN_HASH: {
        "description": "that record's hash (the genesis hash for 0)",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    },
}

_AUTHORISE = {
    "required": ["record"],
    "additionalProperties": False,
    "properties": {
        "record": _RECORD,
        "counter": {
            "type": "integer",
            "minimum": 1,
            "maximum": records.MAX_COUNTER,
            "description": "beside a topup_request: the purse counter of the card write the"
            " till will try",
        },
    },
}
_SYNC = {
    "required": ["records"],
    "additionalProperties": False,
    "properties": {
        "records": {
            "type": "array",
            "maxItems": BATCH_RECORDS,
            # a record that does not parse is answered in its result (refused, bad_record)
            "items": {"description": "a signed journal record (docs/protocol.md)"},
        },
        "recorded_s": {
            "type": "object",
            "description": "the till's own time of some records (seconds since 1970), by seq; "
            "at most one per record",
            "propertyNames": {"pattern": "^[0-9]{1,19}$"},
            "additionalProperties": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
        },
        "shown": {
            "type": "array",
            "description": "the seqs of the batch's payments and top-ups the till showed as "
            "approved (their card write landed); at most one per record",
            "maxItems": BATCH_RECORDS,
            "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        },
    },
}


@router.post(
    "/enrol",
    openapi_extra=_body("The enrolment code, the till's public key and its name.", _ENROL),
    responses=openapi.errors(429),
)
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
    openapi_extra=_body("A signed payment (online) or topup_request record.", _AUTHORISE),
    responses=_answer(_AUTHORISED, 404, 409, headers=_CHAIN_HEAD_HEADERS),
)
async def authorise_record(ctx: ContextDep, call: SignedCallDep) -> Response:
    """Decide one online payment / till top-up; the same record always gets the same bytes,
    and the terminal's chain head on the server in two headers."""
    answer, head = await call.run(
        lambda signed: authorise.authorise(ctx, signed, parse_json(signed.body))
    )
    return Response(
        content=answer, media_type="application/json", headers=terminals.chain_head_headers(head)
    )


@router.post(
    "/terminal/sync",
    openapi_extra=_body("The till's journal records in order, at most 1000.", _SYNC),
    responses=_answer(_SYNCED, 404, 409),
)
async def sync_records(ctx: ContextDep, call: SignedCallDep) -> Response:
    """Apply a batch of journal records exactly once; one result per record."""
    # plain json.dumps, in the thread pool: a thousand results need no pydantic round trip
    answer = await call.run(
        lambda signed: json.dumps(sync.sync(ctx, signed, parse_json(signed.body)))
    )
    return Response(content=answer, media_type="application/json")


@router.get(
    "/terminal/snapshot",
    responses={
        200: {
            "description": "The signed snapshot `{sig, snapshot}` (gzip when accepted)",
            "headers": _CHAIN_HEAD_HEADERS,
        }
    },
)
async def get_snapshot(
    ctx: ContextDep,
    call: SignedCallDep,
    request: Request,
    since: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    keys_sha256: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None,
) -> Response:
    """Deny-list, balances, limits, terminal keys; only changes after `since` unless full,
    and no keys in a delta when `keys_sha256` is theirs. The signed canonical bytes (a
    balance leaves out other tills' unconfirmed top-ups), gzipped for a client that accepts
    it; the terminal's chain head on the server in two headers."""

    def answer(terminal: Terminal) -> tuple[bytes, dict[str, str]]:
        body, headers = snapshot.encode(
            snapshot.answer(ctx, since, keys_sha256, terminal.id),
            request.headers.get("accept-encoding"),
        )
        head = terminals.read_chain_head(ctx, terminal.id)
        return body, {**headers, **terminals.chain_head_headers(head)}

    body, headers = await call.read(answer)
    return Response(content=body, media_type="application/json", headers=headers)


@router.get("/terminal/cards/{card_number}", responses=openapi.errors(404))
async def card_balance(
    ctx: ContextDep, call: SignedCallDep, card_number: CardPath
) -> dict[str, object]:
    return await call.read(lambda _terminal: cards.for_terminal(ctx, card_number))
