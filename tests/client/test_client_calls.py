"""Every call of the client against a real `lrtower serve`, its API errors, and the methods' signatures."""

from __future__ import annotations

import asyncio
import inspect
import pydoc
from itertools import pairwise

import pytest

from lr_references import (
    CONSTANT,
    EXPONENTIAL,
    FAST,
    STEP,
    WARMUP_THEN_DECAY,
    approx,
    torch_lrs,
    torch_plateau,
)
from lrtower import (
    LR,
    APIError,
    AsyncClient,
    Change,
    ChangeResult,
    Client,
    Conflict,
    Event,
    EventPage,
    FieldError,
    Invalid,
    LRRange,
    LrtowerError,
    MetricResult,
    NotFound,
    RewindResult,
    Run,
    RunPage,
    TooLarge,
    Verification,
)


@pytest.fixture
def server(tower: str) -> str:
    """The module's one server (`tower`): each test here creates runs of its own names."""
    return tower


# -- the full tour -------------------------------------------------------------------------


def test_tour_of_every_call(server: str) -> None:
    with Client(server) as tower:
        assert tower.url == server
        assert tower.ready() is True

        run = tower.create_run("tour", STEP, lr=0.1, labels={"suite": "tour"})
        assert isinstance(run, Run)
        assert (run.name, run.state, run.high_water, run.version) == ("tour", "live", -1, 0)
        assert run.lrs == [0.1] and run.schedule == STEP and run.labels == {"suite": "tour"}
        assert run.changes == [] and run.plateau is None

        again = tower.create_run("tour", STEP, lr=0.1, labels={"suite": "tour"})
        assert again.name == run.name and again.created_at == run.created_at and again.version == 0
        with pytest.raises(Conflict) as conflict:
            tower.create_run("tour", {**STEP, "gamma": 0.4}, lr=0.1, labels={"suite": "tour"})
        assert conflict.value.high_water == -1 and "different definition" in conflict.value.detail

        # list_runs: a label filter, one run a page, following next_after.
        for name in ("tour-b", "tour-c"):
            tower.create_run(name, STEP, lr=0.1, labels={"suite": "tour"})
        tower.create_run("other", STEP, lr=0.1, labels={"suite": "other"})
        names: list[str] = []
        after: str | None = None
        for _ in range(10):
            page = tower.list_runs(after=after, limit=1, labels={"suite": "tour"})
            assert isinstance(page, RunPage) and len(page.runs) <= 1
            names += [r.name for r in page.runs]
            if page.next_after is None:
                break
            after = page.next_after
        assert names == ["tour", "tour-b", "tour-c"]
        everything = tower.list_runs()
        listed = [r.name for r in everything.runs]  # with the other tests' runs, in name order
        assert listed == sorted(listed)
        assert [n for n in listed if n in {"other", "tour", "tour-b", "tour-c"}] == [
            "other",
            "tour",
            "tour-b",
            "tour-c",
        ]
        assert everything.next_after is None

        fetched = tower.get_run("tour")
        assert fetched.name == "tour" and fetched.created_at == run.created_at and fetched.schedule == STEP

        reference = torch_lrs(STEP, [0.1], 20)
        # curve plans without serving: the high-water mark stays put.
        curve = tower.curve("tour", 0, 20)
        assert curve.steps == list(range(20)) and curve.lrs == approx(reference)
        assert tower.get_run("tour").high_water == -1

        one = tower.lr("tour", 4)
        assert isinstance(one, LR) and (one.run, one.step) == ("tour", 4)
        assert one.lr == approx(reference[4][0]) and one.lrs == approx(reference[4]) and one.momentum is None
        assert tower.get_run("tour").high_water == 4

        span = tower.lr_range("tour", 0, 12, 3)
        assert isinstance(span, LRRange) and span.steps == [0, 3, 6, 9]
        assert span.lr == approx([reference[s][0] for s in span.steps])
        assert span.lrs == [[lr] for lr in span.lr]  # filled even for one param group
        assert span.at(6) == LR("tour", 6, span.lr[2], [span.lr[2]], None)
        for outside in (7, 12, -3, 1000):
            with pytest.raises(IndexError):
                span.at(outside)
        assert tower.get_run("tour").high_water == 9

        # change_schedule and scale land after the high-water mark.
        restarted = torch_lrs(EXPONENTIAL, [0.1], 10)
        changed = tower.change_schedule("tour", EXPONENTIAL, restart=True, reason="slower")
        assert isinstance(changed, ChangeResult)
        assert (changed.run, changed.effective_step, changed.version) == ("tour", 10, 1)
        assert changed.lr_before == approx(reference[10]) and changed.lr_after == approx(restarted[0])
        assert tower.lr("tour", 12).lrs == approx(restarted[2])

        scaled = tower.scale("tour", 0.5, reason="spikes")
        assert (scaled.effective_step, scaled.version) == (13, 2)
        assert scaled.lr_before == approx(restarted[3])
        assert scaled.lr_after == approx([restarted[3][0] * 0.5])
        assert tower.lr("tour", 15).lr == approx(restarted[5][0] * 0.5)

        changes = tower.get_run("tour").changes
        assert all(isinstance(c, Change) for c in changes)
        assert [(c.kind, c.effective_step) for c in changes] == [("schedule", 10), ("scale", 13)]
        assert changes[0].schedule == EXPONENTIAL and changes[0].restart and changes[1].factor == 0.5

        finished = tower.set_state("tour", "finished", reason="converged")
        assert isinstance(finished, Run) and finished.state == "finished"
        with pytest.raises(Conflict) as refused:
            tower.scale("tour", 0.5)
        assert "finished" in refused.value.detail and refused.value.high_water is None
        assert tower.lr("tour", 16).lr == approx(restarted[6][0] * 0.5)  # still serves

        trail = tower.events("tour")
        assert isinstance(trail, EventPage) and trail.run == "tour"
        assert all(isinstance(e, Event) for e in trail.events)
        assert [e.kind for e in trail.events] == ["run_created", "schedule_changed", "scaled", "run_finished"]
        assert [e.seq for e in trail.events] == [1, 2, 3, 4]
        assert {e.actor for e in trail.events} == {"anonymous"}
        assert [e.reason for e in trail.events] == [None, "slower", "spikes", "converged"]
        assert all(e.prev_hash == before.hash for before, e in pairwise(trail.events))
        assert [e.seq for e in tower.events("tour", after=2).events] == [3, 4]
        assert [e.seq for e in tower.events("tour", limit=1).events] == [1]

        verified = tower.verify("tour")
        assert isinstance(verified, Verification)
        assert (verified.ok, verified.count, verified.first_bad_seq) == (True, 4, None)

        preview = tower.preview(STEP, lr=0.1, start=0, stop=20, stride=2)
        assert preview.steps == list(range(0, 20, 2))
        assert preview.lr == approx([reference[s][0] for s in preview.steps])
        tower.close()  # a closed client opens a new connection when used again
        assert tower.ready() is True


