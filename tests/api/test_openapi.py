"""The description itself: every route documents its statuses, error bodies, credentials
and the bounds of what it takes (the fuzzing files then hold the server to it)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from hcard import records
from hcard.errors import Code
from hcard.server.api import openapi
from hcard.server.api.errors import status_of
from hcard.server.api.routes import api_routes
from hcard.server.app import create_app
from hcard.server.context import Context
from hcard.server.services import sync
from hcard.server.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

#: what a route's dependencies make it answer besides its own refusals
STAFF = {"400", "401", "403"}
TERMINAL = {"400", "401", "403"}


@pytest.fixture(scope="module")
def app_and_description(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder: Path = tmp_path_factory.mktemp("openapi")
    ctx = Context.open(Settings.build(data_dir=folder), create_key=True)
    app = create_app(ctx)
    with TestClient(app) as client:
        served = client.get("/openapi.json").json()
    yield app, served
    ctx.engine.dispose()


def _operations(description: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, methods in description["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def _resolve(description: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = description["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _unbounded(description: dict[str, Any], schema: dict[str, Any], where: str) -> Iterator[str]:
    """The places in a request schema where a string or an integer has no bounds."""
    schema = _resolve(description, schema)
    for choice in schema.get("anyOf", []) + schema.get("oneOf", []):
        yield from _unbounded(description, choice, where)
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if "enum" in schema or "const" in schema:
        return
    if "string" in kinds and not (
        "maxLength" in schema or "pattern" in schema or "format" in schema
    ):
        yield f"{where}: a string without maxLength, pattern or format"
    if "integer" in kinds and not ("minimum" in schema or "exclusiveMinimum" in schema):
        yield f"{where}: an integer without minimum"
    if "integer" in kinds and not ("maximum" in schema or "exclusiveMaximum" in schema):
        yield f"{where}: an integer without maximum"
    for name, sub in schema.get("properties", {}).items():
        yield from _unbounded(description, sub, f"{where}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _unbounded(description, schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _unbounded(description, schema["additionalProperties"], f"{where}{{}}")


def test_the_served_description_is_the_rewritten_one(app_and_description: Any) -> None:
    app, served = app_and_description
    assert served == app.openapi()
    assert "securitySchemes" in served["components"]


def test_no_route_describes_the_422_it_never_answers(app_and_description: Any) -> None:
    _app, served = app_and_description
    for label, operation in _operations(served):
        assert "422" not in operation["responses"], label
    for name in ("HTTPValidationError", "ValidationError"):
        assert name not in served["components"]["schemas"]


def test_every_error_answer_is_the_error_body_with_its_codes(app_and_description: Any) -> None:
    _app, served = app_and_description
    for label, operation in _operations(served):
        for status, answer in operation["responses"].items():
            if status.startswith("2"):
                continue
            schema = answer["content"]["application/json"]["schema"]
            error = _resolve(served, schema)
            assert error["required"] == ["code", "message_de", "message_en"], label
            assert error["properties"]["code"]["enum"] == openapi.codes_of(int(status)), label
    # every code is some documented status's: none is left undescribed
    documented = {code for status in openapi.ERROR_STATUSES for code in openapi.codes_of(status)}
    assert documented == {code.value for code in Code if status_of(code) != 500}


def test_every_route_documents_the_statuses_of_its_credentials_and_body(
    app_and_description: Any,
) -> None:
    app, served = app_and_description
    for route in api_routes(app.routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods:
            label = f"{method} {route.path_format}"
            operation = served["paths"][route.path_format][method.lower()]
            statuses = set(operation["responses"])
            assert any(status.startswith("2") for status in statuses), label
            assert "400" in statuses, label
            if "requestBody" in operation:
                assert "413" in statuses, label
            security = operation.get("security")
            if security == openapi.STAFF_SECURITY:
                assert "401" in statuses, label
            elif security == openapi.TERMINAL_SECURITY:
                assert statuses >= TERMINAL, label
            else:
                # no credentials: only the public routes, and they say so in the matrix
                assert route.path_format in PUBLIC, label
    assert {"staffBearer", "staffSession"} <= set(served["components"]["securitySchemes"])


#: the JSON routes that take no credentials (tests/web/test_role_matrix.py: PUBLIC)
PUBLIC = {"/v1/enrol", "/v1/auth/login", "/v1/health", "/v1/acceptance-points"}


def test_the_signature_headers_are_described(app_and_description: Any) -> None:
    _app, served = app_and_description
    schemes = served["components"]["securitySchemes"]
    headers = {schemes[name]["name"] for name in openapi.TERMINAL_SECURITY[0]}
    assert headers == {
        "X-HCard-Terminal",
        "X-HCard-Timestamp",
        "X-HCard-Nonce",
        "X-HCard-Signature",
    }
    assert all(schemes[name]["in"] == "header" for name in openapi.TERMINAL_SECURITY[0])


def test_every_parameter_and_body_field_has_its_bounds(app_and_description: Any) -> None:
    _app, served = app_and_description
    unbounded: list[str] = []
    for label, operation in _operations(served):
        for parameter in operation.get("parameters", []):
            where = f"{label} {parameter['in']} {parameter['name']}"
            unbounded.extend(_unbounded(served, parameter["schema"], where))
        for media, content in operation.get("requestBody", {}).get("content", {}).items():
            unbounded.extend(_unbounded(served, content.get("schema", {}), f"{label} {media}"))
    assert not unbounded, "\n".join(unbounded)


def test_the_record_is_described_with_exactly_its_wire_fields(app_and_description: Any) -> None:
    _app, served = app_and_description
    body = served["paths"]["/v1/terminal/authorise"]["post"]["requestBody"]
    record = body["content"]["application/json"]["schema"]["properties"]["record"]
    assert set(record["required"]) == set(record["properties"]) == records._WIRE_FIELDS


def test_the_sync_body_is_described_with_exactly_its_keys(app_and_description: Any) -> None:
    """Read raw (its bytes are signed), the body is described by hand: a key the server
    learns must be described too."""
    _app, served = app_and_description
    body = served["paths"]["/v1/terminal/sync"]["post"]["requestBody"]
    described = body["content"]["application/json"]["schema"]["properties"]
    assert set(described) == sync._BODY_KEYS
