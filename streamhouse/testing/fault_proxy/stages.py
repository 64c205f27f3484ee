"""What each toxic does to one direction of a connection: a stage task between two bounded
channels of chunks. A stage can be interrupted at any await and hands back the chunk it holds,
so a link can rebuild its chain (a toxic added, updated or removed) without losing bytes."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

from streamhouse.testing.fault_proxy.toxics import Toxic

DATA = "data"
EOF = "eof"  # the source finished sending: half-close the sink
CLOSE = "close"  # a toxic closes the whole connection (FIN)
RESET = "reset"  # a toxic resets the whole connection (RST)


@dataclass(frozen=True)
class Chunk:
    """Bytes read from a socket at `arrived_s` (loop time), or an end marker (`kind`)."""

    data: bytes
    arrived_s: float
    kind: str = DATA


class Channel:
    """A FIFO of chunks bounded in bytes: `put` waits while it holds `bytes_max` or more
    (back-pressure reaches the socket reader and so the sender's TCP window)."""

    def __init__(self, bytes_max: int) -> None:
        self._items: deque[Chunk] = deque()
        self._bytes = 0
        self._bytes_max = bytes_max
        self._waiters: list[asyncio.Future[None]] = []

    async def put(self, chunk: Chunk) -> None:
        while self._bytes >= self._bytes_max:
            await self._changed()
        self._items.append(chunk)
        self._bytes += len(chunk.data)
        self._notify()

    async def get(self) -> Chunk:
        while not self._items:
            await self._changed()
        chunk = self._items.popleft()
        self._bytes -= len(chunk.data)
        self._notify()
        return chunk

    def take_all(self) -> list[Chunk]:
        items = list(self._items)
        self._items.clear()
        self._bytes = 0
        self._notify()
        return items

    def push_front(self, chunks: Iterable[Chunk]) -> None:
        """Put chunks back ahead of the queue (may pass the bound once: they were in flight)."""
        chunks = list(chunks)
        self._items.extendleft(reversed(chunks))
        self._bytes += sum(len(chunk.data) for chunk in chunks)
        self._notify()

    async def _changed(self) -> None:
        # One future per waiter: cancelling one waiter must not wake or cancel the other.
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)

    def _notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


@dataclass
class ToxicState:
    """What one toxic remembers on one link across chain rebuilds."""

    version: int
    applies: bool  # rolled against toxicity when the toxic is added or updated
    since_s: float  # when this version started on the link (timeout counts from here)
    bytes_sent: int = 0  # limit_data
    triggered_s: float | None = None  # reset_peer: when the first data arrived


class Stage:
    """One toxic's task on a link (no toxic: pass through). `held` is what it has taken and
    not yet passed on."""

    def __init__(
        self,
        toxic: Toxic | None,
        state: ToxicState,
        inbox: Channel,
        outbox: Channel,
        rng: random.Random,
    ) -> None:
        self.toxic, self.state, self.rng = toxic, state, rng
        self.inbox, self.outbox = inbox, outbox
        self.held: Chunk | None = None

    def attribute(self, name: str) -> int:
        assert self.toxic is not None, "a pass-through stage has no attributes"
        return self.toxic.attributes[name]

    async def run(self) -> None:
        toxic = self.toxic
        pipe = PIPES[toxic.type] if toxic is not None and self.state.applies else _noop
        await pipe(self)

    async def take(self) -> Chunk:
        chunk = await self.inbox.get()
        self.held = chunk
        return chunk

    async def emit(self, chunk: Chunk, rest: Chunk | None = None) -> None:
        """Pass `chunk` on; `rest` is what remains held afterwards (a split chunk's tail)."""
        await self.outbox.put(chunk)
        self.held = rest

    def drop(self) -> None:
        self.held = None


def _now_s() -> float:
    return asyncio.get_running_loop().time()


def _end(kind: str) -> Chunk:
    return Chunk(b"", _now_s(), kind)


async def _forever() -> None:
    await asyncio.get_running_loop().create_future()


async def _each_after(stage: Stage, wait_s: Callable[[Chunk], float]) -> None:
    """Pass each chunk on after `wait_s(chunk)`; an end marker passed on ends the stage."""
    while True:
        chunk = await stage.take()
        delay_s = wait_s(chunk)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        await stage.emit(chunk)
        if chunk.kind != DATA:
            return


async def _noop(stage: Stage) -> None:
    await _each_after(stage, lambda _chunk: 0.0)


