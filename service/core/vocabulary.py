"""The words lrtower's records are written in: run states, change and event kinds, token scopes.

Each is a `Literal`, so that type checkers hold every layer to it (the ORM's CHECK constraints,
the store's records, the API's models), and a tuple of its values for the places that list them.
"""

from __future__ import annotations

from typing import Literal, get_args

RunState = Literal["live", "finished", "archived"]
RUN_STATES: tuple[RunState, ...] = get_args(RunState)

ChangeKind = Literal["schedule", "scale", "plateau", "ran"]
"""`ran`: LRs a job ran on steps nobody was served, reported after an outage (core/fallbacks.py)."""
CHANGE_KINDS: tuple[ChangeKind, ...] = get_args(ChangeKind)

EventKind = Literal[
    "run_created",
    "schedule_changed",
    "scaled",
    "plateau_reduced",
    "run_finished",
    "run_archived",
    "rewound",
    "forked",
    "fallback",
]
"""What an audit event records. An event read back may hold any text (the database can be
edited): reads keep `str`, writes take an EventKind."""
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)

Scope = Literal["read", "write", "admin"]
"""A token's scope, each allowing what the ones before it allow."""
SCOPES: tuple[Scope, ...] = get_args(Scope)
