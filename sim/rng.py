"""Seeded randomness for simulation: one seed decides every draw."""

from __future__ import annotations

import random

from streamhouse.ports.rng import Rng


class SeededRng(Rng):
    """A Mersenne Twister seeded once; `fork` derives independent streams by name."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._random = random.Random(seed)

    def random(self) -> float:
        return self._random.random()

    def randint(self, low: int, high: int) -> int:
        return self._random.randint(low, high)

    def randbytes(self, count: int) -> bytes:
        return self._random.randbytes(count)

    def chance(self, probability: float) -> bool:
        """True with the given probability."""
        return probability > 0 and self._random.random() < probability

    def fork(self, name: str) -> SeededRng:
        """An independent stream derived from this seed and `name` (stable across runs)."""
        derived = random.Random(f"{self.seed}:{name}").getrandbits(63)
        return SeededRng(derived)
