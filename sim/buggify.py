"""The simulator's buggify switch: the call sites a seed chose misbehave, at a seeded rate;
a crash point the engine reaches is handed to `on_reached` (the agent's crash-at-step
nemesis, which may kill the process there)."""

from __future__ import annotations

from collections.abc import Callable

from sim.rng import SeededRng
from streamhouse.ports.buggify import SITES, Buggify

SITE_CHANCE = 0.5  # each site is active in about half the seeds
FIRE_RATE_MAX = 0.3


class SimBuggify(Buggify):
    """Fires at `sites` with probability `fire_rate` per call, drawn from `rng`."""

    def __init__(self, rng: SeededRng, sites: frozenset[str], fire_rate: float) -> None:
        self._rng = rng
        self.sites = sites
        self.fire_rate = fire_rate
        self.fired: dict[str, int] = {}
        self.on_reached: Callable[[str], None] | None = None

    def fires(self, site: str) -> bool:
        if site not in self.sites or not self._rng.chance(self.fire_rate):
            return False
        self.fired[site] = self.fired.get(site, 0) + 1
        return True

    def reached(self, point: str) -> None:
        if self.on_reached is not None:
            self.on_reached(point)


def draw_sites(rng: SeededRng, sites: tuple[str, ...] = SITES) -> tuple[str, ...]:
    """The call sites among `sites` one seed activates (sorted; possibly none)."""
    return tuple(sorted(site for site in sites if rng.chance(SITE_CHANCE)))
