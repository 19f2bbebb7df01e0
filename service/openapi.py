"""The OpenAPI document, as generated clients need it.

FastAPI's own document describes every route, but three things in it mislead a generator:

- an error answer's model sits under `application/json`, which the server never sends, and its
  real `application/problem+json` has no schema, so every generated error type is `unknown`:
  here the model moves to `application/problem+json`;
- nothing says how to authenticate: here a bearer scheme, required everywhere but `/healthz`
  and `/readyz` (a server without tokens ignores it);
- operation ids are FastAPI's defaults (`get_lr_runs__run__lr_get`): here each route's function
  name in camelCase (`getLr`, `createRun`), short and stable;
- nothing links the operations: here creating a run links to every operation on `/runs/{run}`,
  with the name it answered (OpenAPI links, which stateful testers and generators follow).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from .errors import PROBLEM_JSON

BEARER = {"bearer": {"type": "http", "scheme": "bearer", "description": "`lrtower token create NAME`"}}


def operation_id(route: APIRoute) -> str:
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def install(app: FastAPI) -> None:
    """Serve the document described above at /openapi.json."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            for operations in schema["paths"].values():
                for operation in operations.values():
                    for status, answer in operation.get("responses", {}).items():
                        content = answer.get("content", {})
                        if (
                            status.startswith(("4", "5"))
                            and PROBLEM_JSON in content
                            and "application/json" in content
                        ):
                            content[PROBLEM_JSON] = content.pop("application/json")
            _link_runs(schema)
            schema.setdefault("components", {})["securitySchemes"] = BEARER
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def _link_runs(schema: dict[str, Any]) -> None:
    """Links from createRun's answers to every operation with a `run` path parameter."""
    targets = [
        op["operationId"]
        for path, operations in schema["paths"].items()
        if "{run}" in path
        for op in operations.values()
    ]
    links = {
        target[0].upper() + target[1:]: {"operationId": target, "parameters": {"run": "$response.body#/name"}}
        for target in targets
    }
    for status, answer in schema["paths"]["/runs"]["post"]["responses"].items():
        if status in ("200", "201"):
            answer["links"] = links
