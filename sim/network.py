"""The simulated network: virtual hosts, TCP-like connections in memory, seeded faults.

A `SimLoop` sends `create_connection`/`create_server` here, so asyncio streams
code (the agent's Kafka listener, aiokafka) runs on it unchanged. Hosts are
names (`agent-1`, `client-1`); a task's host is a context variable set by
`on_host`/`spawn_on_host` and inherited by every task it starts, and the
server side of a connection runs as its listener's host.

Connections behave like TCP: each direction is an ordered byte stream.
Every write becomes a segment delivered after a seeded one-way delay (never
before the segment written ahead of it); a delivery may be split in two
reads. Faults, all drawn from one SeededRng and set for the whole network or
per link (one direction between two hosts): a write may reset the
connection instead, a write may clog its link (delivery paused for a
while), hosts may be partitioned (new connects time out after the SYN
retries; established connections stall until healed, or are reset), and
links may be clogged by hand. Flow control follows asyncio: a writer is
paused past `WRITE_BUFFER_HIGH_BYTES` in flight and resumed at the low
mark; a reader that pauses reading receives nothing until it resumes, and
one delivery carries at most a receive window. Each direction holds at most
`LINK_BUFFER_BYTES_MAX`; a writer that ignores pause_writing past that gets
its connection reset.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import itertools
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from sim.rng import SeededRng
from sim.trace import Trace, fingerprint

if TYPE_CHECKING:
    from sim.loop import SimLoop

T = TypeVar("T")

DEFAULT_HOST = "client"
EPHEMERAL_PORT_FIRST = 32_768
CONNECTIONS_MAX = 10_000
SYN_RETRY_WAITS_MS = (1_000, 2_000, 4_000, 8_000, 16_000)  # then the connect times out
WRITE_BUFFER_HIGH_BYTES = 64 * 1024
WRITE_BUFFER_LOW_BYTES = 16 * 1024
LINK_BUFFER_BYTES_MAX = 64 * 1024 * 1024
RECEIVE_WINDOW_BYTES = 64 * 1024  # the most one delivery hands the reader
NS_PER_MS = 1_000_000

_current_host: contextvars.ContextVar[str] = contextvars.ContextVar(
    "sim_host", default=DEFAULT_HOST
)


def current_host() -> str:
    """The virtual host the calling task runs on."""
    return _current_host.get()


def _host_context(host: str) -> contextvars.Context:
    context = contextvars.copy_context()
    context.run(_current_host.set, host)
    return context


def spawn_on_host(host: str, coroutine: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
    """Start `coroutine` as a task of `host`; tasks it starts belong to `host` too."""
    return asyncio.get_running_loop().create_task(coroutine, name=name, context=_host_context(host))


async def on_host(host: str, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` as `host` and wait for its result."""
    return await spawn_on_host(host, coroutine, name=f"{host}:main")


@dataclass(frozen=True)
class NetworkFaults:
    """How badly the network behaves; all off by default. Rates are per write."""

    delay_ms_min: int = 0
    delay_ms_max: int = 0  # one-way delay of each write, uniform in [min, max]
    reset_rate: float = 0.0  # the write resets its connection instead of travelling
    split_rate: float = 0.0  # a delivery arrives as two reads
    clog_rate: float = 0.0  # the write clogs its link (that direction) for a while
    clog_ms_max: int = 0
    partition_reset_rate: float = 0.5  # per established connection cut by a partition

    def __post_init__(self) -> None:
        assert 0 <= self.delay_ms_min <= self.delay_ms_max, (self.delay_ms_min, self.delay_ms_max)
        assert self.clog_ms_max >= 0, self.clog_ms_max
        for rate in (self.reset_rate, self.split_rate, self.clog_rate, self.partition_reset_rate):
            assert 0.0 <= rate <= 1.0, rate


@dataclass
class _Segment:
    deliver_at_ns: int
    data: bytes | None  # None: the end of the stream (FIN)


