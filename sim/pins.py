"""Pins a third-party client's clock and randomness to the simulation's, for its lifetime.

aiokafka reads `time.monotonic()`, `time.time()` and the `random` module
directly. Client code is outside the engine, so under simulation we swap, in
aiokafka's own modules only, the `time` name for one that reads the
simulation's clock and the `random` name for a generator seeded from the
simulation's seed. Record timestamps are always given explicitly by the
workloads, so aiokafka's C record builder never reads the real clock.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace

from sim.clock import LoopClock
from sim.rng import SeededRng

AIOKAFKA_TIME_MODULES = (
    "aiokafka.client",
    "aiokafka.cluster",
    "aiokafka.conn",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.consumer.subscription_state",
    "aiokafka.producer.message_accumulator",
    "aiokafka.protocol.message",
    "aiokafka.record.legacy_records",
)
AIOKAFKA_RANDOM_MODULES = (
    "aiokafka.client",
    "aiokafka.conn",
    "aiokafka.consumer.fetcher",
    "aiokafka.partitioner",
)


@contextmanager
def pinned_aiokafka(clock: LoopClock, rng: SeededRng) -> Iterator[None]:
    """Within the block, aiokafka's time is `clock`'s and its randomness comes from `rng`."""
    virtual_time = SimpleNamespace(
        monotonic=clock.monotonic_s,
        time=lambda: clock.now_ms() / 1000,
    )
    seeded = random.Random(rng.randint(0, 2**63))
    swaps: list[tuple[ModuleType, str, object]] = []
    for names, replacement, attribute in (
        (AIOKAFKA_TIME_MODULES, virtual_time, "time"),
        (AIOKAFKA_RANDOM_MODULES, seeded, "random"),
    ):
        for name in names:
            module = importlib.import_module(name)
            swaps.append((module, attribute, getattr(module, attribute)))
            setattr(module, attribute, replacement)
    try:
        yield
    finally:
        for module, attribute, original in reversed(swaps):
            setattr(module, attribute, original)
