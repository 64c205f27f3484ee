"""A small script language for writing client histories by hand in checker tests.

Each call appends the events a client would record, advancing virtual time
by `STEP_US` per event, so histories stay well formed without bookkeeping.
"""

from __future__ import annotations

from sim.history import (
    ACKS_ALL,
    FetchObserved,
    History,
    ObservedRecord,
    ProduceAcked,
    ProduceAttempt,
    ProduceFailed,
    ScanCompleted,
)

STEP_US = 10


class Script:
    """Builds a `History` event by event with a moving virtual clock."""

    def __init__(self) -> None:
        self.history = History()
        self.now_us = 0

    def tick(self) -> int:
        self.now_us += STEP_US
        return self.now_us

    def attempt(
        self,
        value: bytes,
        *,
        topic: str = "t",
        partition: int = 0,
        acks: int = ACKS_ALL,
        idempotent: bool = False,
        txn: int | None = None,
        client: str = "producer",
        key: bytes | None = None,
    ) -> ProduceAttempt:
        attempt = ProduceAttempt(
            self.tick(),
            client,
            self.history.new_op(),
            topic,
            partition,
            key,
            value,
            acks,
            idempotent=idempotent,
            txn=txn,
        )
        self.history.append(attempt)
        return attempt

    def ack(
        self,
        attempt: ProduceAttempt,
        offset: int,
        *,
        epoch: int | None = 1,
        agent: str | None = "a1",
        log_start_offset: int | None = None,
    ) -> ProduceAcked:
        acked = ProduceAcked(
            self.tick(), attempt.client, attempt.op, offset, epoch, agent, log_start_offset
        )
        self.history.append(acked)
        return acked

    def produce(self, value: bytes, offset: int, **options: object) -> ProduceAttempt:
        """An attempt acked at `offset` (options: those of `attempt`, plus those of `ack`)."""
        names = ("epoch", "agent", "log_start_offset")
        ack_options = {name: options.pop(name) for name in names if name in options}
        attempt = self.attempt(value, **options)
        self.ack(attempt, offset, **ack_options)
        return attempt

    def fail(self, attempt: ProduceAttempt, *, definite: bool) -> None:
        self.history.append(
            ProduceFailed(self.tick(), attempt.client, attempt.op, error_code=7, definite=definite)
        )

    def fetch(
        self,
        fetch_offset: int,
        records: list[tuple[int, bytes]] | list[ObservedRecord],
        *,
        client: str = "reader",
        topic: str = "t",
        partition: int = 0,
        epoch: int | None = 1,
        high_watermark: int | None = None,
        **options: object,
    ) -> FetchObserved:
        """A fetch; records given as (offset, value) are data written in `epoch`."""
        observed = tuple(
            record
            if isinstance(record, ObservedRecord)
            else ObservedRecord(record[0], None, record[1], leader_epoch=epoch)
            for record in records
        )
        requested_us = self.tick()
        fetch = FetchObserved(
            self.tick(),
            requested_us,
            client,
            topic,
            partition,
            fetch_offset,
            observed,
            leader_epoch=epoch,
            high_watermark=high_watermark,
            **options,
        )
        self.history.append(fetch)
        return fetch

    def scan(
        self,
        records: list[tuple[int, bytes]] | list[ObservedRecord],
        *,
        start_offset: int = 0,
        end_offset: int,
        epoch: int | None = 1,
        topic: str = "t",
        partition: int = 0,
        read_committed: bool = False,
    ) -> None:
        """A final read of the partition by client 'final', in one fetch (read_committed: up
        to a last stable offset at the end, past any control records)."""
        requested_us = self.now_us + 1
        committed: dict[str, object] = {}
        if read_committed:
            committed = {"read_committed": True, "next_offset": end_offset}
            committed["last_stable_offset"] = end_offset
        self.fetch(
            start_offset,
            records,
            client="final",
            topic=topic,
            partition=partition,
            epoch=epoch,
            high_watermark=end_offset,
            log_start_offset=start_offset,
            **committed,
        )
        self.history.append(
            ScanCompleted(
                self.tick(),
                requested_us,
                "final",
                topic,
                partition,
                start_offset,
                end_offset,
                read_committed=read_committed,
                leader_epoch=epoch,
            )
        )
