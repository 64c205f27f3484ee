"""Fetch sessions (KIP-227), as a pure state machine: which partitions a Fetch covers and
which of them its response must mention.

A client opens a session with epoch 0, then sends only what changed (new offsets, forgotten
partitions) with epochs 1, 2, ...; the response then lists only partitions with news
(records, an error, or a moved high watermark or log start). Partitions that returned
records move to the end of the session's order. Sessions live in a bounded cache; the least
recently used is evicted when it is full.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from streamhouse.errors import ErrorCode
from streamhouse.kafka.fetch_response import FetchedPartition
from streamhouse.names import TopicPartition

NO_SESSION = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
FETCH_SESSIONS_MAX = 1000

Wanted = tuple[TopicPartition, int, int]  # partition, fetch offset, partition max bytes


@dataclass
class FetchSession:
    """The partitions one client fetches, and what it was last told about each."""

    session_id: int
    next_epoch: int = 1
    partitions: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    last_told: dict[TopicPartition, tuple[int, int, int]] = field(default_factory=dict)

    def wanted(self) -> list[Wanted]:
        return [(tp, offset, size) for tp, (offset, size) in self.partitions.items()]

    def worth_mentioning(self, tp: TopicPartition, answer: FetchedPartition) -> bool:
        """Whether an incremental response must carry this partition; remembers it if so."""
        watermarks = (answer.high_watermark, answer.last_stable_offset, answer.log_start_offset)
        news = bool(answer.records) or answer.error_code != 0
        if news or self.last_told.get(tp) != watermarks:
            self.last_told[tp] = watermarks
            return True
        return False

    def served_last(self, served: list[TopicPartition]) -> None:
        """Move partitions that just returned records to the end of the session's order, as
        Kafka does: a response filled by the first partitions must not starve the others."""
        for tp in served:
            if tp in self.partitions:
                self.partitions[tp] = self.partitions.pop(tp)


@dataclass(frozen=True)
class Resolved:
    """What a Fetch request covers under its session."""

    session: FetchSession | None
    wanted: list[Wanted]
    incremental: bool
    error: ErrorCode = ErrorCode.NONE


class FetchSessionCache:
    """Every open session of the agent, bounded by `sessions_max`."""

    def __init__(self, sessions_max: int = FETCH_SESSIONS_MAX) -> None:
        assert sessions_max >= 1
        self._sessions: OrderedDict[int, FetchSession] = OrderedDict()
        self._sessions_max = sessions_max
        self._last_id = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def resolve(
        self, session_id: int, epoch: int, wanted: list[Wanted], forgotten: list[TopicPartition]
    ) -> Resolved:
        if epoch == FINAL_EPOCH:
            self._sessions.pop(session_id, None)
            return Resolved(None, wanted, incremental=False)
        if epoch == INITIAL_EPOCH:
            self._sessions.pop(session_id, None)
            return Resolved(self._open(wanted), wanted, incremental=False)
        session = self._sessions.get(session_id)
        if session is None:
            return Resolved(None, [], False, ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
        if epoch != session.next_epoch:
            return Resolved(None, [], False, ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        self._sessions.move_to_end(session_id)
        session.next_epoch += 1
        for tp, offset, size in wanted:
            session.partitions[tp] = (offset, size)
        for tp in forgotten:
            session.partitions.pop(tp, None)
            session.last_told.pop(tp, None)
        return Resolved(session, session.wanted(), incremental=True)

    def _open(self, wanted: list[Wanted]) -> FetchSession:
        self._last_id = self._last_id % 0x7FFFFFFF + 1
        session = FetchSession(self._last_id)
        session.partitions = {tp: (offset, size) for tp, offset, size in wanted}
        self._sessions[session.session_id] = session
        while len(self._sessions) > self._sessions_max:
            self._sessions.popitem(last=False)
        return session
