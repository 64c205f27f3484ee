"""The Kafka listener: asyncio streams in, the sans-IO connection in the middle, handlers out.

Requests of one connection are dispatched in order (so appends keep the order a
producer sent them in); their ack waits run concurrently and responses leave in
request order. The requests awaiting answers on a connection are bounded by count
(`requests_in_flight_max`) and bytes (`request_bytes_in_flight_max`); reading pauses
beyond either (server/in_flight.py). Responses ready in one turn of the event loop
leave in one write. At most `connections_max` connections are served;
one more is closed at once (counted, and logged at most every few seconds).

A `StreamHouseError` answers its request with its error code; a broken or hostile
byte stream closes its connection. Anything else a handler or the building of a
response raises is our own bug: it is reported to the agent's failure signal, and
from then on no connection is served (the agent stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from streamhouse.engine.failure import AgentFailure
from streamhouse.errors import StreamHouseError
from streamhouse.kafka.apis import ApiKey, ApiTable, advertise, api_name
from streamhouse.kafka.codec import response_schema
from streamhouse.kafka.connection import (
    ConnectionClosed,
    KafkaConnection,
    NeedData,
    ProtocolError,
    Rejected,
    Request,
)
from streamhouse.kafka.encoded import EncodedBody
from streamhouse.kafka.entities import build
from streamhouse.kafka.produce_wire import ProduceRequestBody, encode_produce_response
from streamhouse.server.in_flight import InFlightBudget
from streamhouse.server.kafka_context import KafkaContext, Values
from streamhouse.server.kafka_groups import CLIENT_HOST
from streamhouse.server.kafka_handlers import HANDLERS, MAX_VERSIONS

READ_CHUNK_BYTES = 256 * 1024
# Requests one connection dispatches before the loop turns: one read may hold a thousand
# small requests, and handling them all at once would hold up every other task meanwhile
REQUESTS_PER_TURN_MAX = 64
REFUSALS_LOG_INTERVAL_MS = 10_000  # a flood of refused connections logs one line per interval
log = logging.getLogger("streamhouse.kafka")


def advertised_apis() -> ApiTable:
    return advertise(HANDLERS, MAX_VERSIONS)


@dataclass
class ListenerStats:
    """Counters of the Kafka listener (exported on /metrics)."""

    connections_refused: int = 0  # closed at once: `connections_max` were open already


@dataclass
class KafkaListener:
    """Serves the Kafka protocol for one agent until it stops or the agent fails."""

    context: KafkaContext
    failure: AgentFailure
    server: asyncio.Server | None = None
    connections: set[asyncio.Task[None]] = field(default_factory=set)
    stats: ListenerStats = field(default_factory=ListenerStats)
    _refusals_logged: int = field(default=0, init=False, repr=False)
    _refusals_logged_ms: int | None = field(default=None, init=False, repr=False)

    async def bind(self, host: str, port: int) -> int:
        """Bind the listening socket without accepting yet (connections wait in the backlog
        until `serve`); returns the bound port (useful when `port` is 0)."""
        self.server = await asyncio.start_server(self._serve, host, port, start_serving=False)
        self.failure.on_failure(lambda _: self._stop_serving())
        bound: int = self.server.sockets[0].getsockname()[1]
        return bound

    async def serve(self) -> None:
        """Accept connections from now on."""
        assert self.server is not None, "serve() before bind()"
        await self.server.start_serving()

    async def close(self) -> None:
        if self.server is not None:
            self._stop_serving()
            await asyncio.gather(*self.connections, return_exceptions=True)
            await self.server.wait_closed()

    def _stop_serving(self) -> None:
        """Accept no more connections and drop the open ones."""
        assert self.server is not None
        self.server.close()
        for task in list(self.connections):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= self.context.settings.connections_max:
            self._refuse(writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        peer = writer.get_extra_info("peername")
        CLIENT_HOST.set(f"/{peer[0]}" if isinstance(peer, tuple) and peer else "")
        try:
            await _Session(self.context, self.failure, reader, writer).run()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the peer went away, or the agent is shutting the connection down
        except Exception as error:  # the listener's own bug: the agent stops
            self.failure.report(error, "the Kafka listener")
        finally:
            self.connections.discard(task)
            writer.close()

    def _refuse(self, writer: asyncio.StreamWriter) -> None:
        self.stats.connections_refused += 1
        writer.close()
        now_ms = self.context.clock.monotonic_ms()
        last_ms = self._refusals_logged_ms
        if last_ms is not None and now_ms - last_ms < REFUSALS_LOG_INTERVAL_MS:
            return
        log.warning(
            "refused %d Kafka connection(s): connections_max=%d are open "
            "(this line comes at most every %d ms)",
            self.stats.connections_refused - self._refusals_logged,
            self.context.settings.connections_max,
            REFUSALS_LOG_INTERVAL_MS,
        )
        self._refusals_logged = self.stats.connections_refused
        self._refusals_logged_ms = now_ms


class _Session:
    """One client connection."""

    def __init__(
        self,
        ctx: KafkaContext,
        failure: AgentFailure,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._ctx = ctx
        self._failure = failure
        self._reader = reader
        self._writer = writer
        self._connection = KafkaConnection(ctx.apis, ctx.settings.frame_bytes_max)
        self._in_flight = InFlightBudget(
            ctx.settings.requests_in_flight_max, ctx.settings.request_bytes_in_flight_max
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._unwritten: list[bytes] = []  # responses ready this loop turn, written at its end

    async def run(self) -> None:
        try:
            while True:
                data = await self._reader.read(READ_CHUNK_BYTES)
                self._connection.receive_data(data)
                if not await self._drain_events():
                    return
        finally:
            for task in self._tasks:
                task.cancel()

    async def _drain_events(self) -> bool:
        dispatched = 0
        while not self._failure.failed:  # a failed agent serves nothing more
            if dispatched == REQUESTS_PER_TURN_MAX:
                dispatched = 0
                await asyncio.sleep(0)  # let the rest of the agent run (lease renewals)
            event = self._connection.next_event()
            if isinstance(event, NeedData):
                return True
            if isinstance(event, ConnectionClosed):
                return False
            if isinstance(event, ProtocolError):
                log.info("closing Kafka connection: %s", event.message)
                return False
            if isinstance(event, Rejected):
                self._write(self._connection.send_error(event.request, event.error))
                continue
            await self._dispatch(event)
            dispatched += 1
        return False

    async def _dispatch(self, request: Request) -> None:
        if not self._in_flight.take(request.size):
            await self._in_flight.acquire(request.size)
        try:
            completion = await HANDLERS[ApiKey(request.api_key)](self._ctx, request)
        except StreamHouseError as error:
            self._in_flight.release(request.size)
            self._write(self._connection.send_error(request, error.code))
            return
        except Exception as error:
            self._in_flight.release(request.size)
            self._our_bug(request, error)
            return
        answer = completion if isinstance(completion, asyncio.Future) else self._run(completion)
        answer.add_done_callback(functools.partial(self._answered, request))

    def _run(self, completion: Coroutine[Any, Any, Values | EncodedBody]) -> asyncio.Task[Any]:
        """A handler's coroutine as a task (the hot paths hand a future, and take none)."""
        task = self._track(asyncio.ensure_future(completion))
        # a task cancelled before it starts (the connection closed) never runs its coroutine:
        # close it so nothing is left dangling
        task.add_done_callback(lambda _: completion.close())
        return task

    def _track(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """Keep `task` until it ends (closing the connection cancels what is left)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _answered(self, request: Request, completion: asyncio.Future[Values | EncodedBody]) -> None:
        """A handler's answer settled: write it now (cancelled: the connection or the agent is
        closing), then count the request out of the budget."""
        try:
            if completion.cancelled():
                pass
            elif isinstance(error := completion.exception(), StreamHouseError):
                self._write(self._connection.send_error(request, error.code))
            elif isinstance(error, Exception):
                self._our_bug(request, error)
            elif not request.expects_response:
                self._unanswered(request, completion.result())
            else:
                self._write(self._encoded(request, completion.result()))
        except Exception as error:
            self._our_bug(request, error)
        self._release_when_drained(request.size)

    def _unanswered(self, request: Request, values: Values | EncodedBody) -> None:
        """A Produce with acks=0 gets no answer; if a partition refused it, the connection is
        closed, as Kafka does, so the client refreshes its metadata rather than sending on to
        an agent that drops everything (a partition led elsewhere, a deleted topic)."""
        assert isinstance(values, dict), "only a Produce goes unanswered, and it gives values"
        refused = next(
            (
                f"{topic['name']}-{partition['index']}: {partition.get('error_message', '')}"
                for topic in values["responses"]
                for partition in topic["partition_responses"]
                if partition["error_code"]
            ),
            None,
        )
        if refused is not None:
            log.info("closing Kafka connection after an acks=0 Produce refused %s", refused)
            self._writer.close()

    def _release_when_drained(self, size: int) -> None:
        """Count an answered request out of the budget, once a slow reader caught up."""
        transport = self._writer.transport
        if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1]:
            self._in_flight.release(size)
            return
        self._track(asyncio.ensure_future(self._release_after_drain(size)))

    async def _release_after_drain(self, size: int) -> None:
        try:
            await self._drained()
        finally:
            self._in_flight.release(size)

    async def _drained(self) -> None:
        """Wait while the peer reads slowly (a slow reader slows its own connection only)."""
        with contextlib.suppress(ConnectionError):  # the peer went away: reading ends it
            await self._writer.drain()

    def _encoded(self, request: Request, values: Values | EncodedBody) -> bytes:
        """The bytes answering `request` (and any later ones it held back)."""
        if isinstance(values, EncodedBody):  # Fetch: record batches passed through, joined once
            return self._connection.send_encoded(request, values)
        if isinstance(request.body, ProduceRequestBody):  # the hot path: encoded without kio
            encoded = encode_produce_response(request.api_version, values)
            if encoded is not None:
                return self._connection.send_encoded(request, encoded)
        schema = response_schema(request.api_key, request.api_version)
        return self._connection.send_response(request, build(schema, values))

    def _our_bug(self, request: Request, error: Exception) -> None:
        where = f"the Kafka {api_name(request.api_key)} v{request.api_version} request"
        self._failure.report(error, where)

    def _write(self, data: bytes) -> None:
        if not data:
            return
        if not self._unwritten:
            asyncio.get_running_loop().call_soon(self._write_unwritten)
        self._unwritten.append(data)

    def _write_unwritten(self) -> None:
        """One write (one system call, mostly) for every response that got ready this turn."""
        unwritten, self._unwritten = self._unwritten, []
        if not self._failure.failed and not self._writer.is_closing():
            self._writer.write(b"".join(unwritten))  # nothing leaves a failed agent


def advertised_host(bind_host: str, configured: str) -> str:
    """The host clients are sent to: the configured one, the bind address, or, when bound to
    every interface, this machine's IPv4 address (clients cannot connect to 0.0.0.0)."""
    if configured:
        return configured
    if bind_host not in ("0.0.0.0", "", "::"):
        return "127.0.0.1" if bind_host == "localhost" else bind_host
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return address if ":" not in address else "127.0.0.1"
