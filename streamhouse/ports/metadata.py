"""The whole metadata store as one port: every aggregate's port, plus closing the connections.

The metadata store is the source of truth for what exists (DESIGN §2-§3).
Only the composition root (`streamhouse/agent.py`), `streamctl` and the
simulator hold the whole store; each engine service and door takes the
aggregate ports it uses (topics, leases, producers, groups, membership,
transactions, job claims, snapshots, the schema registry's schemas, tenancy).
"""

from __future__ import annotations

from abc import abstractmethod

from streamhouse.ports.groups import GroupStore
from streamhouse.ports.jobs import JobClaims
from streamhouse.ports.leases import LeaseStore
from streamhouse.ports.membership import MembershipStore
from streamhouse.ports.producers import ProducerStore
from streamhouse.ports.schemas import SchemaStore
from streamhouse.ports.snapshots import SnapshotStore
from streamhouse.ports.tenancy import TenancyStore
from streamhouse.ports.topics import TopicStore
from streamhouse.ports.transactions import TransactionStore


class MetadataStore(
    TopicStore,
    LeaseStore,
    ProducerStore,
    GroupStore,
    MembershipStore,
    TransactionStore,
    JobClaims,
    SnapshotStore,
    SchemaStore,
    TenancyStore,
):
    """SQLite, PostgreSQL, or the simulator's in-memory SQLite with faults."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""
