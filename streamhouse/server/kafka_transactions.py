"""Kafka handlers of the transaction APIs, over the transaction and group coordinators.

AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, DescribeTransactions and ListTransactions go
to the transaction coordinator, TxnOffsetCommit to the group coordinator, WriteTxnMarkers
(from another agent's coordinator, or `streamctl transactions abort`) to the log store
through marker delivery. Handlers only translate: the rules live in the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from streamhouse.engine.groups import Committer
from streamhouse.engine.transactions import TxnAnswer
from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.connection import Request
from streamhouse.kafka.control_records import TxnMarker
from streamhouse.log.txn_state import TxnState
from streamhouse.names import TopicPartition
from streamhouse.server.kafka_context import Completion, Handler, KafkaContext, Values, done
from streamhouse.server.kafka_groups import offsets_to_commit, pace, retriable_code

log = logging.getLogger("streamhouse.kafka")
# The first versions answering PRODUCER_FENCED; older clients know INVALID_PRODUCER_EPOCH
# only (Kafka's own rule, KIP-588)
PRODUCER_FENCED_SINCE = {
    "InitProducerId": 4,
    "AddPartitionsToTxn": 2,
    "AddOffsetsToTxn": 2,
    "EndTxn": 2,
    "TxnOffsetCommit": 3,
}
ADD_PARTITIONS_BATCHED_SINCE = 4  # v4 (KIP-890): several transactions, verify_only


def fenced_code(code: ErrorCode, api: str, version: int) -> ErrorCode:
    """PRODUCER_FENCED as the request's version knows it."""
    if code is ErrorCode.PRODUCER_FENCED and version < PRODUCER_FENCED_SINCE[api]:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return code


def _logged(answer: TxnAnswer, what: str) -> ErrorCode:
    if answer.code is not ErrorCode.NONE:
        log.info("%s: %s %s", what, answer.code.name, answer.message)
    return answer.code


# --- AddPartitionsToTxn, AddOffsetsToTxn, EndTxn ---------------------------------------------