@dataclass
class _Endpoint:
    host: str
    port: int
    protocol: asyncio.BaseProtocol
    transport: SimTransport | None = None
    reading_paused: bool = False
    writing_paused: bool = False  # pause_writing was sent to the protocol
    closing: bool = False  # this side closed or aborted; no more writes
    lost: bool = False  # connection_lost was called
    write_high_bytes: int = WRITE_BUFFER_HIGH_BYTES  # pause_writing above this in flight
    write_low_bytes: int = WRITE_BUFFER_LOW_BYTES  # resume_writing at or below this
    outgoing: _Direction | None = None  # what this side sent, in flight


@dataclass
class _Direction:
    """One way of a connection: an ordered queue of segments in flight."""

    source: _Endpoint
    target: _Endpoint
    queue: deque[_Segment] = field(default_factory=deque)
    queued_bytes: int = 0
    last_deliver_at_ns: int = 0
    timer: asyncio.Handle | None = None
    eof_sent: bool = False


@dataclass
class _Connection:
    number: int
    client: _Endpoint
    server: _Endpoint
    reset: bool = False

    @staticmethod
    def direction_from(endpoint: _Endpoint) -> _Direction:
        assert endpoint.outgoing is not None
        return endpoint.outgoing

    def directions(self) -> list[_Direction]:
        return [self.direction_from(self.client), self.direction_from(self.server)]

    def label(self) -> str:
        return f"c{self.number}"


