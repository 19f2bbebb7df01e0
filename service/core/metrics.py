"""What the core counts for Prometheus, beside what the API counts (api/observability.py, which
serves them all at `/metrics`): the group commit's transactions and the raises they carry."""

from __future__ import annotations

from prometheus_client import Counter

MARK_GROUPS = Counter("lrtower_mark_groups", "Transactions that raised high-water marks (group commits)")
MARK_RAISES = Counter(
    "lrtower_mark_raises", "High-water mark raises, each run's coalesced into one per group"
)
