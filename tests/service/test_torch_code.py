"""The playground's "copy as torch code": the code builds a torch scheduler that `from_torch`
reads back as the same schedule, for every torch example and the playground's own spec."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lrtower import from_torch
from lrtower_server.api.routes.console import EXAMPLE_SPEC
from lrtower_server.api.torch_code import CONVERTIBLE, torch_code
from lrtower_server.core.timeline import Timeline
from lrtower_server.schedules.examples import EXAMPLES
from lrtower_server.schedules.registry import SPEC_ADAPTER

TORCH_SPECS = {name: spec for name, spec in EXAMPLES.items() if name in CONVERTIBLE}
TORCH_SPECS["playground"] = json.loads(EXAMPLE_SPEC)
TORCH_SPECS["nested"] = {
    "type": "torch.SequentialLR",
    "schedulers": [
        {"type": "LinearLR", "start_factor": 0.1, "total_iters": 10},
        {
            "type": "ChainedScheduler",
            "schedulers": [
                {"type": "ExponentialLR", "gamma": 0.999},
                {
                    "type": "ChainedScheduler",
                    "schedulers": [{"type": "StepLR", "step_size": 30, "gamma": 0.5}],
                },
            ],
        },
    ],
    "milestones": [10],
}
UNBUILDABLE = [
    {"type": "LambdaLR", "lr_lambda": "0.95 ** epoch"},
    {"type": "optax.cosine_decay_schedule", "init_value": 0.1, "decay_steps": 100},
    {
        "type": "SequentialLR",
        "schedulers": [{"type": "MultiplicativeLR", "lr_lambda": "0.9"}],
        "milestones": [],
    },
    {"type": "ChainedScheduler", "schedulers": [TORCH_SPECS["SequentialLR"]]},
    {
        "type": "ChainedScheduler",
        "schedulers": [
            {"type": "CosineAnnealingLR", "T_max": 10, "eta_min": 0.01},
            {"type": "ExponentialLR", "gamma": 0.9},
        ],
    },
    "not a spec",
]
STEPS = range(0, 5000, 7)


def read_back(code: str) -> dict[str, Any]:
    """What `from_torch` makes of the scheduler the code builds, run as a user would run it."""
    scope: dict[str, Any] = {}
    exec(compile(code, "<torch code>", "exec"), scope)  # the code under test, as a user runs it
    return from_torch(scope["scheduler"])


def test_every_torch_example_has_code() -> None:
    assert set(CONVERTIBLE) <= set(TORCH_SPECS) | {"ChainedScheduler", "SequentialLR"}
    assert len(TORCH_SPECS) >= 13


@pytest.mark.parametrize("name", sorted(TORCH_SPECS))
def test_the_code_is_read_back_as_the_same_schedule(name: str) -> None:
    spec, lr = TORCH_SPECS[name], 0.1
    code = torch_code(spec, lr)
    assert code is not None
    definition = read_back(code)
    # The same curve, every bit, from the definition from_torch reads back.
    ours = Timeline([lr], spec, None).over(STEPS)
    theirs = Timeline(definition["lrs"], definition["schedule"], None).over(STEPS)
    assert [a.lrs for a in theirs] == [a.lrs for a in ours]
    # And the same spec, once torch's defaults are filled in; CyclicLR names its base LR itself
    # (from_torch reads its `base_lr` as the run's), and writes out the step_size_down it implies.
    written, read = SPEC_ADAPTER.validate_python(spec).model_dump(), definition["schedule"]
    if name == "CyclicLR":
        assert definition["lrs"] == [spec["base_lr"]] and read["step_size_down"] == spec["step_size_up"]
        read = {**read, "step_size_down": None}
    else:
        assert definition["lrs"] == [0.1] if name != "OneCycleLR" else definition["lrs"][0] < lr
    assert SPEC_ADAPTER.validate_python(read).model_dump() == written


@pytest.mark.parametrize("spec", UNBUILDABLE)
def test_schedules_torch_cannot_build_have_no_code(spec: Any) -> None:
    """No code where torch has no such scheduler, or steps the composition differently from the
    engine (from_torch refuses those two: tests/client/test_convert.py)."""
    assert torch_code(spec, 0.1) is None


def test_the_playground_shows_the_code_for_torch_types_only(client: TestClient) -> None:
    page = client.get("/ui/playground").text
    shown = re.search(r'<pre id="torch-code">(.*?)</pre>', page, re.S)
    assert shown is not None and 'id="copy-torch"' in page
    definition = read_back(html.unescape(shown.group(1)))
    assert definition["schedule"]["type"] == "SequentialLR" and definition["lrs"] == [0.1]
    optax = client.get("/ui/playground", params={"spec": json.dumps(EXAMPLES["optax.cosine_decay_schedule"])})
    assert optax.status_code == 200 and 'id="torch-code"' not in optax.text
    broken = client.get("/ui/playground", params={"spec": '{"type": "StepLR", "step_size": 0}'})
    assert 'id="torch-code"' not in broken.text  # no code for a spec the engine refuses
