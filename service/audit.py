"""The audit trail's hash chain: hash = sha256(prev_hash + canonical JSON of the event).

Canonical JSON is sorted keys, no spaces, UTF-8, floats as Python's shortest repr, so the same
event always hashes the same on every replica and after every restart.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64
"""The `prev_hash` of a run's first event."""


def canonical(event: dict[str, Any]) -> bytes:
    return json.dumps(
        event, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def chain_hash(prev_hash: str, event: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(event)).hexdigest()
