"""What torch schedulers share: the spec base, and the compiled node seen two ways.

Torch defines LR(step) by stepping: each `scheduler.step()` rewrites `group["lr"]` from its
current value. For most schedulers that update is a multiplication (`lr * factor(epoch)`), for a
few it ignores the current value (LambdaLR, CyclicLR, OneCycleLR, CosineAnnealingWarmRestarts),
and CosineAnnealingLR's is affine. A `TorchNode` exposes exactly that update, in closed form:

- `value_from(entry, e, initial)`: the LR after the updates of local epochs 0..e, starting from
  the LR `entry` held before epoch 0. `initial` says whether epoch 0 ran in torch's
  construction mode (`_initial_step`), where several schedulers leave the LR unchanged.
- `step_map(e, initial)`: the update of epoch e alone, as `lr' = a * lr + b` per group.
- `cumulative(e, initial)`: for multiplicative nodes, the product of the factors of 0..e.

Composites are built from these three views, so SequentialLR and ChainedScheduler reproduce
torch's own interleaving without replaying steps. Like every schedule, a node answers a range
in one pass (`lrs_over`) where its closed form allows.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from pydantic import field_validator

from .base import BuildContext, DomainError, Schedule, SpecModel

Affine = tuple[float, float]


class TorchSpec(SpecModel):
    """Base of the torch specs: the type may also be written with a `torch.` prefix."""

    @field_validator("type", mode="before", check_fields=False)
    @classmethod
    def _strip_prefix(cls, value: object) -> object:
        return value.removeprefix("torch.") if isinstance(value, str) else value

    @classmethod
    def type_names(cls) -> list[str]:
        name = cls.model_fields["type"].default
        return [name, f"torch.{name}"]


def capture_initial_lrs(ctx: BuildContext) -> tuple[float, ...]:
    """The `initial_lr` a torch scheduler sees at construction (the first one records it)."""
    if ctx.initial_lrs is None:
        ctx.initial_lrs = ctx.require_base_lrs()
    return ctx.initial_lrs


class TorchNode(Schedule):
    """A compiled torch scheduler. `bases` are the group `initial_lr`s it was constructed with."""

    bases: tuple[float, ...]
    overwrites = False
    """True when its update ignores the incoming LR, so LR(step) depends on no earlier step."""
    multiplies = False
    """True when every update multiplies the LR, so that `cumulative` is defined."""
    continues_in_sequence = False
    """True when SequentialLR hands it the LR reached so far at its milestone, instead of
    re-basing it on its closed form (torch's MultiplicativeLR has no closed form)."""

    def __init__(self, bases: tuple[float, ...]) -> None:
        self.bases = bases
        self.n_groups = len(bases)

    def lrs(self, step: int) -> list[float]:
        return self.value_from(self.bases, step, True)

    @abstractmethod
    def value_from(self, entry: Sequence[float], e: int, initial: bool) -> list[float]:
        """LR of every group after the updates of epochs 0..e, starting from `entry`."""

    @abstractmethod
    def step_map(self, e: int, initial: bool) -> list[Affine]:
        """The update of epoch e alone, per group: lr' = a * lr + b."""

    def cumulative(self, e: int, initial: bool) -> list[float]:
        """Product of the update factors of epochs 0..e (multiplicative nodes only)."""
        raise DomainError(e, f"{type(self).__name__} does not multiply the LR it is chained with")

    def construction_lrs(self) -> list[float]:
        """The LR its construction step sets, which torch makes step 0 of a ChainedScheduler."""
        return self.lrs(0)


class MultiplicativeNode(TorchNode):
    """A scheduler whose every update multiplies the LR: lr(e) = entry * prod(factors 0..e)."""

    multiplies = True

    def value_from(self, entry: Sequence[float], e: int, initial: bool) -> list[float]:
        return [lr * f for lr, f in zip(entry, self.cumulative(e, initial), strict=True)]

    def step_map(self, e: int, initial: bool) -> list[Affine]:
        return [(f, 0.0) for f in self.factors(e, initial)]

    @abstractmethod
    def cumulative(self, e: int, initial: bool) -> list[float]: ...

    @abstractmethod
    def factors(self, e: int, initial: bool) -> list[float]:
        """The factor of epoch e alone, per group."""


class UniformNode(MultiplicativeNode):
    """A multiplicative scheduler whose factors are the same for every group.

    It has two formulas, as torch has: `total`, the closed form of the product up to an epoch
    (torch's `_get_closed_form_lr`), which answers any epoch at one cost; and `factor`, the
    update of one epoch (torch's chainable `get_lr`), which a ChainedScheduler applies on top of
    an LR another child overwrote. Neither can stand in for the other: the product of the
    factors is O(epoch) and rounds differently, and `total(e) / total(e - 1)` is neither exact
    nor defined where the product reaches 0 (`gamma = 0`, `end_factor = 0`).
    """

    def cumulative(self, e: int, initial: bool) -> list[float]:
        return [self.total(e, initial)] * self.n_groups

    def factors(self, e: int, initial: bool) -> list[float]:
        return [self.factor(e, initial)] * self.n_groups

    def value_from(self, entry: Sequence[float], e: int, initial: bool) -> list[float]:
        total = self.total(e, initial)
        return [lr * total for lr in entry]

    def lrs_over(self, steps: range) -> list[list[float]]:
        bases, total = self.bases, self.total
        return [[lr * t for lr in bases] for t in (total(e, True) for e in steps)]

    @abstractmethod
    def total(self, e: int, initial: bool) -> float:
        """Product of the factors of epochs 0..e."""

    @abstractmethod
    def factor(self, e: int, initial: bool) -> float:
        """The factor of epoch e alone."""


class OverwritingNode(TorchNode):
    """A scheduler that computes every LR from its own bases, ignoring the incoming LR."""

    overwrites = True

    def value_from(self, entry: Sequence[float], e: int, initial: bool) -> list[float]:
        return self.lrs(e)

    def step_map(self, e: int, initial: bool) -> list[Affine]:
        return [(0.0, lr) for lr in self.lrs(e)]

    @abstractmethod
    def lrs(self, step: int) -> list[float]: ...
