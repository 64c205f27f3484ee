"""Kafka handler for InitProducerId: producer ids and epochs for idempotent producers.

Transactions are not served yet: a request naming a transactional id is refused at once
(INVALID_REQUEST) rather than left to retry until the client's transaction timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from streamhouse.errors import ErrorCode, StreamHouseError
from streamhouse.kafka.connection import Request
from streamhouse.kafka.sentinels import NO_PRODUCER_EPOCH, NO_PRODUCER_ID
from streamhouse.server.kafka_context import Completion, KafkaContext, Values, done

PRODUCER_EPOCH_MAX = 32_766  # Kafka keeps Short.MAX_VALUE as "no epoch"
log = logging.getLogger("streamhouse.kafka")


async def init_producer_id(ctx: KafkaContext, request: Request) -> Completion:
    body: Any = request.body
    if body.transactional_id is not None:
        log.warning("refused InitProducerId for transactional id %r", body.transactional_id)
        return done(_answer(ErrorCode.INVALID_REQUEST, NO_PRODUCER_ID, NO_PRODUCER_EPOCH))
    producer_id = int(getattr(body, "producer_id", NO_PRODUCER_ID))
    epoch = int(getattr(body, "producer_epoch", NO_PRODUCER_EPOCH))
    if producer_id >= 0 and 0 <= epoch < PRODUCER_EPOCH_MAX:
        # KIP-360: a producer that lost track of its sequences bumps its epoch and starts over
        return done(_answer(ErrorCode.NONE, producer_id, epoch + 1))
    try:
        allocated = await ctx.producers.allocate_producer_id()
    except StreamHouseError as error:
        log.warning("InitProducerId failed: %s", error)
        return done(_answer(ErrorCode.COORDINATOR_NOT_AVAILABLE, NO_PRODUCER_ID, NO_PRODUCER_EPOCH))
    return done(_answer(ErrorCode.NONE, allocated, 0))


def _answer(code: ErrorCode, producer_id: int, epoch: int) -> Values:
    return {
        "throttle_time": 0,
        "error_code": code,
        "producer_id": producer_id,
        "producer_epoch": epoch,
    }
