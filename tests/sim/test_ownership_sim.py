"""Ownership in a simulated cluster (the real agents on sim ports, one shared store with its
own clock): three agents converge to leading a topic's partitions within one of an even share
with no client asking; one crashing (no goodbye) leaves its partitions to the others once its
leases expire, still balanced; back up, it gets its share again. No partition ever has two
agents leading it in one epoch, and no coordinator slot (so no group) ever has two agents
answering as its coordinator at once, whatever their membership views."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sim.cluster import UP, SimCluster
from streamhouse.config import Settings
from streamhouse.engine.coordinators import COORDINATOR_SLOTS, COORDINATOR_TOPIC
from streamhouse.names import TopicPartition
from tests.sim.stories import simulate_story

TOPIC = "orders"
PARTITIONS = 11
SETTINGS = Settings(auto_create_topics=False)
SETTLE_MS = 3 * SETTINGS.ownership_interval_ms + SETTINGS.agent_heartbeat_interval_ms
# a crashed agent's leases expire, and its session, before the others take its partitions
CRASH_SETTLE_MS = (
    max(SETTINGS.lease_ttl_ms, SETTINGS.agent_session_timeout_ms)
    + SETTINGS.agent_heartbeat_interval_ms
    + SETTLE_MS
)
SAMPLE_MS = 250


def _led(cluster: SimCluster) -> dict[str, dict[TopicPartition, int]]:
    """Each running agent's led partitions (those it may still act on) and their epochs."""
    led: dict[str, dict[TopicPartition, int]] = {}
    for agent in cluster.agents:
        if agent.running is None:
            continue
        log = agent.running.log
        plogs = {tp: log.led_partition(tp) for tp in log.led_partitions()}
        led[agent.host] = {tp: p.state.leader_epoch for tp, p in plogs.items() if p}
    return led


def _topic_led(cluster: SimCluster) -> dict[str, dict[TopicPartition, int]]:
    """As `_led`, the topic's partitions only (the coordinator slots are their own pool)."""
    led: dict[str, dict[TopicPartition, int]] = {}
    for host, partitions in _led(cluster).items():
        led[host] = {tp: epoch for tp, epoch in partitions.items() if tp.topic == TOPIC}
    return led


def _loads(cluster: SimCluster) -> list[int]:
    return sorted(len(partitions) for partitions in _topic_led(cluster).values())


async def _watch(cluster: SimCluster, duration_ms: int, seen: list[str]) -> None:
    """Let `duration_ms` pass, noting any (partition, epoch) two agents lead at once."""
    for _ in range(duration_ms // SAMPLE_MS):
        await cluster.clock.sleep_ms(SAMPLE_MS)
        holders: Counter[tuple[TopicPartition, int]] = Counter()
        for partitions in _led(cluster).values():
            holders.update(partitions.items())
        seen.extend(f"{key} led twice" for key, count in holders.items() if count > 1)
        coordinators = Counter(slot for slot, _ in _coordinating(cluster))
        seen.extend(f"{slot} coordinated twice" for slot, n in coordinators.items() if n > 1)


def _coordinating(cluster: SimCluster) -> list[tuple[TopicPartition, str]]:
    """(slot, agent) for every agent that would answer as coordinator of the slot's groups
    now (it leads the slot's lease within its local deadline)."""
    found = []
    for agent in cluster.agents:
        if agent.running is None or agent.state != UP:
            continue
        now_ms = agent.clock.monotonic_ms()
        for slot in (TopicPartition(COORDINATOR_TOPIC, n) for n in range(COORDINATOR_SLOTS)):
            plog = agent.running.log.led_partition(slot)
            if plog is not None and plog.leading(now_ms):
                found.append((slot, agent.host))
    return found


def test_agents_converge_to_balanced_ownership_through_a_crash_and_restart() -> None:
    async def story(cluster: SimCluster) -> dict[str, Any]:
        split: list[str] = []
        await _watch(cluster, SETTLE_MS, split)
        balanced = _loads(cluster)
        crashed = cluster.agents[2]
        crashed.crash()
        await _watch(cluster, CRASH_SETTLE_MS, split)
        after_crash = _loads(cluster)
        assert await crashed.start()
        await _watch(cluster, SETTLE_MS, split)
        records = await cluster.metadata.unfaulted.list_partitions()
        led = _led(cluster)
        agree = all(
            r.lease_live and led.get(str(r.leader_agent), {}).get(r.tp) == r.leader_epoch
            for r in records
        )
        return {
            "slots": sorted(Counter(host for _, host in _coordinating(cluster)).values()),
            "balanced": balanced,
            "after_crash": after_crash,
            "rejoined": _loads(cluster),
            "split": split,
            "store_agrees": agree,
        }

    result = simulate_story(
        story, seed=11, agents=3, settings=SETTINGS, topic=TOPIC, partitions=PARTITIONS
    )
    assert result["balanced"] == [3, 4, 4]
    assert result["after_crash"] == [5, 6]
    assert result["rejoined"] == [3, 4, 4]
    assert result["split"] == []
    assert result["slots"] == [5, 5, 6]  # every slot coordinated, balanced on its own
    assert result["store_agrees"]
