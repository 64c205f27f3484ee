"""The Kafka listener: asyncio streams in, the sans-IO connection in the middle, handlers out.

Requests of one connection are dispatched in order (so appends keep the order a
producer sent them in); their ack waits run concurrently and responses leave in
request order. At most `requests_in_flight_max` requests wait per connection;
reading pauses beyond that. At most `connections_max` connections are served;
one more is closed at once (counted, and logged at most every few seconds).

A `StreamHouseError` answers its request with its error code; a broken or hostile
byte stream closes its connection. Anything else a handler or the building of a
response raises is our own bug: it is reported to the agent's failure signal, and
from then on no connection is served (the agent stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field

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
from streamhouse.server.kafka_context import Completion, KafkaContext
from streamhouse.server.kafka_groups import CLIENT_HOST
from streamhouse.server.kafka_handlers import HANDLERS, MAX_VERSIONS

READ_CHUNK_BYTES = 256 * 1024
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
        self._in_flight = asyncio.Semaphore(ctx.settings.requests_in_flight_max)
        self._tasks: set[asyncio.Task[None]] = set()

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
        while not self._failure.failed:  # a failed agent serves nothing more
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
        return False

    async def _dispatch(self, request: Request) -> None:
        await self._in_flight.acquire()
        try:
            completion = await HANDLERS[ApiKey(request.api_key)](self._ctx, request)
        except StreamHouseError as error:
            self._in_flight.release()
            self._write(self._connection.send_error(request, error.code))
            return
        except Exception as error:
            self._in_flight.release()
            self._our_bug(request, error)
            return
        task = asyncio.ensure_future(self._respond(request, completion))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # a response task cancelled before it starts (the connection closed) never awaits
        # its completion: close the coroutine so nothing is left dangling
        task.add_done_callback(lambda _: completion.close())

    async def _respond(self, request: Request, completion: Completion) -> None:
        try:
            self._write(await self._answer(request, completion))
            await self._drained()
        except Exception as error:
            self._our_bug(request, error)
        finally:
            self._in_flight.release()

    async def _drained(self) -> None:
        """Wait while the peer reads slowly (a slow reader slows its own connection only)."""
        with contextlib.suppress(ConnectionError):  # the peer went away: reading ends it
            await self._writer.drain()

    async def _answer(self, request: Request, completion: Completion) -> bytes:
        """The bytes answering `request` (and any later ones it held back)."""
        try:
            values = await completion
        except StreamHouseError as error:
            return self._connection.send_error(request, error.code)
        if isinstance(values, EncodedBody):
            return self._connection.send_encoded(request, values)
        schema = response_schema(request.api_key, request.api_version)
        return self._connection.send_response(request, build(schema, values))

    def _our_bug(self, request: Request, error: Exception) -> None:
        where = f"the Kafka {api_name(request.api_key)} v{request.api_version} request"
        self._failure.report(error, where)

    def _write(self, data: bytes) -> None:
        if data and not self._failure.failed:  # nothing leaves a failed agent
            self._writer.write(data)


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
