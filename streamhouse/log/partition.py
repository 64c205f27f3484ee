"""Offsets of one partition on its leader: log start, durable end, high watermark, log end.

Invariant: log_start_offset <= high_watermark, durable_end_offset <= high_watermark
<= log_end_offset. Offsets are assigned at append (log end), become visible
once the WAL covering them is fsynced (high watermark), and durable once the
object holding them is committed in metadata (durable end).
"""

from __future__ import annotations

from dataclasses import dataclass

from streamhouse.errors import ErrorCode
from streamhouse.kafka.sentinels import NO_LEADER_EPOCH
from streamhouse.names import TopicPartition


@dataclass
class PartitionState:
    """The offsets of a partition this agent leads, under one lease epoch."""

    tp: TopicPartition
    leader_epoch: int
    log_start_offset: int
    durable_end_offset: int
    high_watermark: int
    log_end_offset: int

    @classmethod
    def opened(
        cls, tp: TopicPartition, leader_epoch: int, log_start_offset: int, durable_end_offset: int
    ) -> PartitionState:
        """State right after taking the lease: everything known is durable."""
        state = cls(
            tp,
            leader_epoch,
            log_start_offset,
            durable_end_offset,
            durable_end_offset,
            durable_end_offset,
        )
        state.check()
        return state

    def check(self) -> None:
        assert 0 <= self.log_start_offset <= self.high_watermark, self
        assert 0 <= self.durable_end_offset <= self.high_watermark <= self.log_end_offset, self

    def epoch_error(self, current_leader_epoch: int) -> ErrorCode | None:
        """KIP-320: a client that names the leader epoch it knows is told when that epoch is
        stale (FENCED_LEADER_EPOCH) or ahead of this leader (UNKNOWN_LEADER_EPOCH)."""
        if current_leader_epoch == NO_LEADER_EPOCH or current_leader_epoch == self.leader_epoch:
            return None
        if current_leader_epoch < self.leader_epoch:
            return ErrorCode.FENCED_LEADER_EPOCH
        return ErrorCode.UNKNOWN_LEADER_EPOCH

    def assign(self, record_count: int) -> int:
        """Reserve `record_count` offsets at the log end; returns the first."""
        assert record_count > 0, record_count
        base_offset = self.log_end_offset
        self.log_end_offset += record_count
        return base_offset

    def synced(self, end_offset: int) -> None:
        """The WAL holding every offset below `end_offset` is fsynced."""
        assert end_offset <= self.log_end_offset, (end_offset, self)
        self.high_watermark = max(self.high_watermark, end_offset)

    def made_durable(self, end_offset: int) -> None:
        """Every offset below `end_offset` is in a committed object."""
        assert self.durable_end_offset <= end_offset <= self.high_watermark, (end_offset, self)
        self.durable_end_offset = end_offset

    def roll_back_unsynced(self) -> int:
        """A WAL write failed: offsets above the high watermark are void. Returns the new end."""
        self.log_end_offset = self.high_watermark
        return self.log_end_offset

    def advance_log_start(self, offset: int) -> None:
        """Records below `offset` are deleted (never moves back, never past the high watermark)."""
        assert offset <= self.high_watermark, (offset, self)
        self.log_start_offset = max(self.log_start_offset, offset)
