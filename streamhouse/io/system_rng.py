"""The real randomness source: the operating system's CSPRNG."""

from __future__ import annotations

import random

from streamhouse.ports.rng import Rng


class SystemRng(Rng):
    """Randomness from os.urandom via random.SystemRandom."""

    def __init__(self) -> None:
        self._random = random.SystemRandom()

    def random(self) -> float:
        return self._random.random()

    def randint(self, low: int, high: int) -> int:
        return self._random.randint(low, high)

    def randbytes(self, count: int) -> bytes:
        return self._random.randbytes(count)
