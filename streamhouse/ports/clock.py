"""Clock port: wall time, monotonic time and sleeping, all in milliseconds."""

from __future__ import annotations

from abc import ABC, abstractmethod


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