async def add_partitions_to_txn(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    version = request.api_version
    if version < ADD_PARTITIONS_BATCHED_SINCE:
        results = await _add_partitions(
            ctx,
            version,
            body.v3_and_below_transactional_id,
            body.v3_and_below_producer_id,
            body.v3_and_below_producer_epoch,
            body.v3_and_below_topics,
            verify_only=False,
        )
        await pace(ctx, *_codes(results))
        return done({"throttle_time": 0, "results_by_topic_v3_and_below": results})
    answered = []
    for txn in body.transactions:
        results = await _add_partitions(
            ctx,
            version,
            txn.transactional_id,
            txn.producer_id,
            txn.producer_epoch,
            txn.topics,
            verify_only=txn.verify_only,
        )
        answered.append({"transactional_id": txn.transactional_id, "topic_results": results})
    codes = [code for txn in answered for code in _codes(txn["topic_results"])]
    await pace(ctx, *codes)
    return done({"throttle_time": 0, "error_code": 0, "results_by_transaction": answered})


async def _add_partitions(
    ctx: KafkaContext,
    version: int,
    transactional_id: str,
    producer_id: int,
    producer_epoch: int,
    topics: Any,
    *,
    verify_only: bool,
) -> list[Values]:
    wanted = [TopicPartition(t.name, p) for t in topics for p in t.partitions]
    answers = await ctx.transactions.add_partitions(
        transactional_id, producer_id, producer_epoch, wanted, verify_only=verify_only
    )
    by_topic: dict[str, list[Values]] = {}
    for tp in wanted:
        code = _logged(answers[tp], f"AddPartitionsToTxn {transactional_id!r} {tp}")
        by_topic.setdefault(tp.topic, []).append(
            {
                "partition_index": tp.partition,
                "partition_error_code": fenced_code(code, "AddPartitionsToTxn", version),
            }
        )
    return [{"name": name, "results_by_partition": parts} for name, parts in by_topic.items()]


def _codes(topic_results: Iterable[Values]) -> list[int]:
    return [p["partition_error_code"] for t in topic_results for p in t["results_by_partition"]]


async def add_offsets_to_txn(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    answer = await ctx.transactions.add_offsets(
        body.transactional_id, body.producer_id, body.producer_epoch, body.group_id
    )
    code = _logged(answer, f"AddOffsetsToTxn {body.transactional_id!r}")
    await pace(ctx, code)
    code = fenced_code(code, "AddOffsetsToTxn", request.api_version)
    return done({"throttle_time": 0, "error_code": code})


async def end_txn(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    answer = await ctx.transactions.end(
        body.transactional_id, body.producer_id, body.producer_epoch, body.committed
    )
    code = _logged(answer, f"EndTxn {body.transactional_id!r}")
    await pace(ctx, code)
    code = fenced_code(code, "EndTxn", request.api_version)
    return done(
        {
            "throttle_time": 0,
            "error_code": code,
            "producer_id": body.producer_id,
            "producer_epoch": body.producer_epoch,
        }
    )


# --- TxnOffsetCommit -------------------------------------------------------------------------


async def txn_offset_commit(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    wanted = offsets_to_commit(body)
    generation = int(getattr(body, "generation_id", -1))
    member_id = str(getattr(body, "member_id", ""))
    committer = Committer(
        generation,
        member_id,
        getattr(body, "group_instance_id", None),
        unchecked=generation < 0 and not member_id,
    )
    try:
        answers: Mapping[TopicPartition, ErrorCode] = await ctx.groups.commit_txn_offsets(
            body.group_id, body.producer_id, committer, wanted
        )
    except StreamHouseError as failed:
        answers = dict.fromkeys(wanted, retriable_code(failed))
    await pace(ctx, *answers.values())
    by_topic: dict[str, list[Values]] = {}
    for tp, code in answers.items():
        code = fenced_code(code, "TxnOffsetCommit", request.api_version)
        by_topic.setdefault(tp.topic, []).append(
            {"partition_index": tp.partition, "error_code": code}
        )
    topics = [{"name": name, "partitions": parts} for name, parts in by_topic.items()]
    return done({"throttle_time": 0, "topics": topics})


# --- WriteTxnMarkers -------------------------------------------------------------------------


async def write_txn_markers(ctx: KafkaContext, request: Request) -> Completion:
    """Every marker into every partition named, all at once: each waits to be durable (a
    flush interval), which one at a time would add up."""
    body: Any = request.body
    writes = []
    for wanted in body.markers:
        marker = TxnMarker(
            wanted.producer_id,
            wanted.producer_epoch,
            bool(wanted.transaction_result),
            wanted.coordinator_epoch,
        )
        for topic in wanted.topics:
            for index in topic.partition_indexes:
                writes.append(ctx.markers.write_here(TopicPartition(topic.name, index), marker))
    codes = iter(await asyncio.gather(*writes))
    results = [
        {
            "producer_id": wanted.producer_id,
            "topics": [
                {
                    "name": topic.name,
                    "partitions": [
                        {"partition_index": index, "error_code": next(codes)}
                        for index in topic.partition_indexes
                    ],
                }
                for topic in wanted.topics
            ],
        }
        for wanted in body.markers
    ]
    return done({"markers": results})


# --- DescribeTransactions, ListTransactions --------------------------------------------------


async def describe_transactions(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    states = []
    for transactional_id in body.transactional_ids:
        try:
            txn = await ctx.transactions.describe(transactional_id)
        except StreamHouseError as error:
            states.append(_no_state(transactional_id, retriable_code(error)))
            continue
        if txn is None:
            states.append(_no_state(transactional_id, ErrorCode.TRANSACTIONAL_ID_NOT_FOUND))
            continue
        by_topic: dict[str, list[int]] = {}
        for tp in sorted(txn.partitions):
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        states.append(
            {
                "error_code": 0,
                "transactional_id": transactional_id,
                "transaction_state": txn.state.value,
                "transaction_timeout": txn.timeout_ms,
                "transaction_start_time": txn.start_ms,
                "producer_id": txn.producer_id,
                "producer_epoch": txn.producer_epoch,
                "topics": [{"topic": t, "partitions": p} for t, p in by_topic.items()],
            }
        )
    return done({"throttle_time": 0, "transaction_states": states})


def _no_state(transactional_id: str, code: ErrorCode) -> Values:
    return {
        "error_code": code,
        "transactional_id": transactional_id,
        "transaction_state": "",
        "transaction_timeout": 0,
        "transaction_start_time": -1,
        "producer_id": -1,
        "producer_epoch": -1,
        "topics": [],
    }


async def list_transactions(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    known_states = {state.value for state in TxnState}
    state_filters = set(body.state_filters)
    producer_filters = set(body.producer_id_filters)
    duration_ms = int(getattr(body, "duration_filter", -1))
    try:
        listed = await ctx.transactions.list_coordinated()
    except StreamHouseError as error:
        code = retriable_code(error)
        return done({"throttle_time": 0, "error_code": code, "transaction_states": []})
    now_ms = ctx.clock.now_ms()
    states = [
        {
            "transactional_id": txn.transactional_id,
            "producer_id": txn.producer_id,
            "transaction_state": txn.state.value,
        }
        for txn in listed
        if (not state_filters or txn.state.value in state_filters)
        and (not producer_filters or txn.producer_id in producer_filters)
        # Kafka's rule, start time -1 (Empty) included: longer than the filter since it began
        and (duration_ms < 0 or now_ms - txn.start_ms > duration_ms)
    ]
    return done(
        {
            "throttle_time": 0,
            "error_code": 0,
            "unknown_state_filters": sorted(state_filters - known_states),
            "transaction_states": states,
        }
    )


TRANSACTION_HANDLERS: dict[ApiKey, Handler] = {
    ApiKey.ADD_PARTITIONS_TO_TXN: add_partitions_to_txn,
    ApiKey.ADD_OFFSETS_TO_TXN: add_offsets_to_txn,
    ApiKey.END_TXN: end_txn,
    ApiKey.TXN_OFFSET_COMMIT: txn_offset_commit,
    ApiKey.WRITE_TXN_MARKERS: write_txn_markers,
    ApiKey.DESCRIBE_TRANSACTIONS: describe_transactions,
    ApiKey.LIST_TRANSACTIONS: list_transactions,
}
TRANSACTION_MAX_VERSIONS = {
    ApiKey.INIT_PRODUCER_ID: 5,  # v6 adds two-phase commit (KIP-939)
    ApiKey.ADD_PARTITIONS_TO_TXN: 4,  # v5 is transaction version 2 (KIP-890 part 2)
    ApiKey.END_TXN: 4,  # v5 bumps the epoch at every end (transaction version 2)
    ApiKey.WRITE_TXN_MARKERS: 1,  # v2 carries the transaction version
    ApiKey.LIST_TRANSACTIONS: 1,  # v2 filters by a transactional id pattern
}
