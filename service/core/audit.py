"""The audit trail's hash chain: hash = sha256(prev_hash + canonical JSON of the event), its
check, and the hash that says whether two creations of a run define the same run.

Canonical JSON is sorted keys, no spaces, UTF-8, floats as Python's shortest repr, so the same
event always hashes the same on every replica and after every restart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..schemas import RunCreate, VerifyOut

if TYPE_CHECKING:
    from ..db.store import EventRecord, StoredEvent

GENESIS = "0" * 64
"""The `prev_hash` of a run's first event."""


def canonical(event: dict[str, Any]) -> bytes:
    return json.dumps(
        event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def chain_hash(prev_hash: str, event: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()


def event_payload(run_name: str, event: EventRecord) -> dict[str, Any]:
    """What an event's hash covers: every field but the hashes themselves."""
    return {
        "run": run_name,
        "seq": event.seq,
        "at": event.at.isoformat(),  # in UTC: as written, and as the store reads it back
        "actor": event.actor,
        "kind": event.kind,
        "effective_step": event.effective_step,
        "lr_before": event.lr_before,
        "lr_after": event.lr_after,
        "reason": event.reason,
        "details": event.details,
    }


def verify_chain(run_name: str, events: Sequence[StoredEvent]) -> VerifyOut:
    """Recompute the hash chain over `events` in the order they were written: an edited,
    inserted or deleted event breaks it, and so does a stored value that cannot be read back as
    its type. The first bad event is named by its seq, or by the seq it should have where that
    is what cannot be read."""
    prev = GENESIS
    for expected_seq, event in enumerate(events, start=1):
        record = event.record()
        if (
            record is None
            or record.seq != expected_seq
            or record.prev_hash != prev
            or record.hash != chain_hash(prev, event_payload(run_name, record))
        ):
            bad = expected_seq if event.seq is None else event.seq
            return VerifyOut(ok=False, count=len(events), first_bad_seq=bad)
        prev = record.hash
    return VerifyOut(ok=True, count=len(events))


def definition_hash(body: RunCreate) -> str:
    """What makes two creations of a run the same: its base LRs, schedule, plateau and labels."""
    definition = {
        "lrs": body.base_lrs,
        "schedule": body.schedule,
        "plateau": body.plateau.model_dump() if body.plateau else None,
        "labels": body.labels,
    }
    return hashlib.sha256(canonical(definition)).hexdigest()
