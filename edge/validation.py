"""Request parsing: JSON bodies into pydantic models, with 422s that name the field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from sanic import Request
from sanic_ext import openapi
from sanic_ext.extensions.openapi.types import Schema

from core.errors import FieldError, Invalid

M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """Base for request bodies: unknown fields are refused, strings are not coerced from numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, str_max_length=10_000)


def _field_name(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _nul_byte_field(value: Any, loc: str) -> str | None:
    """The first place in a parsed JSON document holding a NUL character, if any."""
    if isinstance(value, str):
        return loc if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{loc}.{key}" if loc != "body" else str(key)
            if "\x00" in key:
                return where
            if (found := _nul_byte_field(item, where)) is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _nul_byte_field(item, f"{loc}.{index}")) is not None:
                return found
    return None


def parse_body(request: Request, model: type[M]) -> M:
    """Validate the JSON body against `model`; raise Invalid listing every bad field."""
    payload = request.json  # Sanic raises BadRequest (400) for malformed JSON
    if not isinstance(payload, dict):
        raise Invalid("the body must be a JSON object", field="body")
    # PostgreSQL text cannot hold NUL, and no field of ours has a use for it.
    if (where := _nul_byte_field(payload, "body")) is not None:
        raise Invalid("must not contain NUL characters", field=where)
    return validate(model, payload)


def validate(model: type[M], payload: Any) -> M:
    """`model` from already parsed data; raise Invalid listing every bad field (REST's 422)."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = [FieldError(_field_name(tuple(e["loc"])), e["msg"]) for e in exc.errors()]
        raise Invalid(
            "; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors
        ) from None


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with nested models inlined, so it stands alone in the OpenAPI document
    (pydantic's `$defs` would otherwise be referenced from a components section nobody fills)."""
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The request-body schema for sanic-ext's openapi decorators."""
    return {"application/json": inline_schema(model)}


def refuse_nul_bytes(request: Request) -> None:
    """Request middleware: a NUL in the path or query string is never meaningful here (and
    PostgreSQL text cannot hold one), so it is refused before any handler sees it."""
    raw = f"{request.path}?{request.query_string}"
    if "%00" in raw or "\x00" in raw:
        raise Invalid("the URL must not contain NUL characters", field="url")


class RawSchema(Schema):
    """A JSON schema given as a dict, passed through to the OpenAPI document as it is."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._schema = schema

    def serialize(self) -> dict[str, Any]:
        return self._schema


# `?limit=` and `?cursor=` as every list endpoint reads them (core.pagination): empty means "not given".
LIMIT_PARAMETER = RawSchema({"anyOf": [{"type": "integer", "minimum": 1, "maximum": 100},
                                       {"type": "string", "maxLength": 0}]})
CURSOR_PARAMETER = RawSchema({"type": "string", "maxLength": 512})


def paged(handler: Any) -> Any:
    """Document a list endpoint's paging query parameters, `cursor` and `limit`."""
    handler = openapi.parameter("limit", LIMIT_PARAMETER, "query",
                                description="1 to 100; omitted or empty: 20")(handler)
    return openapi.parameter("cursor", CURSOR_PARAMETER, "query",
                             description="next_cursor of the previous page")(handler)


def openapi_content(schema: dict[str, Any], *media_types: str) -> dict[str, Any]:
    """The request-body schema, for handlers that read a body without a `Body` model."""
    return {media_type: schema for media_type in media_types or ("application/json",)}


def openapi_upload(field: str, description: str) -> dict[str, Any]:
    """The request-body schema of an upload: one file in the multipart/form-data field `field`."""
    return openapi_content({"type": "object", "required": [field], "properties": {
        field: {"type": "string", "format": "binary", "description": description}}}, "multipart/form-data")
