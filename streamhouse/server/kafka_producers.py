"""Kafka handler for InitProducerId: producer ids and epochs for idempotent producers here, and
for transactional ones from the transaction coordinator (engine/transactions.py)."""

from __future__ import annotations

import logging
from typing import Any

from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.connection import Request
from streamhouse.kafka.sentinels import NO_PRODUCER_EPOCH, NO_PRODUCER_ID
from streamhouse.log.txn_state import PRODUCER_EPOCH_MAX
from streamhouse.server.kafka_context import Completion, KafkaContext, Values, done
from streamhouse.server.kafka_groups import pace
from streamhouse.server.kafka_transactions import fenced_code

log = logging.getLogger("streamhouse.kafka")


async def init_producer_id(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    producer_id = int(getattr(body, "producer_id", NO_PRODUCER_ID))
    epoch = int(getattr(body, "producer_epoch", NO_PRODUCER_EPOCH))
    if body.transactional_id is not None:
        return _transactional(ctx, request, producer_id, epoch)
    if producer_id >= 0 and 0 <= epoch < PRODUCER_EPOCH_MAX:
        # KIP-360: a producer that lost track of its sequences bumps its epoch and starts over
        return done(_answer(ErrorCode.NONE, producer_id, epoch + 1))
    try:
        allocated = await ctx.producers.allocate_producer_id()
    except StreamHouseError as error:
        log.warning("InitProducerId failed: %s", error)
        return done(_answer(ErrorCode.COORDINATOR_NOT_AVAILABLE, NO_PRODUCER_ID, NO_PRODUCER_EPOCH))
    return done(_answer(ErrorCode.NONE, allocated, 0))


async def _transactional(
    ctx: KafkaContext, request: Request, producer_id: int, epoch: int
) -> Values:
    body: Any = request.body
    timeout_ms = int(body.transaction_timeout.total_seconds() * 1000)
    caller = (producer_id, epoch) if producer_id >= 0 else None
    answer = await ctx.transactions.init_producer(body.transactional_id, timeout_ms, caller)
    if answer.code is not ErrorCode.NONE:
        log.info(
            "InitProducerId %r: %s %s", body.transactional_id, answer.code.name, answer.message
        )
    await pace(ctx, answer.code)
    code = fenced_code(answer.code, "InitProducerId", request.api_version)
    return _answer(code, answer.producer_id, answer.producer_epoch)


def _answer(code: ErrorCode, producer_id: int, epoch: int) -> Values:
    return {
        "throttle_time": 0,
        "error_code": code,
        "producer_id": producer_id,
        "producer_epoch": epoch,
    }