def test_several_param_groups(server: str) -> None:
    lrs = [0.1, 0.01]
    reference = torch_lrs(WARMUP_THEN_DECAY, lrs, 12)
    with Client(server) as tower:
        run = tower.create_run("groups", WARMUP_THEN_DECAY, lrs=lrs)
        assert run.lrs == lrs
        for step in (0, 2, 4, 5):
            answer = tower.lr("groups", step)
            assert answer.lrs == approx(reference[step]) and answer.lr == approx(reference[step][0])
        span = tower.lr_range("groups", 0, 12)
        assert span.lrs == approx(reference) and span.lr == approx([r[0] for r in reference])
        assert span.at(7).lrs == approx(reference[7])
        assert tower.curve("groups", 0, 12).lrs == approx(reference)
        assert tower.preview(WARMUP_THEN_DECAY, lrs=lrs, stop=12).lrs == approx(reference)


def test_plateau_reduces_when_torch_does(server: str) -> None:
    values = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85]
    config = {"patience": 1, "factor": 0.5}
    expected = torch_plateau(values, 0.1, **config)
    assert len(set(expected)) >= 3  # the sequence does reduce, twice
    with Client(server) as tower:
        tower.create_run("plateau", CONSTANT, lr=0.1, plateau={"metric": "val_loss", **config})
        before = 0.1
        for step, (value, lr) in enumerate(zip(values, expected, strict=True), start=1):
            result = tower.post_metric("plateau", step, value)
            assert isinstance(result, MetricResult) and result.accepted
            assert result.reduced == (lr < before), step
            assert result.effective_step == step
            assert result.lr == approx(lr) and result.lrs == approx([lr])
            assert tower.lr("plateau", step).lr == approx(lr)
            before = lr
        # The same post again answers the same; another value for that step is a conflict.
        assert tower.post_metric("plateau", 3, values[2], name="val_loss").lr == approx(expected[2])
        with pytest.raises(Conflict):
            tower.post_metric("plateau", 3, 7.0)
        reductions = [e for e in tower.events("plateau").events if e.kind == "plateau_reduced"]
        assert len(reductions) == sum(b < a for a, b in pairwise([0.1, *expected]))


