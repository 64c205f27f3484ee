"""Snapshots port: the metadata store dumped whole for the bucket, and rebuilt from the bucket.

The snapshot writer (engine/snapshots.py) numbers and dumps the store; the rebuild
(engine/rebuild.py) restores the newest snapshot into a blank store, reads the restored
state through the other ports, and completes the rebuild with what the footers of later
objects add, in one transaction. Between the two steps the store says a rebuild is pending,
so an agent that starts meanwhile (or after a crash mid-rebuild) completes it instead of
serving a partial store.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from streamhouse.log.partition_txns import TxnChange
from streamhouse.log.producer_state import ProducerBatch
from streamhouse.log.snapshot_format import MetadataDump
from streamhouse.names import TopicPartition
from streamhouse.ports.leases import ObjectRecord, SegmentRecord

# What a rebuild cannot know from the bucket: lease epochs taken, producer ids and group
# generations handed out after the newest snapshot, when nothing written under them reached an
# object. Each restarts this far above the highest value seen, so none is handed out twice.
REBUILD_EPOCH_LEAP = 1_000
REBUILD_PRODUCER_ID_LEAP = 1 << 20
# A coordinator reserves group generations 1000 at a time (engine/groups.py), once per group
# it takes over: a thousand reservations' worth (Kafka's generations are int32: room for 2000
# rebuilds). One reservation's worth was too little: a group that moved coordinator twice
# after the snapshot, or a group unknown to it, got generations handed out before again.
REBUILD_GENERATION_LEAP = 1_000_000
# Node ids of agents that registered after the snapshot (all of them, without one) are unknown:
# given to other agents, they would send clients that kept a connection per node id to the
# wrong agent (aiokafka does: it asked a deposed leader again and again). Agents the snapshot
# knows keep theirs; the others get new ones this far above.
REBUILD_NODE_ID_LEAP = 1_000
# Schema ids registered after the snapshot are lost with the store, but records in the bucket
# may carry them: handed out again for other schemas, those records would decode wrongly. Ids
# are int32 on the wire: room for twenty thousand rebuilds.
REBUILD_SCHEMA_ID_LEAP = 100_000


class StoreState(enum.Enum):
    """Where the metadata store stands for a rebuild."""

    BLANK = "blank"  # no topic, object, schema or tenancy row past the seeded org: new or lost
    REBUILD_PENDING = "rebuild-pending"  # a snapshot restored, the footers not applied yet
    IN_USE = "in-use"


@dataclass(frozen=True)
class RebuiltPartition:
    """What the footers add to one partition: segment rows from its durable end on, the
    producers' batches and transactions those blocks hold, and the highest epoch seen."""

    tp: TopicPartition
    start_offset: int  # where the added rows begin (a partition new to the store starts here)
    durable_end_offset: int
    leader_epoch_seen: int
    segments: Sequence[SegmentRecord] = ()
    producers: Sequence[ProducerBatch] = ()
    txns: Sequence[TxnChange] = ()


@dataclass(frozen=True)
class RebuildPlan:
    """Everything a rebuild adds to the restored snapshot, committed in one transaction."""

    objects: Sequence[ObjectRecord]
    partitions: Sequence[RebuiltPartition]
    # Topics the snapshot does not know (created after it): partition counts seen in footers
    new_topics: Mapping[str, int] = field(default_factory=dict)
    now_ms: int = 0  # the rebuilding agent's time: producer states count as appended then
    producer_id_seen: int = -1  # the highest producer id in the blocks read
    snapshot_seq_seen: int = -1  # the highest snapshot number in the bucket


class SnapshotStore(ABC):
    """The metadata store as a whole, for snapshots and rebuilds."""

    @abstractmethod
    async def next_snapshot_seq(self) -> int:
        """A new snapshot number, above every one handed out before."""

    @abstractmethod
    async def dump_metadata(self) -> MetadataDump:
        """Every table (but the transient ones) read in one consistent transaction."""

    @abstractmethod
    async def store_state(self) -> StoreState:
        """Whether the store is blank, has a rebuild pending, or is in use."""

    @abstractmethod
    async def begin_rebuild(self, dump: MetadataDump | None, agent: str) -> StoreState:
        """Restore `dump` (None: nothing to restore) into a blank store and mark the rebuild
        pending, in one transaction. Returns the state found: BLANK when this call began the
        rebuild, REBUILD_PENDING when another agent had begun it (nothing restored here),
        IN_USE when the store is not blank (nothing done). Raises SnapshotIncompatible when the
        dump's tables or columns are not this version's."""

    @abstractmethod
    async def complete_rebuild(self, plan: RebuildPlan) -> bool:
        """Apply `plan` to the pending rebuild and end it, in one transaction: rows of the new
        objects, durable ends, producer states and transactions, new topics; every lease
        expired and its epoch moved `REBUILD_EPOCH_LEAP` above the highest seen; producer ids
        and group generations moved above theirs. False when no rebuild was pending (another
        agent completed it first; nothing done)."""
