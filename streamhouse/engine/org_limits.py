"""Each org's limits: how many partitions its topics may have and how many bytes it may store,
refused with POLICY_VIOLATION when a create, a partition increase or a produce would pass them.

The limits are the org entity's `org_partitions` and `org_storage_bytes` quotas (the quota
service reads and refreshes them). The partition count is read from the topic store on every
create (creates are rare). The stored bytes are cheap on the produce path: the metadata
store's committed segment sizes of the org's topics, read at most every
`storage_refresh_interval_ms`, plus the bytes appended through this agent since that read. So
the figure lags other agents' appends by at most that interval, and bytes this agent appended
before a read but committed after it are missing from the figure until the next read.
"""

from __future__ import annotations

import asyncio

from streamhouse.engine.coordinators import is_internal
from streamhouse.engine.quotas import QuotaService
from streamhouse.errors import Blame, ErrorCode, StreamHouseError
from streamhouse.ports.clock import Clock
from streamhouse.ports.leases import LeaseStore
from streamhouse.ports.topics import TopicRecord, TopicStore
from streamhouse.tenancy.names import org_of
from streamhouse.tenancy.quotas import ORG_PARTITIONS, ORG_STORAGE_BYTES

STORAGE_REFRESH_INTERVAL_MS = 10_000  # the store's figure of an org's stored bytes is this fresh


class OrgLimitExceeded(StreamHouseError):
    """A request that would take an org past one of its limits."""

    code = ErrorCode.POLICY_VIOLATION
    blame = Blame.REMOTE


class _Stored:
    """One org's stored bytes: the store's figure as read at `read_ms`, and what this agent
    appended since."""

    def __init__(self, read_ms: int, committed_bytes: int) -> None:
        self.read_ms = read_ms
        self.committed_bytes = committed_bytes
        self.appended_bytes = 0

    @property
    def total_bytes(self) -> int:
        return self.committed_bytes + self.appended_bytes


class OrgLimits:
    """The partition and storage limits of every org, for every door (through AdminService)."""

    def __init__(
        self,
        quotas: QuotaService,
        clock: Clock,
        topics: TopicStore,
        leases: LeaseStore,
        *,
        storage_refresh_interval_ms: int = STORAGE_REFRESH_INTERVAL_MS,
    ) -> None:
        self._quotas = quotas
        self._clock = clock
        self._topics = topics
        self._leases = leases
        self._refresh_interval_ms = storage_refresh_interval_ms
        self._stored: dict[str, _Stored] = {}
        self._reading: dict[str, asyncio.Future[_Stored]] = {}

    async def check_partitions(self, topic: str, added: int) -> None:
        """OrgLimitExceeded when `added` more partitions for `topic` would take its org past
        its `org_partitions`."""
        org = org_of(topic)
        limit = (await self._quotas.org_limits(org)).get(ORG_PARTITIONS)
        if limit is None:
            return
        count = sum(t.partition_count for t in await self._org_topics(org))
        if count + added > limit:
            raise OrgLimitExceeded(
                f"org {org!r} may have at most {int(limit)} partitions (its {ORG_PARTITIONS}); "
                f"it has {count} and this asks for {added} more. Delete topics, or ask the "
                "cluster's operator for a larger limit"
            )

    async def check_storage(self, topic: str, batch_bytes: int) -> None:
        """OrgLimitExceeded when a batch of `batch_bytes` would take the org of `topic` past
        its `org_storage_bytes`; otherwise the batch is counted as stored."""
        org = org_of(topic)
        limit = (await self._quotas.org_limits(org)).get(ORG_STORAGE_BYTES)
        if limit is None:
            return
        stored = await self._stored_bytes(org)
        if stored.total_bytes + batch_bytes > limit:
            raise OrgLimitExceeded(
                f"org {org!r} stores {stored.total_bytes} bytes and may store at most "
                f"{int(limit)} (its {ORG_STORAGE_BYTES}); this batch of {batch_bytes} bytes "
                "would pass it. Delete records or topics (or shorten retention), or ask the "
                "cluster's operator for a larger limit"
            )
        stored.appended_bytes += batch_bytes

    async def _stored_bytes(self, org: str) -> _Stored:
        stored = self._stored.get(org)
        now_ms = self._clock.monotonic_ms()
        if stored is not None and now_ms - stored.read_ms < self._refresh_interval_ms:
            return stored
        reading = self._reading.get(org)
        if reading is None:  # one read per org at a time, shared by every produce meanwhile
            reading = self._reading[org] = asyncio.ensure_future(self._read_stored(org, now_ms))
            reading.add_done_callback(lambda _: self._reading.pop(org, None))
        try:
            self._stored[org] = await asyncio.shield(reading)
        except StreamHouseError:
            if stored is None:
                raise
            return stored  # the store is out: the last figure stands until it is back
        return self._stored[org]

    async def _read_stored(self, org: str, now_ms: int) -> _Stored:
        committed = 0
        for topic in await self._org_topics(org):
            committed += sum((await self._leases.partition_sizes(topic.name)).values())
        return _Stored(now_ms, committed)

    async def _org_topics(self, org: str) -> list[TopicRecord]:
        return [
            topic
            for topic in await self._topics.list_topics()
            if org_of(topic.name) == org and not is_internal(topic.name)
        ]
