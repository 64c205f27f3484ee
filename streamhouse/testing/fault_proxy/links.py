"""One proxied connection: a client socket, its upstream socket, and a link per direction that
pumps chunks from one to the other through that direction's toxic stages."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections.abc import Callable, Coroutine
from typing import Any

from streamhouse.testing.fault_proxy.stages import (
    CLOSE,
    DATA,
    EOF,
    RESET,
    Channel,
    Chunk,
    Stage,
    ToxicState,
)
from streamhouse.testing.fault_proxy.toxics import DOWNSTREAM, UPSTREAM, Toxic

# Bounds: a read takes at most CHUNK_BYTES_MAX, and each channel of a link holds about
# CHANNEL_BYTES_MAX before its writer waits, so a connection buffers at most
# (toxics + 2) * (CHANNEL_BYTES_MAX + CHUNK_BYTES_MAX) per direction.
CHUNK_BYTES_MAX = 32 * 1024
CHANNEL_BYTES_MAX = 64 * 1024

_log = logging.getLogger(__name__)


class Link:
    """One direction: socket reader -> input channel -> toxic stages -> output -> socket writer.
    The two channels at the ends stay; the stages between are rebuilt when toxics change."""

    def __init__(
        self,
        connection: Connection,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        rng: random.Random,
    ) -> None:
        self._connection, self._source, self._sink, self._rng = connection, source, sink, rng
        self._input = Channel(CHANNEL_BYTES_MAX)
        self._output = Channel(CHANNEL_BYTES_MAX)
        self._states: dict[str, ToxicState] = {}
        self._stages: list[tuple[Stage, asyncio.Task[None]]] = []

    def start(self, toxics: list[Toxic]) -> None:
        self._build(toxics)
        self._connection.spawn(self._read())
        self._connection.spawn(self._write())

    async def rebuild(self, toxics: list[Toxic]) -> None:
        """Swap the stages for `toxics`, keeping every chunk in flight, in order."""
        tasks = [task for _, task in self._stages]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._connection.closed:  # closed while its stages stopped: nothing to rebuild
            return
        self._input.push_front(self._in_flight())
        self._build(toxics)

    def _in_flight(self) -> list[Chunk]:
        # Oldest first: the last stage holds the oldest bytes, the first stage's inbox (the
        # input channel, kept) the newest.
        chunks: list[Chunk] = []
        for index in reversed(range(len(self._stages))):
            stage, _ = self._stages[index]
            if stage.held is not None:
                chunks.append(stage.held)
            if index > 0:
                chunks += stage.inbox.take_all()
        return chunks

    def _build(self, toxics: list[Toxic]) -> None:
        self._stages = []
        inbox = self._input
        for position, toxic in enumerate(toxics):
            last = position == len(toxics) - 1
            outbox = self._output if last else Channel(CHANNEL_BYTES_MAX)
            stage = Stage(toxic, self._state(toxic), inbox, outbox, self._rng)
            self._stages.append((stage, self._connection.spawn(stage.run())))
            inbox = outbox
        if not toxics:
            self._stages.append(self._passthrough())
        self._states = {toxic.name: self._states[toxic.name] for toxic in toxics}

    def _passthrough(self) -> tuple[Stage, asyncio.Task[None]]:
        state = ToxicState(version=0, applies=False, since_s=0.0)
        stage = Stage(None, state, self._input, self._output, self._rng)
        return stage, self._connection.spawn(stage.run())

    def _state(self, toxic: Toxic) -> ToxicState:
        state = self._states.get(toxic.name)
        if state is None or state.version != toxic.version:
            # New or updated toxic: roll toxicity again and restart its clock (toxiproxy
            # restarts a toxic's stub on update); limit_data's count carries over.
            sent = state.bytes_sent if state is not None else 0
            now_s = asyncio.get_running_loop().time()
            applies = self._rng.random() < toxic.toxicity
            state = ToxicState(toxic.version, applies, now_s, bytes_sent=sent)
            self._states[toxic.name] = state
        return state

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await self._source.read(CHUNK_BYTES_MAX)
            except OSError:
                self._connection.close()
                return
            if not data:
                await self._input.put(Chunk(b"", loop.time(), EOF))
                return
            await self._input.put(Chunk(data, loop.time()))

    async def _write(self) -> None:
        while True:
            chunk = await self._output.get()
            if chunk.kind == DATA:
                self._sink.write(chunk.data)
                try:
                    await self._sink.drain()
                except OSError:
                    self._connection.close()
                    return
                continue
            if chunk.kind == EOF:
                self._half_close()
            elif chunk.kind == CLOSE:
                self._connection.close()
            elif chunk.kind == RESET:
                self._connection.reset()
            return

    def _half_close(self) -> None:
        try:
            if self._sink.can_write_eof():
                self._sink.write_eof()
        except OSError:
            self._connection.close()
            return
        self._connection.direction_finished()


class Connection:
    """A client and its upstream socket, pumped both ways; closes itself when both directions
    have ended, a toxic closes or resets it, or a socket fails."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        on_closed: Callable[[Connection], None],
        rng: random.Random,
    ) -> None:
        self._writers = (client[1], upstream[1])
        self._on_closed = on_closed
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished_directions = 0
        self.closed = False
        self.links = {
            UPSTREAM: Link(self, client[0], upstream[1], rng),
            DOWNSTREAM: Link(self, upstream[0], client[1], rng),
        }

    def start(self, chains: dict[str, list[Toxic]]) -> None:
        for stream, link in self.links.items():
            link.start(chains[stream])

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug of ours, not the network's: say so loudly and drop the connection.
            _log.error("fault proxy link failed", exc_info=task.exception())
            self.close()

    def direction_finished(self) -> None:
        self._finished_directions += 1
        if self._finished_directions == len(self.links):
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in self._writers:
            writer.close()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        self._on_closed(self)

    def reset(self) -> None:
        """Close both sockets with RST (SO_LINGER 0), as toxiproxy's reset_peer does."""
        for writer in self._writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        self.close()
