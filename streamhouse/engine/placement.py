"""The balancing rule: which live agent each partition (or coordinator slot) of a pool belongs on.

Every agent computes the same placement from the same inputs (the live agents' ids, the
pool's partitions and the agents they are pinned to), so agents agree on who leads what
without talking to each other. The rule is capacity-bounded rendezvous hashing:

- Each (partition, agent) pair has a weight, a hash of both names; a partition prefers
  agents in descending weight order.
- With P partitions and N agents, P = q * N + r: every agent may hold q partitions, and r of
  them one more. Partitions are placed one at a time (in the order of a hash of their name)
  on the agent they prefer most among those with room.
- A partition pinned to a live agent (a reassignment) goes there first, whatever the room;
  pins to an agent that is not live are ignored. An agent pinned beyond the even share takes
  no unpinned partition; the others share the rest (their pins included) evenly.

Guarantees: without pins every live agent holds q or q + 1 partitions of the pool (within one
of an even share), since at most r agents reach q + 1 and the loads add up to P. With pins,
only an agent pinned beyond its share holds more, and the others stay within one of each
other. An agent joining or leaving moves close to P / N partitions
(those whose preference it changes, plus a few the capacity bound pushes along), not a share
of every agent's, because the weights of the other pairs do not change.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

WEIGHT_BYTES = 8


def weight(key: str, agent_id: str) -> int:
    """The rendezvous weight of placing `key` on `agent_id`."""
    digest = hashlib.blake2b(f"{key}\0{agent_id}".encode(), digest_size=WEIGHT_BYTES).digest()
    return int.from_bytes(digest, "big")


def _order(key: str) -> int:
    """Where a key comes in the placement order: a hash, so no topic is placed first."""
    return weight(key, "")


@dataclass
class _Loads:
    """How many partitions each agent holds so far, against q and r of the pool."""

    share: int  # q: what every agent may hold
    extra: int  # r: how many agents may hold one more
    held: dict[str, int] = field(default_factory=dict)
    above_share: int = 0  # agents holding more than q

    def has_room(self, agent: str) -> bool:
        held = self.held[agent]
        return held < self.share or (held == self.share and self.above_share < self.extra)

    def add(self, agent: str) -> None:
        self.held[agent] += 1
        if self.held[agent] == self.share + 1:
            self.above_share += 1


def place(
    keys: Iterable[str], agents: Sequence[str], pinned: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Each key's agent (no agent: no placement). `pinned`: key -> the agent it must go to
    while that agent is live."""
    live = sorted(set(agents))
    if not live:
        return {}
    ordered = sorted(set(keys), key=lambda key: (_order(key), key))
    placed = {key: agent for key in ordered if (agent := (pinned or {}).get(key)) in set(live)}
    loads = _open_loads(len(ordered) - len(placed), Counter(placed.values()), live)
    for key in ordered:
        if key not in placed:
            agent = _preferred_with_room(key, loads)
            placed[key] = agent
            loads.add(agent)
    return placed


def _open_loads(unpinned: int, pinned_loads: Counter[str], live: list[str]) -> _Loads:
    """The loads the unpinned keys fill: an even share of what the agents not pinned beyond it
    hold (pinned and unpinned), so pins loading one agent do not unbalance the others."""
    open_agents = list(live)
    while True:
        total = unpinned + sum(pinned_loads[agent] for agent in open_agents)
        share, extra = divmod(total, len(open_agents))
        within = [agent for agent in open_agents if pinned_loads[agent] <= share]
        if len(within) == len(open_agents):
            break
        open_agents = within  # never empty: not every agent can hold more than the average
    held = {agent: pinned_loads[agent] for agent in open_agents}
    return _Loads(share, extra, held)  # nobody above the share: those pinned beyond it are out


def _preferred_with_room(key: str, loads: _Loads) -> str:
    ranked = sorted(loads.held, key=lambda agent: (weight(key, agent), agent), reverse=True)
    # Some agent has room while a key is left: if all held q and `extra` held q + 1, the
    # loads would add up to every key already.
    return next(agent for agent in ranked if loads.has_room(agent))