# -- API errors ----------------------------------------------------------------------------


def test_api_errors(server: str) -> None:
    with Client(server, retry=FAST) as tower, pytest.raises(NotFound) as missing:
        tower.get_run("nope")
        error = missing.value
        assert error.status == 404 and error.problem["type"] == "urn:lrtower:problem:not-found"
        assert error.type == error.problem["type"] and "nope" in error.detail and error.detail in str(error)
        for call in (
            lambda: tower.lr("nope", 1),
            lambda: tower.events("nope"),
            lambda: tower.scale("nope", 2),
        ):
            with pytest.raises(NotFound):
                call()

        with pytest.raises(Invalid) as invalid:
            tower.create_run("bad", {"type": "StepLR", "step_size": -1}, lr=0.1)
        assert invalid.value.status == 422 and invalid.value.errors[0].field == "schedule.step_size"
        assert isinstance(invalid.value.errors[0], FieldError) and invalid.value.errors[0].msg
        assert invalid.value.errors[0].loc == ("schedule", "step_size")
        assert "schedule.step_size" in str(invalid.value) and invalid.value.detail in str(invalid.value)

        tower.create_run("served", STEP, lr=0.1)
        with pytest.raises(Invalid) as negative:
            tower.lr("served", -1)
        assert negative.value.errors[0].field == "query.step"

        tower.lr("served", 10)
        with pytest.raises(Conflict) as conflict:
            tower.scale("served", 0.5, from_step=5)
        assert conflict.value.status == 409 and conflict.value.high_water == 10
        assert conflict.value.errors[0].field == "body.from_step" and conflict.value.detail in str(
            conflict.value
        )
        with pytest.raises(Conflict) as schedule_conflict:
            tower.change_schedule("served", EXPONENTIAL, from_step=10)
        assert schedule_conflict.value.high_water == 10

        with pytest.raises(TooLarge) as too_large:
            tower.scale("served", 0.5, reason="x" * 2_000_000)
        assert too_large.value.status == 413

        for caught in (missing, invalid, conflict, too_large):
            assert isinstance(caught.value, APIError) and isinstance(caught.value, LrtowerError)
        assert tower.get_run("served").changes == []  # nothing above was applied


# -- signatures ----------------------------------------------------------------------------


