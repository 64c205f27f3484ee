"""A deterministic asyncio event loop whose time is virtual and whose sockets are simulated.

`SimLoop` runs asyncio's own scheduler (ready queue, timer heap, tasks,
futures), so engine and client code run on it unchanged. What differs:

- `time()` reads a virtual clock in integer nanoseconds that only moves when
  the loop would otherwise wait: the selector, handed the time until the
  next timer, jumps the clock there instead of blocking. A day of idle
  timers passes in milliseconds of wall time.
- When nothing is ready and no timer is pending, every task is blocked for
  ever: the selector raises `SimulationStuck` rather than hang.
- `create_connection`/`create_server` (hence `asyncio.open_connection` and
  `asyncio.start_server`) go to a `SimNetwork`; no real socket is created,
  not even the self-pipe a SelectorEventLoop keeps for thread wake-ups.
- Garbage is collected at points fixed by the schedule (see `run_simulation`).
- Threads do not exist: `run_in_executor`, `getaddrinfo` and the `sock_*`
  and reader/writer calls fail loudly, and a run that leaves a thread behind
  fails.

Callbacks run in the order asyncio's FIFO ready queue and timer heap give
them, which depends only on the order work was scheduled in; timers due at
the same instant run in the order they were set. Python's string
hashing is randomised per process; `hash_seed_fixed()` tells whether this
process pinned it (the `python -m sim` runner does), which cross-process
replay needs wherever code iterates sets or dicts keyed by strings.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import heapq
import itertools
import math
import os
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, TypeVarTuple

if TYPE_CHECKING:
    from sim.network import SimNetwork

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
GC_EVERY_SELECTS = 20_000
CANCEL_ROUNDS_MAX = 10  # tasks started while the remaining ones are cancelled, and so on
T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class SimulationError(RuntimeError):
    """The simulated world was used in a way it cannot support (threads, real sockets)."""


class SimulationStuck(SimulationError):
    """Every task waits for something that no timer or delivery will ever bring."""


class _VirtualSelector:
    """Stands in for the loop's selector: never waits, moves virtual time instead."""

    def __init__(self, loop: SimLoop) -> None:
        self._loop = loop
        self._selects = 0

    def select(self, timeout: float | None) -> list[Any]:
        self._selects += 1
        if self._selects % GC_EVERY_SELECTS == 0:
            gc.collect()  # at a point fixed by the schedule, not by allocation counts
        if timeout is None:
            raise SimulationStuck(
                f"at {self._loop.time_ns()} ns every task is blocked and no timer is pending"
            )
        if timeout > 0:
            self._loop.advance_ns(max(1, math.ceil(timeout * NS_PER_S)))
        return []

    def close(self) -> None:
        pass


class _OrderedTimerHandle(asyncio.TimerHandle):
    """A timer that, at an equal deadline, runs after the timers scheduled before it
    (asyncio's own heap leaves ties in no particular order)."""

    __slots__ = ("sequence",)

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: Sequence[Any],
        loop: SimLoop,
        context: contextvars.Context | None,
        sequence: int,
    ) -> None:
        super().__init__(when, callback, args, loop, context)
        self.sequence = sequence

    def __lt__(self, other: asyncio.TimerHandle) -> bool:
        if isinstance(other, _OrderedTimerHandle) and self.when() == other.when():
            return self.sequence < other.sequence
        return self.when() < other.when()


