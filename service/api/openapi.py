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
  with the name it answered (OpenAPI links, which stateful testers and generators follow);
- schedule specs would be named after their Python classes (`Cosine`, or
  `lrtower_server__schedules__hf__Cosine` where two families share one): here each is named by
  its `type` (`hf.cosine`), and every union of them says it is discriminated on `type`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from ..schedules.registry import TYPE_NAMES
from .errors import PROBLEM_JSON

SCHEMAS = "#/components/schemas/"

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
            _name_specs(schema)
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


def _name_specs(schema: dict[str, Any]) -> None:
    """Name every schedule spec's component by its type, and discriminate their unions on it.

    A spec's schema carries its type as its title (`schedules.base`)."""
    components = schema["components"]["schemas"]
    names = {
        key: body["title"]
        for key, body in components.items()
        if body.get("title") in TYPE_NAMES and key != body["title"]
    }
    for key, name in names.items():
        components[name] = components.pop(key)
    _rename_refs(schema, {SCHEMAS + key: SCHEMAS + name for key, name in names.items()})
    _discriminate(schema, components)


def _rename_refs(node: Any, refs: dict[str, str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref in refs:
            node["$ref"] = refs[ref]
        for value in node.values():
            _rename_refs(value, refs)
    elif isinstance(node, list):
        for value in node:
            _rename_refs(value, refs)


def _discriminate(node: Any, components: dict[str, Any]) -> None:
    """Add OpenAPI's `discriminator` to every `oneOf` of schedule specs: each spelling of `type`
    (`StepLR`, `torch.StepLR`) maps to its spec's schema."""
    if isinstance(node, list):
        for value in node:
            _discriminate(value, components)
        return
    if not isinstance(node, dict):
        return
    options = node.get("oneOf")
    refs = [option.get("$ref", "") for option in options] if isinstance(options, list) else []
    if refs and all(ref.removeprefix(SCHEMAS) in TYPE_NAMES for ref in refs):
        node["discriminator"] = {
            "propertyName": "type",
            "mapping": {
                spelling: ref
                for ref in refs
                for spelling in components[ref.removeprefix(SCHEMAS)]["properties"]["type"]["enum"]
            },
        }
    for value in node.values():
        _discriminate(value, components)