class SimNetwork:
    """Hosts, listeners and connections of one simulation."""

    def __init__(
        self, rng: SeededRng, faults: NetworkFaults | None = None, trace: Trace | None = None
    ) -> None:
        self._rng = rng
        self.faults = faults or NetworkFaults()  # of every link without faults of its own
        self._link_faults: dict[tuple[str, str], NetworkFaults] = {}
        self.trace = trace
        self._loop: SimLoop | None = None
        self._listeners: dict[tuple[str, int], SimServer] = {}
        self._next_port: dict[str, int] = {}
        self._connections: dict[int, _Connection] = {}  # insertion (= creation) order
        self._numbers = itertools.count(1)
        self._cut: set[tuple[str, str]] = set()  # partitioned host pairs, both orders
        self._clogged_until_ns: dict[tuple[str, str], int] = {}
        self.delivered_bytes = 0
        self.resets = 0

    def attach(self, loop: SimLoop) -> None:
        assert self._loop is None, "a network belongs to one loop"
        self._loop = loop

    @property
    def loop(self) -> SimLoop:
        assert self._loop is not None, "the network is not attached to a SimLoop"
        return self._loop

    # ------------------------------------------------------------------ faults by hand

    def partition(self, first: str, second: str) -> None:
        """Cut `first` from `second` both ways; connections between them stall or reset."""
        self._cut |= {(first, second), (second, first)}
        self._record("net.partition", first, second)
        for connection in list(self._connections.values()):
            cut = self._is_cut(connection.client.host, connection.server.host)
            if cut and self._rng.chance(self.faults.partition_reset_rate):
                self._reset(connection, "partition")

    def heal(self) -> None:
        """Remove every partition and clog; stalled connections resume."""
        self._cut.clear()
        self._clogged_until_ns.clear()
        self._record("net.heal")
        for connection in list(self._connections.values()):
            for direction in connection.directions():
                self._schedule(direction)

    def clog(self, source: str, target: str, duration_ms: int) -> None:
        """Hold every delivery from `source` to `target` for `duration_ms`."""
        until_ns = self.loop.time_ns() + duration_ms * NS_PER_MS
        key = (source, target)
        self._clogged_until_ns[key] = max(self._clogged_until_ns.get(key, 0), until_ns)
        self._record("net.clog", source, target, duration_ms)

    def crash_host(self, host: str) -> None:
        """The process on `host` died: its listeners vanish and its connections reset."""
        self._record("net.crash-host", host)
        for key in sorted(self._listeners):
            if key[0] == host:
                self._listeners[key].close()
        for connection in list(self._connections.values()):
            if host in (connection.client.host, connection.server.host):
                self._reset(connection, f"{host} crashed")

    def set_link_faults(self, source: str, target: str, faults: NetworkFaults | None) -> None:
        """Give the link from `source` to `target` faults of its own (None: the network's)."""
        if faults is None:
            self._link_faults.pop((source, target), None)
        else:
            self._link_faults[(source, target)] = faults
        self._record("net.link-faults", source, target, faults)

    def link_faults(self, source: str, target: str) -> NetworkFaults:
        return self._link_faults.get((source, target), self.faults)

    def _is_cut(self, source: str, target: str) -> bool:
        return (source, target) in self._cut

    # ------------------------------------------------------------------ listening

    def listen(
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str,
        port: int,
        start_serving: bool,
    ) -> SimServer:
        if port == 0:
            port = self._ephemeral_port(host)
        if (host, port) in self._listeners:
            raise OSError(errno.EADDRINUSE, f"{host}:{port} is already in use")
        server = SimServer(self, protocol_factory, host, port, start_serving)
        self._listeners[(host, port)] = server
        self._record("net.listen", f"{host}:{port}")
        return server

    def _unlisten(self, server: SimServer) -> None:
        if self._listeners.get((server.host, server.port)) is server:
            del self._listeners[(server.host, server.port)]
            self._record("net.unlisten", f"{server.host}:{server.port}")

    def _ephemeral_port(self, host: str) -> int:
        port = self._next_port.get(host, EPHEMERAL_PORT_FIRST)
        self._next_port[host] = port + 1
        return port

    # ------------------------------------------------------------------ connecting

    async def connect(
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: str, port: int
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        source = current_host()
        if len(self._connections) >= CONNECTIONS_MAX:
            raise OSError(errno.EMFILE, f"more than {CONNECTIONS_MAX} simulated connections")
        target = f"{host}:{port}"
        for wait_ms in SYN_RETRY_WAITS_MS:
            if not self._is_cut(source, host):
                break
            await asyncio.sleep(wait_ms / 1000)
        else:
            self._record("net.connect-timeout", source, target)
            raise TimeoutError(errno.ETIMEDOUT, f"connect to {target} timed out")
        syn_ns = self._draw_delay_ns(self.link_faults(source, host))
        syn_ack_ns = self._draw_delay_ns(self.link_faults(host, source))
        await asyncio.sleep((syn_ns + syn_ack_ns) / 1e9)
        server = self._listeners.get((host, port))
        if server is None or not server.is_serving():
            self._record("net.refused", source, target)
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"nothing listens on {target}")
        client = _Endpoint(source, self._ephemeral_port(source), protocol_factory())
        accepted = _host_context(host).run(server.protocol_factory)
        connection = _Connection(next(self._numbers), client, _Endpoint(host, port, accepted))
        self._connections[connection.number] = connection
        for here, there in ((connection.client, connection.server), (connection.server, client)):
            here.transport = SimTransport(self, connection, here, there)
            here.outgoing = _Direction(here, there)
        self._record("net.connect", connection.label(), f"{source}:{client.port}", target)
        self._call(
            connection.server,
            connection.server.protocol.connection_made,
            connection.server.transport,
        )
        self._call(client, client.protocol.connection_made, client.transport)
        assert client.transport is not None
        return client.transport, client.protocol

    # ------------------------------------------------------------------ sending

    def _send(self, connection: _Connection, source: _Endpoint, data: bytes | None) -> None:
        if connection.reset:
            return
        direction = connection.direction_from(source)
        faults = self.link_faults(source.host, direction.target.host)
        if data is None:
            if direction.eof_sent:
                return
            direction.eof_sent = True
        elif self._rng.chance(faults.reset_rate):
            self._reset(connection, "fault")
            return
        if self._rng.chance(faults.clog_rate) and faults.clog_ms_max > 0:
            self.clog(source.host, direction.target.host, self._rng.randint(1, faults.clog_ms_max))
        deliver_at_ns = max(
            self.loop.time_ns() + self._draw_delay_ns(faults), direction.last_deliver_at_ns
        )
        direction.last_deliver_at_ns = deliver_at_ns
        direction.queue.append(_Segment(deliver_at_ns, data))
        if data:
            direction.queued_bytes += len(data)
            if direction.queued_bytes > LINK_BUFFER_BYTES_MAX:
                self._reset(connection, "overflow")
                return
            if direction.queued_bytes > source.write_high_bytes and not source.writing_paused:
                source.writing_paused = True
                self._call(source, source.protocol.pause_writing)
        self._schedule(direction)

    def _draw_delay_ns(self, faults: NetworkFaults) -> int:
        low, high = faults.delay_ms_min, faults.delay_ms_max
        delay_ms = self._rng.randint(low, high) if high > low else low
        return delay_ms * NS_PER_MS

    # ------------------------------------------------------------------ delivering

    def _schedule(self, direction: _Direction, soon: bool = False) -> None:
        """Make sure the head of `direction` gets looked at when it may be delivered."""
        if direction.timer is not None or not direction.queue:
            return
        source, target = direction.source.host, direction.target.host
        if self._is_cut(source, target) or direction.target.reading_paused:
            return  # heal() or resume_reading() reschedules
        at_ns = max(
            direction.queue[0].deliver_at_ns, self._clogged_until_ns.get((source, target), 0)
        )
        if soon or at_ns <= self.loop.time_ns():
            direction.timer = self.loop.call_soon(self._deliver, direction)
        else:
            direction.timer = self.loop.call_at(at_ns / 1e9, self._deliver, direction)

    def _deliver(self, direction: _Direction) -> None:
        """Deliver the head segment (or part of it) if its time has come, then reschedule."""
        direction.timer = None
        if not direction.queue or direction.target.reading_paused:
            return  # resume_reading() reschedules
        source, target = direction.source, direction.target
        clogged_until_ns = self._clogged_until_ns.get((source.host, target.host), 0)
        head = direction.queue[0]
        now_ns = self.loop.time_ns()
        if max(head.deliver_at_ns, clogged_until_ns) > now_ns or self._is_cut(
            source.host, target.host
        ):
            self._schedule(direction)
            return
        connection = self._connection_of(direction)
        if head.data is None:
            direction.queue.popleft()
            self._deliver_eof(connection, target)
            return
        data = head.data
        cut = min(len(data), RECEIVE_WINDOW_BYTES)
        split_rate = self.link_faults(source.host, target.host).split_rate
        if len(data) > 1 and self._rng.chance(split_rate):
            cut = self._rng.randint(1, cut - 1) if cut > 1 else cut
        if cut < len(data):
            data, head.data = data[:cut], data[cut:]
        else:
            direction.queue.popleft()
        direction.queued_bytes -= len(data)
        if source.writing_paused and direction.queued_bytes <= source.write_low_bytes:
            source.writing_paused = False
            if not source.lost:
                self._call(source, source.protocol.resume_writing)
        if target.lost or target.closing:
            self._reset(connection, "data for a closed socket")
            return
        self.delivered_bytes += len(data)
        self._record(
            "net.deliver", connection.label(), f"{source.host}>{target.host}", fingerprint(data)
        )
        assert isinstance(target.protocol, asyncio.Protocol)
        self._call(target, target.protocol.data_received, data)
        self._schedule(direction, soon=True)

    def _deliver_eof(self, connection: _Connection, target: _Endpoint) -> None:
        if target.lost:
            return
        self._record("net.eof", connection.label(), f">{target.host}")
        assert isinstance(target.protocol, asyncio.Protocol)
        keep_open = self._call(target, target.protocol.eof_received)
        if not keep_open:
            self._close(connection, target)

    def _connection_of(self, direction: _Direction) -> _Connection:
        transport = direction.source.transport
        assert transport is not None
        return transport.connection

    # ------------------------------------------------------------------ closing

    def _close(self, connection: _Connection, endpoint: _Endpoint) -> None:
        """Graceful close of one side: FIN after what is queued; the protocol hears soon."""
        if endpoint.closing:
            return
        endpoint.closing = True
        self._send(connection, endpoint, None)
        self.loop.call_soon(self._lose, connection, endpoint, None)

    def _abort(self, connection: _Connection, endpoint: _Endpoint) -> None:
        endpoint.closing = True
        self._reset(connection, f"aborted by {endpoint.host}", aborter=endpoint)

    def _reset(
        self, connection: _Connection, reason: str, aborter: _Endpoint | None = None
    ) -> None:
        """Drop everything in flight; both sides lose the connection (the aborter cleanly)."""
        if connection.reset:
            return
        connection.reset = True
        self.resets += 1
        self._record("net.reset", connection.label(), reason)
        for direction in connection.directions():
            if direction.timer is not None:
                direction.timer.cancel()
                direction.timer = None
            direction.queue.clear()
            direction.queued_bytes = 0
        for endpoint in (connection.client, connection.server):
            error = None if endpoint is aborter else ConnectionResetError(errno.ECONNRESET, reason)
            self.loop.call_soon(self._lose, connection, endpoint, error)

    def _lose(self, connection: _Connection, endpoint: _Endpoint, error: Exception | None) -> None:
        if endpoint.lost:
            return
        endpoint.lost = endpoint.closing = True
        self._call(endpoint, endpoint.protocol.connection_lost, error)
        if connection.client.lost and connection.server.lost:
            self._connections.pop(connection.number, None)
            self._record("net.closed", connection.label())

    # ------------------------------------------------------------------ helpers

    def _call(self, endpoint: _Endpoint, callback: Callable[..., T], *args: Any) -> T:
        """Run a protocol callback as the endpoint's host."""
        return _host_context(endpoint.host).run(callback, *args)

    def _record(self, event: str, *fields: object) -> None:
        if self.trace is not None:
            self.trace.record(event, *fields)

    def open_connections(self) -> int:
        return len(self._connections)


