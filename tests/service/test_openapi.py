"""The OpenAPI document is what clients in other languages are written from: its examples work."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
from fastapi.testclient import TestClient

from lrtower_server import schemas
from lrtower_server.schedules.examples import EXAMPLES
from lrtower_server.schedules.registry import TYPE_NAMES

EXAMPLED = [
    schemas.RunCreate,
    schemas.LrOut,
    schemas.RangeOut,
    schemas.PreviewIn,
    schemas.ScheduleChangeIn,
    schemas.ScaleIn,
    schemas.StateIn,
    schemas.ChangeResult,
    schemas.MetricIn,
    schemas.MetricOut,
    schemas.VerifyOut,
    schemas.FallbacksIn,
    schemas.FallbacksOut,
]


def example(model: Any) -> dict[str, Any]:
    value: dict[str, Any] = model.model_config["json_schema_extra"]["examples"][0]
    return value


def test_every_example_is_valid_for_its_model() -> None:
    for model in EXAMPLED:
        model.model_validate(example(model))


def test_the_examples_work_against_the_api(client: TestClient) -> None:
    run = example(schemas.RunCreate)
    assert client.post("/runs", json=run).status_code == 201
    name = run["name"]
    assert client.post(f"/runs/{name}/metrics", json=example(schemas.MetricIn)).status_code == 200
    assert client.post(f"/runs/{name}/scale", json=example(schemas.ScaleIn)).status_code == 200
    assert client.post(f"/runs/{name}/schedule", json=example(schemas.ScheduleChangeIn)).status_code == 200
    assert client.post("/schedules/preview", json=example(schemas.PreviewIn)).status_code == 200
    assert client.post(f"/runs/{name}/state", json=example(schemas.StateIn)).status_code == 200
    assert client.get(f"/runs/{name}/events/verify").json()["ok"]


def test_the_document_carries_the_examples(client: TestClient) -> None:
    components = client.get("/openapi.json").json()["components"]["schemas"]
    for model in EXAMPLED:
        assert components[model.__name__]["examples"], model.__name__


def test_the_document_tells_a_generator_what_the_server_sends(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operations = [op for ops in document["paths"].values() for op in ops.values()]
    ids = [op["operationId"] for op in operations]
    assert len(set(ids)) == len(ids) and all(i.isalnum() and i[0].islower() for i in ids)
    assert {"createRun", "getLr", "scaleRun", "listEvents", "verifyEvents", "postMetric"} <= set(ids)
    for op in operations:
        for status, answer in op["responses"].items():
            if status.startswith(("4", "5")):  # the problem model, under the type actually sent
                assert answer["content"] == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemOut"}}
                }, (op["operationId"], status)
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "`lrtower token create NAME`",
    }
    assert document["security"] == [{"bearer": []}]
    paths = document["paths"]
    assert paths["/healthz"]["get"]["security"] == [] and paths["/readyz"]["get"]["security"] == []
    assert "401" in paths["/metrics"]["get"]["responses"] and "503" in paths["/readyz"]["get"]["responses"]


def test_creating_a_run_links_to_every_operation_on_it(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    on_a_run = {
        op["operationId"] for path, ops in document["paths"].items() if "{run}" in path for op in ops.values()
    }
    links = document["paths"]["/runs"]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in links.values()} == on_a_run and len(on_a_run) == 12
    assert all(link["parameters"] == {"run": "$response.body#/name"} for link in links.values())
    created = client.post("/runs", json=example(schemas.RunCreate)).json()
    assert client.get(f"/runs/{created['name']}").status_code == 200  # the link's expression names it


def _validator(document: dict[str, Any], component: str) -> Any:
    """A JSON Schema validator (2020-12, OpenAPI 3.1's dialect) of one component of the document."""
    return jsonschema_rs.Draft202012Validator(
        {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
    )


def test_schedule_specs_are_published_as_a_union_discriminated_on_type(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    components = document["components"]["schemas"]
    for name, model in TYPE_NAMES.items():  # one component per type, named by it
        spec = components[name]
        assert spec["required"][0] == "type" and spec["properties"]["type"]["enum"] == model.type_names()
    union = components["RunCreate"]["properties"]["schedule"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in union["oneOf"]} == set(TYPE_NAMES)
    spellings = union["discriminator"]["mapping"]
    assert spellings["torch.StepLR"] == spellings["StepLR"] == "#/components/schemas/StepLR"
    assert spellings["hf.cosine"] == "#/components/schemas/hf.cosine" and len(spellings) > len(TYPE_NAMES)
    # A composite's children: torch schedulers only, discriminated too.
    children = components["SequentialLR"]["properties"]["schedulers"]["items"]
    assert "torch.LinearLR" in children["discriminator"]["mapping"] and "hf.cosine" not in children["oneOf"]
    for model in ("ScheduleChangeIn", "PreviewIn", "RunOut"):
        assert components[model]["properties"]["schedule"]["oneOf"] == union["oneOf"], model


def test_every_spec_the_engine_takes_matches_exactly_one_published_schema(client: TestClient) -> None:
    validator = _validator(client.get("/openapi.json").json(), "RunCreate")
    for i, (name, spec) in enumerate(sorted(EXAMPLES.items())):
        body = {"name": f"r{i}", "lrs": [0.1, 0.01], "schedule": spec}
        validator.validate(body)  # `oneOf`: exactly one schema matches
        assert client.post("/runs", json=body).status_code == 201, name
        for wrong in ({**spec, "type": name + "X"}, {**spec, "sheduel": 1}):
            assert not validator.is_valid({**body, "schedule": wrong}), (name, wrong)
            assert client.post("/runs", json={**body, "name": "s", "schedule": wrong}).status_code == 422


def test_the_lr_answer_is_a_named_union_of_its_two_shapes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    answer = document["paths"]["/runs/{run}/lr"]["get"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"] == {"$ref": "#/components/schemas/LrAnswer"}
    validator = _validator(document, "LrAnswer")
    client.post("/runs", json=example(schemas.RunCreate))
    name = example(schemas.RunCreate)["name"]
    one, several = (
        client.get(f"/runs/{name}/lr", params=params).json()
        for params in ({"step": 3}, {"start": 0, "stop": 4})
    )
    assert validator.is_valid(one) and validator.is_valid(several) and not validator.is_valid({"step": 3})
