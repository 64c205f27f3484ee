"""One continuous view run as a Kafka client of the cluster (through the agent's own listener):
read its input, emit each window once the watermark passes its end, exactly once.

The runner holds a transactional producer (`transactional.id = streamhouse-view-<name>`: a
runner that starts elsewhere fences this one) and a read_committed consumer of group
`streamhouse-view-<name>`, manually assigned every input partition from its committed
offset. Each cycle reads at most `records_per_cycle_max` records, and commits in one
transaction the windows due (output records) with, per input partition, the first offset an
open window still needs and the view's progress as offset metadata (view_state). Any Kafka
failure drops the clients and starts again from what was committed, so a window is neither
lost nor emitted twice. Partitions added to the input are sought every
`partitions_check_interval_ms` and read from their start. Records are decoded by the batch
queries' decoder (decoding.py), built again when the topic's schema is registered after the
runner started.
confluent-kafka blocks: each call runs on a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from streamhouse.engine.consume import ConsumedRecord
from streamhouse.engine.schema_registry import SchemaRegistry
from streamhouse.ports.clock import Clock
from streamhouse.sql.decoding import TopicDecoder, is_framed, topic_decoder
from streamhouse.sql.view_definition import ViewDefinition
from streamhouse.sql.view_evaluation import OutputRecord, due_windows, event_times
from streamhouse.sql.view_state import BufferFull, ViewProgress, ViewState, owned_by

log = logging.getLogger(__name__)
T = TypeVar("T")
MS_PER_S = 1000


@dataclass(frozen=True)
class ViewLimits:
    """The bounds of one runner's cycles."""

    records_per_cycle_max: int = 5_000
    buffered_rows_max: int = 200_000
    cycle_interval_ms: int = 200
    poll_wait_ms: int = 100
    kafka_timeout_ms: int = 15_000
    retry_backoff_ms: int = 1_000
    partitions_check_interval_ms: int = 1_000  # how often partitions added to the input are sought


@dataclass(frozen=True)
class RunnerStatus:
    """What a running view reports."""

    state: str  # starting | running | retrying: ... | failed: ...
    progress: ViewProgress
    watermark_ms: int | None


def client_id(name: str) -> str:
    """The group id and transactional id of view `name`."""
    return f"streamhouse-view-{name}"


