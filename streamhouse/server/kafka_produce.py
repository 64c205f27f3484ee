"""The Produce handler: batches appended in request order, answered once every ack is due.

The handler appends each partition's batch before it returns (so appends keep the
connection's request order) and returns a future of the answer, due once each
partition's ack is (acks=1: its WAL entry synced; acks=all: its object committed;
acks=0: at once) or the request's timeout passed. The waits are callbacks on the log
store's futures and one timer, not a task: a producer sending a record per request
pays for every object made per request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from streamhouse.engine.log_store import AppendResult
from streamhouse.engine.produce import Ack, ack_wait
from streamhouse.errors import ErrorCode, InvalidRecord, StreamHouseError
from streamhouse.kafka.connection import Request
from streamhouse.kafka.sentinels import NO_OFFSET
from streamhouse.names import TopicPartition
from streamhouse.ports.clock import Timer
from streamhouse.server.kafka_cluster import broker
from streamhouse.server.kafka_context import Completion, KafkaContext, Values, chain
from streamhouse.server.kafka_throttle import throttle_of
from streamhouse.tenancy.quotas import PRODUCER_BYTE_RATE

ACKS_NONE, ACKS_LEADER, ACKS_ALL = 0, 1, -1
ACK_MODES = {ACKS_NONE: Ack.NONE, ACKS_LEADER: Ack.LEADER, ACKS_ALL: Ack.DURABLE}
CURRENT_LEADER_PRODUCE_VERSION_MIN = 10  # KIP-951's CurrentLeader and NodeEndpoints

Appended = tuple[str, int, AppendResult | StreamHouseError]  # topic, partition, outcome


async def produce(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    acks = int(body.acks)
    if acks not in ACK_MODES:
        raise StreamHouseError(
            f"acks must be 0, 1 or -1 (all), not {acks}", ErrorCode.INVALID_REQUIRED_ACKS
        )
    ack = ACK_MODES[acks]
    appended: list[Appended] = []
    produced_bytes = 0
    for topic in body.topic_data:
        for partition in topic.partition_data:
            produced_bytes += len(partition.records or b"")
            tp = TopicPartition(topic.name, partition.index)
            outcome = await ctx.produce.append(tp, partition.records or b"", ack)
            appended.append((topic.name, partition.index, outcome))
    throttle_ms = await throttle_of(ctx, request, PRODUCER_BYTE_RATE, produced_bytes)
    answer = _ProduceAnswer(ctx, appended, ack, int(body.timeout_ms), throttle_ms).future
    if request.api_version < CURRENT_LEADER_PRODUCE_VERSION_MIN:
        return answer
    return _with_leader_hints(ctx, answer)


class _ProduceAnswer:
    """The answer to one Produce request, set once every partition's ack wait is over."""

    def __init__(
        self,
        ctx: KafkaContext,
        appended: list[Appended],
        ack: Ack,
        timeout_ms: int,
        throttle_ms: int = 0,
    ) -> None:
        self.future: asyncio.Future[Values] = asyncio.get_running_loop().create_future()
        self._ctx = ctx
        self._throttle_ms = throttle_ms
        self._appended = appended
        self._ack = ack
        self._timeout_ms = timeout_ms
        self._waits = [
            wait
            for _, _, outcome in appended
            if (wait := self._wait_of(outcome)) is not None and not wait.done()
        ]
        self._timer: Timer | None = None
        if not self._waits:
            self._finish()
            return
        self._pending = len(self._waits)
        for wait in self._waits:
            wait.add_done_callback(self._one_done)
        self._timer = ctx.clock.call_later_ms(max(timeout_ms, 1), self._finish)

    def _wait_of(self, outcome: AppendResult | StreamHouseError) -> asyncio.Future[Any] | None:
        if isinstance(outcome, StreamHouseError):
            return None
        return ack_wait(outcome, self._ack)

    def _one_done(self, _: object) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._finish()

    def _finish(self) -> None:
        """Every wait is over, or the timeout passed: answer each partition as it stands."""
        if self.future.done():
            return
        if self._timer is not None:
            self._timer.cancel()
        for wait in self._waits:
            wait.remove_done_callback(self._one_done)
        try:
            self.future.set_result(self._values())
        except asyncio.CancelledError:  # the engine is closing: nothing is answered
            self.future.cancel()
        except Exception as error:  # our own bug: the listener reports it
            self.future.set_exception(error)

    def _values(self) -> Values:
        by_topic: dict[str, list[Values]] = {}
        for name, index, outcome in self._appended:
            by_topic.setdefault(name, []).append(self._partition_answer(index, outcome))
        responses = [{"name": name, "partition_responses": p} for name, p in by_topic.items()]
        return {"responses": responses, "throttle_time": self._throttle_ms}

    def _partition_answer(self, index: int, outcome: AppendResult | StreamHouseError) -> Values:
        answer: Values = {"index": index, "base_offset": NO_OFFSET, "log_start_offset": NO_OFFSET}
        if isinstance(outcome, StreamHouseError):
            return _refused(answer, outcome)
        if self._ack is Ack.NONE:
            return {**answer, "error_code": 0, "base_offset": outcome.base_offset}
        wait = self._wait_of(outcome)
        assert wait is not None
        if not wait.done():
            return {
                **answer,
                "error_code": ErrorCode.REQUEST_TIMED_OUT,
                "error_message": f"not acknowledged within {self._timeout_ms} ms",
            }
        error = self._ctx.produce.acknowledged(outcome, self._ack)
        if error is not None:
            return _refused(answer, error)
        return {
            **answer,
            "error_code": 0,
            "base_offset": outcome.base_offset,
            "log_start_offset": outcome.log_start_offset,
        }


