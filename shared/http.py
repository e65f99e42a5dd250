"""What every service's HTTP API shares beyond health: the OpenAPI document's extra
components."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

REF_TEMPLATE = "#/components/schemas/{model}"


def document_models(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add ``models`` to the OpenAPI components: a body accepted as raw JSON (to answer
    each problem in it with a reason instead of a bare 422) refers to its model there."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            build()
            assert app.openapi_schema is not None
            schemas = app.openapi_schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template=REF_TEMPLATE)
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

