"""What every Kafka handler module shares: the agent context handed to handlers, the shape of
their answers, `done` for an answer that needs no waiting and `chain` to pass one on."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from streamhouse.config import Settings
from streamhouse.engine.acls import AclService
from streamhouse.engine.admin import AdminService
from streamhouse.engine.authentication import Authenticator, Principal
from streamhouse.engine.consume import FetchService
from streamhouse.engine.groups import GroupCoordinator
from streamhouse.engine.log_store import LogStore
from streamhouse.engine.produce import ProduceService
from streamhouse.engine.quotas import QuotaService
from streamhouse.engine.tenancy import TenancyService
from streamhouse.engine.transactions import TransactionCoordinator
from streamhouse.engine.txn_markers import MarkerDelivery
from streamhouse.kafka.apis import ApiTable
from streamhouse.kafka.connection import Request
from streamhouse.kafka.encoded import EncodedBody
from streamhouse.kafka.fetch_sessions import FetchSessionCache
from streamhouse.ports.clock import Clock
from streamhouse.ports.producers import ProducerStore

SASL_FAKE_SALT_KEY_BYTES = 32
PRINCIPAL: ContextVar[Principal | None] = ContextVar("principal", default=None)
"""Who the connection a handler serves authenticated as (set by the listener in the
connection's task; None on a PLAINTEXT or SSL listener). For ACLs and quotas to come."""

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
    produce: ProduceService  # the produce rule every door shares
    fetch: FetchService  # the read rule every door shares
    fetch_sessions: FetchSessionCache = field(default_factory=FetchSessionCache)
    # Checks SASL credentials; required when settings.kafka_sasl
    authenticator: Authenticator | None = None
    tenancy: TenancyService | None = None  # SCRAM credentials through Kafka's admin APIs
    acls: AclService | None = None  # Create/Describe/DeleteAcls
    quotas: QuotaService | None = None  # client quotas: throttling, Describe/AlterClientQuotas
    # The secret unknown SCRAM users' fake salts derive from (kafka/sasl.py). Random per
    # process: stable for a user name while the agent runs
    sasl_fake_salt_key: bytes = field(
        default_factory=lambda: secrets.token_bytes(SASL_FAKE_SALT_KEY_BYTES)
    )


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