async def _blocking(call: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(call, *args)


class ViewRunner:
    """Runs one view until stopped."""

    def __init__(
        self,
        definition: ViewDefinition,
        bootstrap: str,
        limits: ViewLimits,
        registry: SchemaRegistry,
        clock: Clock,
        *,
        input_topic: str,
        output_topic: str,
    ) -> None:
        self.definition = definition
        self._bootstrap = bootstrap
        self._limits = limits
        self._registry = registry
        self._clock = clock
        self._assigned: set[int] = set()  # the input partitions read
        self._partitions_checked_ms = 0  # monotonic
        self._decoder: TopicDecoder | None = None
        self._input = input_topic  # the engine's names (org-scoped)
        self._output = output_topic
        self._stop = asyncio.Event()
        self._state: ViewState | None = None
        self._phase = "starting"
        self._consumer: Any = None
        self._producer: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"view-{self.definition.name}")

    async def stop(self) -> None:
        """Finish the cycle under way (bounded by the Kafka timeout), drop the clients."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def status(self) -> RunnerStatus:
        state = self._state
        progress = state.progress if state else ViewProgress(self.definition.view_id)
        return RunnerStatus(self._phase, progress, state.watermark_ms if state else None)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._open()
                self._phase = "running"
                while not self._stop.is_set():
                    await self._cycle()
                    await self._pause(self._limits.cycle_interval_ms)
            except BufferFull as error:
                self._phase = f"failed: {error}"
                log.error("view %s stopped: %s", self.definition.name, error)
                return
            except KafkaException as error:  # fenced, a leader moving, a timeout: start over
                self._phase = f"retrying: {error.args[0]}"
                log.warning("view %s starts over from committed: %s", self.definition.name, error)
            except duckdb.Error as error:  # rows the SELECT cannot take (a column missing)
                self._phase = f"retrying: the view's SELECT failed: {error}"
                log.warning("view %s: its SELECT failed: %s", self.definition.name, error)
            finally:
                await self._close()
            await self._pause(self._limits.retry_backoff_ms)
        self._phase = "stopped"

    async def _pause(self, duration_ms: int) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), duration_ms / MS_PER_S)

    async def _open(self) -> None:
        """New clients, positioned at the committed offsets, with the committed progress."""
        name = client_id(self.definition.name)
        timeout_s = self._limits.kafka_timeout_ms / MS_PER_S
        common = {"bootstrap.servers": self._bootstrap}
        self._producer = Producer(
            {**common, "transactional.id": name, "linger.ms": 5, "acks": "all"}
        )
        self._consumer = Consumer(
            {
                **common,
                "group.id": name,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        definition = self.definition
        self._decoder = await topic_decoder(self._registry, definition.org, definition.input_topic)
        await _blocking(self._producer.init_transactions, timeout_s)
        partitions = await self._partitions(timeout_s)
        wanted = [TopicPartition(self._input, partition) for partition in partitions]
        committed = await _blocking(self._consumer.committed, wanted, timeout_s)
        view_id = self.definition.view_id
        metadata = {tp.partition: tp.metadata for tp in committed}
        progress = ViewProgress.committed(view_id, metadata)
        self._state = ViewState(self.definition, progress, self._limits.buffered_rows_max)
        starts = [
            TopicPartition(
                self._input,
                tp.partition,
                tp.offset
                if owned_by(view_id, tp.metadata) and tp.offset >= 0
                else OFFSET_BEGINNING,
            )
            for tp in committed
        ]
        self._consumer.assign(starts)
        self._assigned = set(partitions)
        self._partitions_checked_ms = self._clock.monotonic_ms()

    async def _read_added_partitions(self) -> None:
        """Every `partitions_check_interval_ms`, start reading the partitions added to the
        input since the runner started, from their beginning (this view committed nothing
        there)."""
        now_ms = self._clock.monotonic_ms()
        if now_ms - self._partitions_checked_ms < self._limits.partitions_check_interval_ms:
            return
        self._partitions_checked_ms = now_ms
        found = await self._partitions(self._limits.kafka_timeout_ms / MS_PER_S)
        added = [partition for partition in found if partition not in self._assigned]
        if added:
            log.info("view %s reads added partitions %s", self.definition.name, added)
            starts = [TopicPartition(self._input, p, OFFSET_BEGINNING) for p in added]
            await _blocking(self._consumer.incremental_assign, starts)
            self._assigned.update(added)

    async def _partitions(self, timeout_s: float) -> list[int]:
        found = await _blocking(self._consumer.list_topics, self._input, timeout_s)
        topic = found.topics[self._input]
        if topic.error is not None:
            raise KafkaException(topic.error)
        return sorted(topic.partitions)

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        self._producer = None  # librdkafka closes it when it is collected
        if consumer is not None:
            with contextlib.suppress(KafkaException, RuntimeError):
                await _blocking(consumer.close)

    async def _cycle(self) -> None:
        state = self._state
        assert state is not None
        await self._read_added_partitions()
        records = await self._read()
        decoder = await self._current_decoder(records)
        if records:
            await decoder.load_codecs(records)
            decoded = await _blocking(decoder.decode_loaded, records)
            times = await _blocking(event_times, self.definition, decoded)
            state.admit(zip(records, times, strict=True))
        due = state.due()
        if not records and due is None:
            return
        outputs: list[OutputRecord] = []
        if due is not None:
            open_rows = await _blocking(decoder.decode_loaded, [record for record, _ in state.rows])
            outputs = await _blocking(due_windows, self.definition, open_rows, *due)
            state.emitted(due[1], len(outputs))
        await _blocking(self._commit, outputs, state.offsets_to_commit(), state.progress)

    async def _current_decoder(self, records: Sequence[ConsumedRecord]) -> TopicDecoder:
        """The decoder; built again when it reads plain JSON and values in Confluent's wire
        format come (the topic's schema was registered after the runner started, as a
        serializer does on its first record), with the schemas of the rows kept loaded."""
        decoder = self._decoder
        state = self._state
        assert decoder is not None and state is not None
        if decoder.registered or not any(is_framed(record.value) for record in records):
            return decoder
        definition = self.definition
        fresh = await topic_decoder(self._registry, definition.org, definition.input_topic)
        if not fresh.registered:  # framed values, but no subject <topic>-value: as before
            return decoder
        await fresh.load_codecs([record for record, _ in state.rows])
        self._decoder = fresh
        return fresh

    async def _read(self) -> list[ConsumedRecord]:
        messages = await _blocking(
            self._consumer.consume,
            self._limits.records_per_cycle_max,
            self._limits.poll_wait_ms / MS_PER_S,
        )
        records: list[ConsumedRecord] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal() or not error.retriable():
                    raise KafkaException(error)
                continue
            records.append(
                ConsumedRecord(
                    message.partition(),
                    message.offset(),
                    message.timestamp()[1],
                    message.key(),
                    message.value(),
                    tuple(message.headers() or ()),
                )
            )
        return records

    def _commit(
        self, outputs: Sequence[OutputRecord], offsets: dict[int, int], progress: ViewProgress
    ) -> None:
        """One transaction: the output records and the input offsets with the progress."""
        timeout_s = self._limits.kafka_timeout_ms / MS_PER_S
        producer = self._producer
        producer.begin_transaction()
        try:
            for output in outputs:
                self._produce(output)
            positions = [
                TopicPartition(
                    self._input, partition, offset, metadata=progress.metadata(partition)
                )
                for partition, offset in sorted(offsets.items())
            ]
            producer.send_offsets_to_transaction(
                positions, self._consumer.consumer_group_metadata(), timeout_s
            )
            producer.commit_transaction(timeout_s)
        except KafkaException:
            with contextlib.suppress(KafkaException):
                producer.abort_transaction(timeout_s)
            raise

    def _produce(self, output: OutputRecord) -> None:
        while True:
            try:
                self._producer.produce(
                    self._output, output.value, output.key, timestamp=output.timestamp_ms
                )
                return
            except BufferError:  # the client's queue is full: let it send, then go on
                self._producer.poll(self._limits.poll_wait_ms / MS_PER_S)
