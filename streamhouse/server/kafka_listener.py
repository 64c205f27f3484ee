"""The Kafka listener: asyncio streams in, the sans-IO connection in the middle, handlers out.

Requests of one connection are dispatched in order (so appends keep the order a
producer sent them in); their ack waits run concurrently and responses leave in
request order. The requests awaiting answers on a connection are bounded by count
(`requests_in_flight_max`) and bytes (`request_bytes_in_flight_max`); reading pauses
beyond either (server/in_flight.py). Responses ready in one turn of the event loop
leave in one write. At most `connections_max` connections are served;
one more is closed at once (counted, and logged at most every few seconds).

On a SASL listener each connection authenticates first (server/kafka_sasl.py decides what
it may send meanwhile; the principal is then `PRINCIPAL` in the connection's task); a TLS
listener wraps the streams with the standard `ssl` module.

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
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from streamhouse.config import Settings
from streamhouse.engine.acls import EVERYTHING, Grant
from streamhouse.engine.authentication import Authenticator, Principal
from streamhouse.engine.failure import AgentFailure
from streamhouse.errors import ErrorCode, StreamHouseError
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
from streamhouse.kafka.sasl_gate import Verdict
from streamhouse.server.in_flight import InFlightBudget
from streamhouse.server.kafka_acl_checks import (
    check_request,
    filtered_answer,
    refused_metadata_topics,
    with_refused_topics,
)
from streamhouse.server.kafka_context import PRINCIPAL, KafkaContext, Values
from streamhouse.server.kafka_groups import CLIENT_HOST
from streamhouse.server.kafka_handlers import HANDLERS, MAX_VERSIONS
from streamhouse.server.kafka_orgs import checked_open_request, scoped_request, unscoped_answer
from streamhouse.server.kafka_sasl import SaslDoor, SaslOptions
from streamhouse.server.kafka_throttle import (
    MUTE,
    BusyTime,
    ConnectionMute,
    charge_request_time,
    request_time_limited,
)

READ_CHUNK_BYTES = 256 * 1024
# Requests one connection dispatches before the loop turns: one read may hold a thousand
# small requests, and handling them all at once would hold up every other task meanwhile
REQUESTS_PER_TURN_MAX = 64
CLOSE_SETTLE_TURNS_MAX = 8  # loop turns a closing connection waits for earlier answers
# Largest frame read before a connection authenticated (Kafka's sasl.server.max.receive.size):
# an unauthenticated peer cannot make the agent buffer frame_bytes_max
UNAUTHENTICATED_FRAME_BYTES_MAX = 512 * 1024
FAILED_AUTHENTICATION_CLOSE_DELAY_MS = 100  # Kafka's connection.failed.authentication.delay.ms
REFUSALS_LOG_INTERVAL_MS = 10_000  # a flood of refused connections logs one line per interval
log = logging.getLogger("streamhouse.kafka")


SASL_APIS = (ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE)


def advertised_apis(sasl: bool = False) -> ApiTable:
    """The APIs the listener advertises; SaslHandshake and SaslAuthenticate on SASL only."""
    return advertise([*HANDLERS, *(SASL_APIS if sasl else ())], MAX_VERSIONS)


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server TLS context with the certificate chain and key (PEM files); ValueError with
    the reason when they cannot be loaded."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(
            f"cannot load the TLS certificate {certfile!r} and key {keyfile!r}: {error}"
        ) from error
    return context


def check_kafka_security(settings: Settings, authenticator: Authenticator | None) -> None:
    """ValueError, with the reason, when the listener's security settings cannot be served:
    a TLS certificate that does not load, a SASL listener with no authenticator."""
    if settings.kafka_tls:
        tls_context(settings.ssl_certfile, settings.ssl_keyfile)
    if settings.kafka_sasl and authenticator is None:
        raise ValueError(
            f"kafka_security_protocol={settings.kafka_security_protocol} needs an "
            "authenticator (credentials to check), and none was given"
        )


def sasl_options(ctx: KafkaContext) -> SaslOptions | None:
    """What the connections' SASL doors share; None unless the listener is SASL."""
    settings = ctx.settings
    if not settings.kafka_sasl:
        return None
    check_kafka_security(settings, ctx.authenticator)
    assert ctx.authenticator is not None
    return SaslOptions(
        mechanisms=settings.sasl_mechanism_list,
        authenticator=ctx.authenticator,
        clock=ctx.clock,
        session_lifetime_ms=settings.sasl_session_lifetime_ms,
        fake_salt_key=ctx.sasl_fake_salt_key,
    )


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
    _sasl: SaslOptions | None = field(default=None, init=False, repr=False)

    async def bind(self, host: str, port: int) -> int:
        """Bind the listening socket without accepting yet (connections wait in the backlog
        until `serve`); returns the bound port (useful when `port` is 0). ValueError when
        the security settings cannot be served (no certificate, no authenticator)."""
        settings = self.context.settings
        self._sasl = sasl_options(self.context)
        tls = (
            tls_context(settings.ssl_certfile, settings.ssl_keyfile) if settings.kafka_tls else None
        )
        self.server = await asyncio.start_server(
            self._serve, host, port, ssl=tls, start_serving=False
        )
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
            sasl = SaslDoor(self._sasl) if self._sasl is not None else None
            await _Session(self.context, self.failure, reader, writer, sasl).run()
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass  # the peer went away or broke TLS, or the agent shuts the connection down
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
        sasl: SaslDoor | None = None,
    ) -> None:
        self._ctx = ctx
        self._sasl = sasl  # None: no authentication on this listener
        self._failure = failure
        self._reader = reader
        self._writer = writer
        frame_bytes_max = ctx.settings.frame_bytes_max
        if sasl is not None:
            frame_bytes_max = min(frame_bytes_max, UNAUTHENTICATED_FRAME_BYTES_MAX)
        self._connection = KafkaConnection(ctx.apis, frame_bytes_max)
        self._in_flight = InFlightBudget(
            ctx.settings.requests_in_flight_max, ctx.settings.request_bytes_in_flight_max
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._unwritten: list[bytes] = []  # responses ready this loop turn, written at its end
        self._mute = ConnectionMute()  # a throttled client's quiet time (KIP-219)

    async def run(self) -> None:
        MUTE.set(self._mute)
        try:
            while True:
                await self._mute.sit_out(self._ctx.clock)
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
            await self._mute.sit_out(self._ctx.clock)  # requests read already wait too
            event = self._connection.next_event()
            if isinstance(event, NeedData):
                return True
            if isinstance(event, ConnectionClosed):
                return False
            if isinstance(event, ProtocolError):
                log.info("closing Kafka connection: %s", event.message)
                return False
            if self._sasl is not None and not await self._passes_sasl(event):
                return False
            if isinstance(event, Rejected):
                self._write(self._connection.send_error(event.request, event.error))
                continue
            if self._sasl is not None and self._sasl.verdict(event.api_key) is Verdict.SASL:
                if not await self._answer_sasl(self._sasl, event):
                    return False
                continue
            await self._dispatch(event)
            dispatched += 1
        return False

    async def _passes_sasl(self, event: Request | Rejected) -> bool:
        """Whether the request may go on, by its connection's authentication state; when it
        may not, it is answered ILLEGAL_SASL_STATE or not at all, and the connection closes."""
        assert self._sasl is not None
        request = event.request if isinstance(event, Rejected) else event
        verdict = self._sasl.verdict(request.api_key)
        if verdict in (Verdict.SERVE, Verdict.SASL):
            return True
        log.info(
            "closing Kafka connection: %s v%d %s",
            api_name(request.api_key),
            request.api_version,
            f"while {self._sasl.state.value}",
        )
        if verdict is Verdict.REFUSE:
            self._write(self._connection.send_error(request, ErrorCode.ILLEGAL_SASL_STATE))
        await self._flush_before_close()
        return False

    async def _answer_sasl(self, sasl: SaslDoor, request: Request) -> bool:
        """Answer a SASL request in turn (nothing else of the connection runs meanwhile);
        False when the connection closes after the answer."""
        answer = await sasl.answer(request)
        PRINCIPAL.set(sasl.principal)
        if sasl.principal is not None:  # authenticated: full-size requests from now on
            self._connection.frame_bytes_max = self._ctx.settings.frame_bytes_max
        self._write(self._encoded(request, answer.values))
        if answer.close:
            await self._flush_before_close()
            # as Kafka's connection.failed.authentication.delay.ms: the client reads the
            # answer before the close (kafka-python otherwise sees only the close), and a
            # password guesser waits
            await self._ctx.clock.sleep_ms(FAILED_AUTHENTICATION_CLOSE_DELAY_MS)
        return not answer.close

    async def _flush_before_close(self) -> None:
        """Write what is answered before the connection closes: answers of earlier requests
        (an ApiVersions) settle on the loop's next turns, and responses leave in order."""
        for _ in range(CLOSE_SETTLE_TURNS_MAX):
            if not self._connection.responses_pending:
                break
            await asyncio.sleep(0)
        self._write_unwritten()

    async def _dispatch(self, request: Request) -> None:
        if not self._in_flight.take(request.size):
            await self._in_flight.acquire(request.size)
        principal = PRINCIPAL.get()
        busy = BusyTime() if request_time_limited(self._ctx) else None
        try:
            admission = _Admission(principal, await self._grant(principal))
            scoped = admission.admitted(request)
            handled = HANDLERS[ApiKey(request.api_key)](self._ctx, scoped)
            completion = await (handled if busy is None else busy.timed(handled))
        except StreamHouseError as error:
            self._in_flight.release(request.size)
            self._write(self._connection.send_error(request, error.code))
            return
        except Exception as error:
            self._in_flight.release(request.size)
            self._our_bug(request, error)
            return
        if isinstance(completion, asyncio.Future):
            answer: asyncio.Future[Any] = completion
        else:
            timed = completion if busy is None else busy.timed(completion)
            answer = self._run(timed)
            if timed is not completion:  # a task cancelled unstarted never ran it: closed
                answer.add_done_callback(lambda _: completion.close())
        answer.add_done_callback(functools.partial(self._answered, request, admission))
        if busy is not None:
            answer.add_done_callback(lambda _: self._charge(request, busy))

    def _charge(self, request: Request, busy: BusyTime) -> None:
        """Count the handler's time against the client's request-time quota (its throttle
        mutes the connection from its next request on)."""
        self._track(asyncio.ensure_future(charge_request_time(self._ctx, request, busy)))

    async def _grant(self, principal: Principal | None) -> Grant:
        """What the connection's principal may do by its org's ACLs."""
        if principal is None or self._ctx.acls is None:
            return EVERYTHING
        return await self._ctx.acls.grant(principal, CLIENT_HOST.get().lstrip("/"))

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

    def _answered(
        self,
        request: Request,
        admission: _Admission,
        completion: asyncio.Future[Values | EncodedBody],
    ) -> None:
        """A handler's answer settled: write it now as the principal may see it (cancelled:
        the connection or the agent is closing), then count the request out of the budget."""
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
                self._write(self._encoded(request, admission.seen(request, completion.result())))
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
        if unwritten and not self._failure.failed and not self._writer.is_closing():
            self._writer.write(b"".join(unwritten))  # nothing leaves a failed agent


@dataclass
class _Admission:
    """One request's passage through the principal's org and ACLs: the request as handlers
    see it (`admitted`), and the answer as the principal may see it (`seen`)."""

    principal: Principal | None
    grant: Grant
    refused_topics: list[tuple[str, ErrorCode]] = field(default_factory=list)

    def admitted(self, request: Request) -> Request:
        if self.principal is None:
            return checked_open_request(request)
        request, self.refused_topics = refused_metadata_topics(
            request, self.grant, self.principal.org
        )
        check_request(request, self.grant)
        return scoped_request(request, self.principal.org)

    def seen(self, request: Request, values: Values | EncodedBody) -> Values | EncodedBody:
        if self.principal is None or not isinstance(values, dict):
            return values
        values = unscoped_answer(request.api_key, values, self.principal.org)
        values = filtered_answer(request.api_key, values, self.grant)
        return with_refused_topics(values, self.refused_topics)


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