def _refused(answer: Values, error: StreamHouseError) -> Values:
    refused = {**answer, "error_code": error.code, "error_message": str(error)}
    if isinstance(error, InvalidRecord):  # Produce v8+ names the records (KIP-467)
        refused["record_errors"] = [
            {"batch_index": index, "batch_index_error_message": message}
            for index, message in error.record_errors
        ]
    return refused


def _with_leader_hints(ctx: KafkaContext, answer: asyncio.Future[Values]) -> Completion:
    """KIP-951 (Produce v10+): a partition refused NOT_LEADER_OR_FOLLOWER names where its
    requests go now (CurrentLeader) and the answer lists that agent (NodeEndpoints), so
    the client moves on without a Metadata round trip. Fetch carries them from v16 on,
    above the versions served, so only Produce does. Only such an answer takes a task."""
    hinted: asyncio.Future[Values] = asyncio.get_running_loop().create_future()

    def answered(done: asyncio.Future[Values]) -> None:
        if done.cancelled() or done.exception() is not None or not _not_leader(done.result()):
            chain(done, hinted)
            return
        task = asyncio.ensure_future(_add_leader_hints(ctx, done.result()))
        task.add_done_callback(lambda hints: chain(hints, hinted))

    answer.add_done_callback(answered)
    return hinted


def _not_leader(response: Values) -> bool:
    return any(
        partition["error_code"] == ErrorCode.NOT_LEADER_OR_FOLLOWER
        for topic in response["responses"]
        for partition in topic["partition_responses"]
    )


async def _add_leader_hints(ctx: KafkaContext, response: Values) -> Values:
    endpoints: dict[int, Values] = {}
    for topic in response["responses"]:
        for partition in topic["partition_responses"]:
            if partition["error_code"] != ErrorCode.NOT_LEADER_OR_FOLLOWER:
                continue
            found = await ctx.admin.current_leader(
                TopicPartition(topic["name"], partition["index"])
            )
            if found is None:
                continue
            leader, epoch = found
            partition["current_leader"] = {"leader_id": leader.node_id, "leader_epoch": epoch}
            endpoints[leader.node_id] = broker(leader)
    if endpoints:
        response["node_endpoints"] = [endpoints[node] for node in sorted(endpoints)]
    return response
