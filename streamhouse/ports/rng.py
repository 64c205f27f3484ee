"""Randomness port: the only source of randomness for the engine."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Rng(ABC):
    """Random numbers; seeded and reproducible under simulation."""

    @abstractmethod
    def random(self) -> float:
        """A float in [0, 1)."""

    @abstractmethod
    def randint(self, low: int, high: int) -> int:
        """An integer in [low, high], both ends included."""

    @abstractmethod
    def randbytes(self, count: int) -> bytes:
        """`count` random bytes."""
