"""Clock port: wall time, monotonic time, sleeping and timers, all in milliseconds."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    """A callback due later on a clock; cancelling it before it is due keeps it from running."""

    def cancel(self) -> object: ...


class Clock(ABC):
    """The only source of time for the engine."""

    @abstractmethod
    def now_ms(self) -> int:
        """Wall-clock time in milliseconds since the Unix epoch (may step or drift)."""

    @abstractmethod
    def monotonic_ms(self) -> int:
        """Milliseconds from an arbitrary origin; never goes backwards."""

    @abstractmethod
    async def sleep_ms(self, duration_ms: int) -> None:
        """Suspend the calling task for at least `duration_ms` of this clock's time."""

    @abstractmethod
    def call_later_ms(self, duration_ms: int, callback: Callable[[], None]) -> Timer:
        """Run `callback` on the running event loop once at least `duration_ms` of this
        clock's time has passed (a timer costs far less than a task sleeping)."""
