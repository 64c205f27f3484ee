"""What every Kafka handler module shares: the agent context handed to handlers, the shape of
their answers, and `done` for an answer that needs no waiting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from streamhouse.config import Settings
from streamhouse.engine.admin import AdminService
from streamhouse.engine.groups import GroupCoordinator
from streamhouse.engine.log_store import LogStore
from streamhouse.kafka.apis import ApiTable
from streamhouse.kafka.connection import Request
from streamhouse.kafka.encoded import EncodedBody
from streamhouse.kafka.fetch_sessions import FetchSessionCache
from streamhouse.ports.clock import Clock
from streamhouse.ports.producers import ProducerStore

Values = dict[str, Any]
"""A version-agnostic response body (`streamhouse.kafka.entities.build` makes the entity)."""
Completion = Coroutine[Any, Any, Values | EncodedBody]
"""What a handler returns: a coroutine yielding the response values once they are known (or,
on the Fetch hot path, the body already encoded)."""


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
    fetch_sessions: FetchSessionCache = field(default_factory=FetchSessionCache)


Handler = Callable[[KafkaContext, Request], Awaitable[Completion]]


async def done(values: Values) -> Values:
    """A completion for an answer that is ready now."""
    return values