def test_methods_keep_their_builders_signatures() -> None:
    with Client("http://tower.test") as tower:
        scale = inspect.signature(tower.scale)
        assert list(scale.parameters) == ["run", "factor", "from_step", "reason", "idempotency_key"]
        assert scale.parameters["factor"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        assert scale.parameters["from_step"].kind is inspect.Parameter.KEYWORD_ONLY
        assert scale.return_annotation == "ChangeResult"  # what the method returns, not the builder's Call
        assert tower.scale.__name__ == "scale" and tower.scale.__doc__ and "factor" in tower.scale.__doc__
        assert list(inspect.signature(tower.create_run).parameters) == [
            "name",
            "schedule",
            "lr",
            "lrs",
            "plateau",
            "labels",
            "total_steps",
        ]
        assert list(inspect.signature(tower.lr).parameters) == ["run", "step", "attempt"]
    assert list(inspect.signature(AsyncClient("http://tower.test").scale).parameters) == list(
        scale.parameters
    )
    # On the class, as help() and editors read it: a method, with `self`, its result and its documentation.
    assert list(inspect.signature(Client.scale).parameters) == ["self", *scale.parameters]
    assert inspect.signature(AsyncClient.lr).return_annotation == "Awaitable[LR]"
    assert Client.lr.__qualname__ == "Client.lr" and AsyncClient.lr.__qualname__ == "AsyncClient.lr"
    documented = pydoc.render_doc(Client, renderer=pydoc.plaintext)
    for name in (
        "create_run",
        "lr",
        "lr_range",
        "scale",
        "rewind",
        "fork",
        "post_metric",
        "events",
        "verify",
        "preview",
    ):
        assert f"{name}(self, " in documented, name
    with pytest.raises(TypeError):
        Client("http://tower.test").scale("r", 0.5, 10)  # type: ignore[misc]  # from_step is keyword-only


# -- rewinds and forks ---------------------------------------------------------------------------


def test_rewind_and_fork_from_both_clients(server: str) -> None:
    with Client(server) as tower:
        tower.create_run("spiky", STEP, lr=0.1)
        first = tower.lr_range("spiky", 0, 40)
        assert first.attempt == 1 and first.at(39).attempt == 1
        rewound = tower.rewind("spiky", 30, scale=0.5, reason="loss spike")
        assert isinstance(rewound, RewindResult)
        assert (rewound.attempt, rewound.to_step, rewound.effective_step, rewound.discarded_to) == (
            2,
            30,
            31,
            39,
        )
        assert rewound.lr_before == first.lrs[31] and rewound.lr_after == [first.lr[31] * 0.5]
        with pytest.raises(Conflict) as ended:
            tower.lr("spiky", 31, attempt=1)
        assert ended.value.attempt == 2 and ended.value.status == 409
        assert tower.lr("spiky", 30, attempt=1).lrs == first.lrs[30]  # shared by both attempts
        assert tower.lr("spiky", 31).attempt == 2
        run = tower.get_run("spiky")
        assert run.attempt == 2 and [(a.number, a.rewound_to, a.reason) for a in run.attempts] == [
            (2, 30, "loss spike")
        ]
        with pytest.raises(Conflict):
            tower.post_metric("spiky", 40, 1.0, attempt=1)

    async def fork() -> None:
        async with AsyncClient(server) as tower:
            child = await tower.fork("spiky", "spiky-b", 20, schedule=EXPONENTIAL, restart=True, reason="try")
            assert isinstance(child, Run) and child.fork is not None
            assert (child.fork.parent, child.fork.at_step, child.high_water) == ("spiky", 20, 20)
            shared = await tower.lr_range("spiky-b", 0, 21)
            assert shared.lrs == (await tower.lr_range("spiky", 0, 21)).lrs
            assert (await tower.lr("spiky-b", 21)).lr == approx(torch_lrs(EXPONENTIAL, [0.1], 1)[0][0])
            again = await tower.rewind("spiky", 10, reason="again", idempotency_key="k-1")
            assert again == await tower.rewind("spiky", 10, reason="again", idempotency_key="k-1")
            assert again.attempt == 3

    asyncio.run(fork())
