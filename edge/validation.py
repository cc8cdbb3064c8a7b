"""Request parsing: JSON bodies into pydantic models, with 422s that name the field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from sanic import Request

from core.errors import FieldError, Invalid

M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """Base for request bodies: unknown fields are refused, strings are not coerced from numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, str_max_length=10_000)


def _field_name(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def parse_body(request: Request, model: type[M]) -> M:
    """Validate the JSON body against `model`; raise Invalid listing every bad field."""
    payload = request.json  # Sanic raises BadRequest (400) for malformed JSON
    if not isinstance(payload, dict):
        raise Invalid("the body must be a JSON object", field="body")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = [FieldError(_field_name(tuple(e["loc"])), e["msg"]) for e in exc.errors()]
        raise Invalid(
            "; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors
        ) from None


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The request-body schema for sanic-ext's openapi decorators."""
    return {"application/json": model.model_json_schema(ref_template="#/components/schemas/{model}")}
