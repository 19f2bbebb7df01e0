"""lrtower's client library: ask an lrtower server for the learning rate of every step.

    from lrtower import Client

    tower = Client("http://tower:8000", token="...")  # or $LRTOWER_URL, $LRTOWER_TOKEN
    tower.lr("resnet-1", step=5000).lr

It needs only httpx. The torch, transformers and Keras integrations import their framework
when they are first used.
"""

__version__ = "0.1.0"  # written here alone: pyproject.toml and the server read it

from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from ._client import AsyncClient, Client  # after __version__, which the core reads
from ._core import UNSET, Retry, Unset
from .errors import (
    APIError,
    Conflict,
    FieldError,
    Forbidden,
    Invalid,
    LateMetricWarning,
    LrtowerError,
    NotFound,
    ServerError,
    ServerUnreachable,
    TooLarge,
    Unauthorized,
    UnreadableAnswer,
)
from .results import (
    LR,
    Attempt,
    Change,
    ChangeResult,
    Divergence,
    Event,
    EventPage,
    FallbackReport,
    Fork,
    LRRange,
    MetricResult,
    RewindResult,
    Run,
    RunPage,
    ScheduleNow,
    Verification,
)

if TYPE_CHECKING:
    from .convert import from_torch
    from .scheduler import RemoteScheduler

# Imported on first use: they need torch, which the client does not.
_LAZY = {"RemoteScheduler": "scheduler", "from_torch": "convert"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LR",
    "UNSET",
    "APIError",
    "AsyncClient",
    "Attempt",
    "Change",
    "ChangeResult",
    "Client",
    "Conflict",
    "Divergence",
    "Event",
    "EventPage",
    "FallbackReport",
    "FieldError",
    "Forbidden",
    "Fork",
    "Invalid",
    "LRRange",
    "LateMetricWarning",
    "LrtowerError",
    "MetricResult",
    "NotFound",
    "Retry",
    "RewindResult",
    "Run",
    "RunPage",
    "ScheduleNow",
    "ServerError",
    "ServerUnreachable",
    "TooLarge",
    "Unauthorized",
    "UnreadableAnswer",
    "Unset",
    "Verification",
    "__version__",
]
if find_spec("torch") is not None:  # `from lrtower import *` works without torch, and omits them
    __all__ += ["RemoteScheduler", "from_torch"]
