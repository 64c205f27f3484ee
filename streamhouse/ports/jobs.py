"""Jobs port: cluster-wide jobs that one agent at a time runs (the snapshot writer, the
reconciler), each at most once per interval of the metadata store's time."""

from __future__ import annotations

from abc import ABC, abstractmethod


class JobClaims(ABC):
    """Turns at a named cluster job, granted by the metadata store."""

    @abstractmethod
    async def claim_job(self, name: str, agent: str, interval_ms: int) -> bool:
        """Whether `agent` may run job `name` now: True when nobody claimed it in the last
        `interval_ms` of the store's time (judged by the store's clock, never the caller's);
        the grant is recorded, so the next one comes `interval_ms` later at the earliest."""