class SimTransport(asyncio.Transport):
    """One side of a simulated connection, with asyncio's transport interface."""

    def __init__(
        self, network: SimNetwork, connection: _Connection, local: _Endpoint, remote: _Endpoint
    ) -> None:
        super().__init__()
        self._network = network
        self.connection = connection
        self._local = local
        self._remote = remote

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        info = {
            "peername": (self._remote.host, self._remote.port),
            "sockname": (self._local.host, self._local.port),
        }
        return info.get(name, default)

    def is_closing(self) -> bool:
        return self._local.closing

    def close(self) -> None:
        self._network._close(self.connection, self._local)

    def abort(self) -> None:
        if not self._local.lost:
            self._network._abort(self.connection, self._local)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._local.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._local.protocol

    # reading

    def is_reading(self) -> bool:
        return not self._local.reading_paused and not self._local.closing

    def pause_reading(self) -> None:
        self._local.reading_paused = True

    def resume_reading(self) -> None:
        if self._local.reading_paused:
            self._local.reading_paused = False
            self._network._schedule(self.connection.direction_from(self._remote))

    # writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.connection.direction_from(self._local).eof_sent and not self._local.closing:
            raise RuntimeError("write() after write_eof()")
        if data and not self._local.closing:
            self._network._send(self.connection, self._local, bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        self._network._send(self.connection, self._local, None)

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self.connection.direction_from(self._local).queued_bytes

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._local.write_low_bytes, self._local.write_high_bytes

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        high_bytes = WRITE_BUFFER_HIGH_BYTES if high is None else high
        low_bytes = high_bytes // 4 if low is None else low
        assert 0 <= low_bytes <= high_bytes, (low_bytes, high_bytes)
        self._local.write_high_bytes, self._local.write_low_bytes = high_bytes, low_bytes


@dataclass(frozen=True)
class SimSocketName:
    """What `Server.sockets` holds: enough of a socket to ask its address."""

    host: str
    port: int

    def getsockname(self) -> tuple[str, int]:
        return self.host, self.port


class SimServer(asyncio.AbstractServer):
    """A listener on a virtual host:port."""

    def __init__(
        self,
        network: SimNetwork,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str,
        port: int,
        start_serving: bool,
    ) -> None:
        self._network = network
        self.protocol_factory = protocol_factory
        self.host = host
        self.port = port
        self._serving = start_serving
        self._closed = False
        self._closed_waiter: asyncio.Future[None] | None = None

    @property
    def sockets(self) -> tuple[SimSocketName, ...]:
        return () if self._closed else (SimSocketName(self.host, self.port),)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._serving = False
            self._network._unlisten(self)
            if self._closed_waiter is not None and not self._closed_waiter.done():
                self._closed_waiter.set_result(None)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._network.loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        self._serving = not self._closed

    async def serve_forever(self) -> None:
        await self.start_serving()
        self._closed_waiter = self._network.loop.create_future()
        await self._closed_waiter

    async def wait_closed(self) -> None:
        await asyncio.sleep(0)
