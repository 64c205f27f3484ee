"""Leases in a simulated two-agent cluster (the real agents on sim ports, one shared store whose
own clock judges expiry): an agent whose wall clock steps an hour forward takes no lease from a
healthy holder, and a holder paused past its lease acknowledges nothing in its old epoch once
it resumes, while the other agent has taken the partition over in the next epoch.

Requests are raw Kafka Produce frames on a client host, so every answer is seen as sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sim.cluster import SimAgent, SimCluster
from streamhouse.config import Settings
from streamhouse.errors import ErrorCode, NotLeader
from streamhouse.kafka import codec
from streamhouse.kafka.apis import ApiKey
from streamhouse.kafka.entities import build
from streamhouse.names import TopicPartition
from tests.fixtures.kafka_wire import GOLDEN_BATCH, decode_response, request_frame, split_response
from tests.sim.stories import Story, simulate_story

TOPIC = "orders"  # GOLDEN_BATCH's topic
TP = TopicPartition(TOPIC, 0)
TTL_MS = 2_000
SETTINGS = Settings(lease_ttl_ms=TTL_MS, auto_create_topics=False)
HOUR_MS = 3_600_000
PRODUCE_VERSION = 9
CURRENT_LEADER_VERSION = 10  # KIP-951: Produce answers carry CurrentLeader and NodeEndpoints
ACKS_LEADER = 1
PRODUCE_TIMEOUT_MS = 10_000
STEP_ROUNDS = 12  # agent-2 tries to take the partition every half TTL, six TTLs long
PAUSE_MS = 3 * TTL_MS
SETTLE_MS = 3 * SETTINGS.ownership_interval_ms  # the ownership service places and takes it


class RawClient:
    """One Kafka connection from the client host to an agent, sending acks=1 Produce."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        version: int = PRODUCE_VERSION,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._version = version
        self.last: Any = None  # the last Produce answer, decoded

    @classmethod
    async def to(cls, agent: SimAgent, version: int = PRODUCE_VERSION) -> RawClient:
        connected = await asyncio.open_connection(agent.host, agent.settings.kafka_port)
        return cls(*connected, version)

    def send(self) -> None:
        request: Any = build(
            codec.request_schema(ApiKey.PRODUCE, self._version),
            {
                "acks": ACKS_LEADER,
                "timeout": PRODUCE_TIMEOUT_MS,
                "topic_data": [
                    {"name": TOPIC, "partition_data": [{"index": 0, "records": GOLDEN_BATCH}]}
                ],
            },
        )
        self._writer.write(request_frame(request))

    async def answer(self) -> tuple[int, int]:
        """(error code, base offset) of the next Produce answer."""
        size = int.from_bytes(await self._reader.readexactly(4), "big")
        data = size.to_bytes(4, "big") + await self._reader.readexactly(size)
        _, body, _ = split_response(data, flexible_header=True)
        self.last = decode_response(ApiKey.PRODUCE, self._version, body)
        response = self.last.responses[0].partition_responses[0]
        return int(response.error_code), int(response.base_offset)

    async def produce(self) -> tuple[int, int]:
        self.send()
        return await self.answer()


def _simulate(story: Story) -> Any:
    return simulate_story(story, seed=9, agents=2, settings=SETTINGS, topic=TOPIC, partitions=1)


async def _lead(cluster: SimCluster, agent: SimAgent) -> int:
    """`agent` takes (or keeps) the partition's lease, wherever the partition is placed (the
    lease store alone decides); its epoch."""
    assert agent.running is not None
    plog = await cluster.spawn(agent.host, agent.running.log.take(TP), "lead")
    return plog.state.leader_epoch


async def _placed(cluster: SimCluster) -> tuple[SimAgent, SimAgent]:
    """(the agent the ownership service gave the partition to, the other) once it settled."""
    await cluster.clock.sleep_ms(SETTLE_MS)
    leading = [a for a in cluster.agents if a.running and a.running.log.led_partition(TP)]
    assert len(leading) == 1, leading
    (holder,) = leading
    return holder, next(agent for agent in cluster.agents if agent is not holder)


async def _refused_to(cluster: SimCluster, agent: SimAgent) -> None:
    with pytest.raises(NotLeader):
        await _lead(cluster, agent)


def test_a_clock_stepped_an_hour_forward_takes_no_lease_from_a_healthy_holder() -> None:
    async def story(cluster: SimCluster) -> list[tuple[int, int]]:
        holder, stepped = await _placed(cluster)
        epoch = await _lead(cluster, holder)
        stepped.clock.step_wall_ms(HOUR_MS)
        holder.clock.step_wall_ms(-HOUR_MS)  # and the holder's own clock an hour back
        client = await RawClient.to(holder)
        answers = []
        for _ in range(STEP_ROUNDS):
            await cluster.clock.sleep_ms(TTL_MS // 2)
            await _refused_to(cluster, stepped)
            answers.append(await client.produce())
        record = await cluster.metadata.unfaulted.get_partition(TP)
        assert (record.leader_agent, record.leader_epoch, record.lease_live) == (
            holder.host,
            epoch,
            True,
        )
        return answers

    answers = _simulate(story)
    assert answers == [(ErrorCode.NONE, offset) for offset in range(STEP_ROUNDS)]


def test_a_paused_holder_acknowledges_nothing_in_its_old_epoch_after_resuming() -> None:
    async def story(cluster: SimCluster) -> dict[str, Any]:
        holder, other = await _placed(cluster)
        old_epoch = await _lead(cluster, holder)
        client = await RawClient.to(holder)
        before = await client.produce()
        holder.pause(PAUSE_MS)
        await cluster.clock.sleep_ms(TTL_MS + TTL_MS // 2)  # past the lease by store time
        new_epoch = await _lead(cluster, other)
        client.send()  # reaches the holder when it resumes
        await cluster.clock.sleep_ms(PAUSE_MS - (TTL_MS + TTL_MS // 2))
        holder.resume()
        during = await client.answer()
        after = await client.produce()
        assert holder.running is not None
        return {
            "epochs": (old_epoch, new_epoch),
            "answers": (before, during, after),
            "still_leads": holder.running.log.led_partition(TP) is not None,
        }

    seen = _simulate(story)
    old_epoch, new_epoch = seen["epochs"]
    assert new_epoch == old_epoch + 1
    before, during, after = seen["answers"]
    assert before == (ErrorCode.NONE, 0)
    refused = (ErrorCode.NOT_LEADER_OR_FOLLOWER, -1)
    assert (during, after) == (refused, refused)
    assert not seen["still_leads"]


def test_a_produce_to_an_agent_not_leading_names_the_current_leader_from_v10() -> None:
    async def story(cluster: SimCluster) -> dict[str, Any]:
        holder, other = await _placed(cluster)
        epoch = await _lead(cluster, holder)
        answers = {}
        for version in (9, CURRENT_LEADER_VERSION):
            client = await RawClient.to(other, version)
            answers[version] = (await client.produce(), client.last)
        return {"epoch": epoch, "holder": holder.host, "answers": answers}

    seen = _simulate(story)
    refused = (ErrorCode.NOT_LEADER_OR_FOLLOWER, -1)
    (old, _), (new, hinted) = seen["answers"][9], seen["answers"][CURRENT_LEADER_VERSION]
    assert old == new == refused
    leader = hinted.responses[0].partition_responses[0].current_leader
    (endpoint,) = hinted.node_endpoints
    assert (leader.leader_id, leader.leader_epoch) == (endpoint.node_id, seen["epoch"])
    assert endpoint.host == seen["holder"]
