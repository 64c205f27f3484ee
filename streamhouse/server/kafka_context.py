"""What every Kafka handler module shares: the agent context handed to handlers, the shape of
their answers, `done` for an answer that needs no waiting and `chain` to pass one on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from streamhouse.config import Settings
from streamhouse.engine.admin import AdminService
from streamhouse.engine.groups import GroupCoordinator
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.transactions import TransactionCoordinator
from streamhouse.engine.txn_markers import MarkerDelivery
from streamhouse.kafka.apis import ApiTable
from streamhouse.kafka.connection import Request
from streamhouse.kafka.encoded import EncodedBody
from streamhouse.kafka.fetch_sessions import FetchSessionCache
from streamhouse.ports.clock import Clock
from streamhouse.ports.producers import ProducerStore

Values = dict[str, Any]
"""A version-agnostic response body (`streamhouse.kafka.entities.build` makes the entity)."""
Completion = Coroutine[Any, Any, Values | EncodedBody] | asyncio.Future[Values]
"""What a handler returns: a coroutine yielding the response values once they are known (the
listener runs it as a task; Fetch yields its body encoded already), or a future they are set
on (no task: the hot paths)."""


@dataclass
class KafkaContext:
    """What handlers need from the agent."""

    settings: Settings
    clock: Clock
    log: LogStore
    producers: ProducerStore  # producer ids only; topics and groups go through `admin`
    apis: ApiTable
    groups: GroupCoordinator
    admin: AdminService
    transactions: TransactionCoordinator
    markers: MarkerDelivery  # WriteTxnMarkers writes through it
    fetch_sessions: FetchSessionCache = field(default_factory=FetchSessionCache)


Handler = Callable[[KafkaContext, Request], Awaitable[Completion]]


def done(values: Values) -> asyncio.Future[Values]:
    """A completion for an answer that is ready now."""
    future: asyncio.Future[Values] = asyncio.get_running_loop().create_future()
    future.set_result(values)
    return future


def chain(source: asyncio.Future[Values], target: asyncio.Future[Values]) -> None:
    """Settle `target` as `source` settled (result, exception or cancellation)."""
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())