class SimLoop(asyncio.BaseEventLoop):
    """asyncio's scheduler on virtual time, with a simulated network and no threads."""

    def __init__(self, network: SimNetwork | None = None) -> None:
        super().__init__()
        self._now_ns = 0
        self._timer_sequence = itertools.count()
        self._selector = _VirtualSelector(self)
        # asyncio runs timers due within the clock's resolution without moving time; with
        # half a nanosecond, and call_later at least a nanosecond ahead, every positive
        # wait moves virtual time (a client re-waiting a 1e-16 s float residue would
        # otherwise spin at one instant for ever)
        self._clock_resolution = 0.5 / NS_PER_S
        self.network = network
        if network is not None:
            network.attach(self)

    # ------------------------------------------------------------------ virtual time

    def time(self) -> float:
        return self._now_ns / NS_PER_S

    def time_ns(self) -> int:
        """Virtual nanoseconds since the loop was created."""
        return self._now_ns

    def advance_ns(self, delta_ns: int) -> None:
        """Move virtual time forward; only the selector does this, while nothing is ready."""
        assert delta_ns >= 0, delta_ns
        self._now_ns += delta_ns

    def call_later(
        self,
        delay: float,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """As asyncio's, but a positive delay is at least one virtual nanosecond: a delay
        below the float resolution of the current time must still let time move."""
        when = self.time() + delay
        if delay > 0:
            when = max(when, (self._now_ns + 1) / NS_PER_S)
        return self.call_at(when, callback, *args, context=context)

    def call_at(
        self,
        when: float,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """As asyncio's, but timers due at the same instant run in the order they were set."""
        assert when is not None
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        timer = _OrderedTimerHandle(when, callback, args, self, context, next(self._timer_sequence))
        heapq.heappush(self._scheduled, timer)  # type: ignore[attr-defined]
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    def _process_events(self, event_list: list[Any]) -> None:
        assert not event_list, event_list  # nothing is ever registered with the selector

    def _write_to_self(self) -> None:
        pass  # no other thread can be waiting to wake this loop

    # ------------------------------------------------------------------ the network

    async def create_connection(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        *,
        ssl: object = None,
        **ignored: Any,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """Connect to a virtual `host:port` through the simulated network."""
        if ssl:
            raise SimulationError("TLS is not simulated")
        if host is None or port is None:
            raise SimulationError("a simulated connection needs a host and a port")
        return await self._network().connect(protocol_factory, host, port)

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int = 0,
        *,
        ssl: object = None,
        start_serving: bool = True,
        **ignored: Any,
    ) -> asyncio.AbstractServer:
        """Listen on a virtual `host:port` (port 0: the network picks one)."""
        if ssl:
            raise SimulationError("TLS is not simulated")
        if not host or not isinstance(host, str):
            raise SimulationError("a simulated server listens on one named host")
        return self._network().listen(protocol_factory, host, port, start_serving)

    def _network(self) -> SimNetwork:
        if self.network is None:
            raise SimulationError("this SimLoop has no simulated network")
        return self.network

    # ------------------------------------------------------------------ no threads, no sockets

    def run_in_executor(self, *args: Any) -> NoReturn:  # type: ignore[override]
        raise SimulationError("no threads in a simulation: run_in_executor is not available")

    def set_default_executor(self, executor: Any) -> NoReturn:
        raise SimulationError("no threads in a simulation: no executor can be set")

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise SimulationError("simulated hosts are names; nothing is resolved")

    def _no_real_io(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise SimulationError("real file descriptors and sockets are not available in a simulation")

    add_reader = remove_reader = add_writer = remove_writer = _no_real_io  # type: ignore[assignment]
    sock_recv = sock_recv_into = sock_sendall = sock_connect = sock_accept = _no_real_io
    add_signal_handler = remove_signal_handler = _no_real_io  # type: ignore[assignment]
    create_datagram_endpoint = create_unix_connection = create_unix_server = _no_real_io
    connect_accepted_socket = subprocess_exec = subprocess_shell = _no_real_io


def run_simulation(
    main: Callable[[SimLoop], Coroutine[Any, Any, T]], network: SimNetwork | None = None
) -> T:
    """Run `main(loop)` to completion on a fresh SimLoop, then cancel whatever is left.

    Automatic garbage collection is off meanwhile: finalizers (an unclosed client's
    `__del__`, a weak reference's callback) would otherwise run at points set by
    allocation counts; the selector collects every GC_EVERY_SELECTS iterations instead.
    Objects that exist before the simulation starts are frozen out of collection, so
    earlier garbage is not finalized inside it (and collections stay cheap).
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()
    gc.freeze()  # what exists now is never collected (nor finalized) during the simulation
    loop = SimLoop(network)
    threads_before = threading.active_count()
    try:
        asyncio.set_event_loop(loop)
        result = loop.run_until_complete(main(loop))
        if threading.active_count() > threads_before:
            raise SimulationError("a thread was started during the simulation")
        return result
    finally:
        _cancel_remaining(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
        gc.unfreeze()
        if gc_was_enabled:
            gc.enable()


def _cancel_remaining(loop: SimLoop) -> None:
    """Cancel every task left, and those their cancellation starts (a client's close)."""
    for _ in range(CANCEL_ROUNDS_MAX):
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not tasks:
            return
        tasks.sort(key=lambda task: task.get_name())  # all_tasks is a set: fix an order
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def hash_seed_fixed() -> bool:
    """Whether this process's str/bytes hashing is reproducible across runs."""
    return os.environ.get("PYTHONHASHSEED", "random") != "random"
