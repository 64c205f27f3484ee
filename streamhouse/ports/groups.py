"""Groups port: consumer groups' committed offsets and reserved generation numbers.

Everything a group coordinator keeps beyond its own memory: a coordinator
that restarts or moves finds the offsets and continues above every
generation handed out before; a coordinator whose slot moved on can commit
nothing more (the commit is fenced by the slot's lease epoch).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streamhouse.names import TopicPartition


@dataclass(frozen=True)
class CommittedOffset:
    """A consumer group's committed position in one partition (OffsetCommit's payload)."""

    offset: int
    leader_epoch: int  # -1 when unknown
    metadata: str | None
    commit_ms: int


@dataclass(frozen=True)
class OffsetToCommit:
    """One partition's position in an OffsetCommit."""

    offset: int
    leader_epoch: int
    metadata: str | None


@dataclass(frozen=True)
class CoordinatorFence:
    """The coordinator slot whose lease epoch an offset commit is fenced by (DESIGN §3): the
    commit lands only while the slot's partition row is still at `epoch`."""

    slot: TopicPartition
    epoch: int


class GroupStore(ABC):
    """Consumer groups' offsets and generations in the metadata store."""

    @abstractmethod
    async def reserve_group_generations(self, group_id: str, count: int) -> int:
        """Reserve `count` generation numbers of a consumer group; returns the first. Each
        reservation starts above every earlier one, so a coordinator that restarts (or moves)
        never hands out a generation twice."""

    @abstractmethod
    async def commit_offsets(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, CommittedOffset],
        fence: CoordinatorFence | None = None,
    ) -> None:
        """Store (insert or replace) the group's offsets in one transaction.

        Raises UnknownTopicOrPartition, committing nothing, when a partition
        does not exist; with a `fence`, NotCoordinator, committing nothing, when
        the coordinator slot's epoch moved on (another agent took it) or the slot
        does not exist.
        """

    @abstractmethod
    async def fetch_offsets(
        self, group_id: str, partitions: Sequence[TopicPartition] | None = None
    ) -> dict[TopicPartition, CommittedOffset]:
        """The group's committed offsets for `partitions` (None: all it has).

        Partitions without a committed offset are absent from the answer.
        """

    @abstractmethod
    async def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition]) -> None:
        """Forget the group's offsets of these partitions (absent ones are ignored)."""

    @abstractmethod
    async def delete_group_offsets(self, group_id: str) -> None:
        """Forget every offset of the group."""

    @abstractmethod
    async def list_offset_groups(self) -> list[str]:
        """Every group that has at least one committed offset, sorted."""

    @abstractmethod
    async def expire_offsets(self, group_id: str, committed_before_ms: int) -> int:
        """Delete the group's offsets committed before `committed_before_ms`; returns how many."""