async def _latency(stage: Stage) -> None:
    latency_ms, jitter_ms = stage.attribute("latency"), stage.attribute("jitter")

    def wait_s(chunk: Chunk) -> float:
        if chunk.kind != DATA:
            return 0.0
        # Counted from arrival, as toxiproxy does: a burst of chunks is delayed once, not
        # once per chunk, so latency does not also cut throughput.
        delay_ms = latency_ms + (stage.rng.uniform(-jitter_ms, jitter_ms) if jitter_ms else 0)
        return chunk.arrived_s + delay_ms / 1000 - _now_s()

    await _each_after(stage, wait_s)


async def _bandwidth(stage: Stage) -> None:
    rate_kb_per_s = stage.attribute("rate")
    if rate_kb_per_s == 0:
        await _noop(stage)
        return
    # Pieces of 100 ms worth, so a low rate trickles rather than stalls then bursts.
    await _in_pieces(stage, lambda: rate_kb_per_s * 100, lambda size: size / (rate_kb_per_s * 1000))


async def _in_pieces(
    stage: Stage, next_size: Callable[[], int], wait_s: Callable[[int], float]
) -> None:
    """Pass data on in pieces of `next_size()` bytes, each after `wait_s(its size)`."""
    while True:
        chunk = await stage.take()
        if chunk.kind != DATA:
            await stage.emit(chunk)
            return
        data = chunk.data
        while data:
            size = next_size()
            piece, data = data[:size], data[size:]
            await asyncio.sleep(wait_s(len(piece)))
            await stage.emit(
                replace(chunk, data=piece), replace(chunk, data=data) if data else None
            )


async def _slow_close(stage: Stage) -> None:
    delay_s = stage.attribute("delay") / 1000
    await _each_after(stage, lambda chunk: delay_s if chunk.kind != DATA else 0.0)


async def _timeout(stage: Stage) -> None:
    timeout_ms = stage.attribute("timeout")
    if timeout_ms == 0:
        await _swallow(stage)
        return
    remaining_s = stage.state.since_s + timeout_ms / 1000 - _now_s()
    try:
        async with asyncio.timeout(max(0.0, remaining_s)):
            await _swallow(stage)
    except TimeoutError:
        pass
    await stage.emit(_end(CLOSE))


async def _swallow(stage: Stage) -> None:
    """Drop data as toxiproxy's timeout does; an end marker is kept (held) rather than dropped,
    so the sink still learns of the close once the toxic is removed."""
    while True:
        chunk = await stage.take()
        if chunk.kind != DATA:
            await _forever()
        stage.drop()


async def _reset_peer(stage: Stage) -> None:
    # As toxiproxy: the clock starts at the first chunk through this stream (dropped).
    if stage.state.triggered_s is None:
        await stage.take()
        stage.drop()
        stage.state.triggered_s = _now_s()
    reset_at_s = stage.state.triggered_s + stage.attribute("timeout") / 1000
    await asyncio.sleep(max(0.0, reset_at_s - _now_s()))
    await stage.emit(_end(RESET))


async def _slicer(stage: Stage) -> None:
    size_average, size_variation = (
        stage.attribute("average_size"),
        stage.attribute("size_variation"),
    )
    delay_s = stage.attribute("delay") / 1_000_000
    if size_average == 0:
        await _noop(stage)
        return

    def next_size() -> int:
        variation = stage.rng.randint(-size_variation, size_variation) if size_variation else 0
        return max(1, size_average + variation)

    await _in_pieces(stage, next_size, lambda _size: delay_s)


async def _limit_data(stage: Stage) -> None:
    limit_bytes = stage.attribute("bytes")
    # A rebuild may have interrupted us between reaching the limit and closing.
    if stage.state.bytes_sent >= limit_bytes > 0:
        await stage.emit(_end(CLOSE))
        return
    while True:
        chunk = await stage.take()
        if chunk.kind != DATA:
            await stage.emit(chunk)
            return
        piece = chunk.data[: max(0, limit_bytes - stage.state.bytes_sent)]
        if piece:
            await stage.emit(replace(chunk, data=piece))
            stage.state.bytes_sent += len(piece)
        stage.drop()
        if stage.state.bytes_sent >= limit_bytes:
            await stage.emit(_end(CLOSE))
            return


PIPES: dict[str, Callable[[Stage], Awaitable[None]]] = {
    "latency": _latency,
    "bandwidth": _bandwidth,
    "slow_close": _slow_close,
    "timeout": _timeout,
    "reset_peer": _reset_peer,
    "slicer": _slicer,
    "limit_data": _limit_data,
}
