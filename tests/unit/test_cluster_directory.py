"""The cluster directory: the live agents membership read, this agent always among them,
partition leaders by lease live by the store's clock else by placement, coordinators by the
lease of their slot; and its Kafka encoding as brokers."""

from __future__ import annotations

from streamhouse.engine.cluster import AgentAddress, ClusterDescription, ClusterDirectory
from streamhouse.engine.coordinators import COORDINATOR_SLOTS, slot_of
from streamhouse.names import TopicPartition
from streamhouse.ports.topics import PartitionRecord
from streamhouse.server.kafka_cluster import broker

A = AgentAddress("a", 0, "h0", 9092)
B = AgentAddress("b", 1, "h1", 9092)
C = AgentAddress("c", 2, "h2", 9092)


def _directory(agent: AgentAddress, live: tuple[AgentAddress, ...]) -> ClusterDirectory:
    directory = ClusterDirectory(agent.agent_id)
    directory.advertise(agent.host, agent.port, agent.node_id)
    directory.update(live)
    return directory


def test_an_agent_is_a_broker() -> None:
    assert broker(AgentAddress("a", 4, "10.0.0.7", 19092)) == {
        "node_id": 4,
        "host": "10.0.0.7",
        "port": 19092,
        "rack": None,
    }


def test_alone_the_agent_is_at_its_advertised_address_and_node() -> None:
    directory = ClusterDirectory("solo")
    directory.advertise("10.0.0.9", 19092, 4)
    alone = AgentAddress("solo", 4, "10.0.0.9", 19092)
    assert directory.describe() == ClusterDescription("streamhouse-default", 4, (alone,))
    assert directory.coordinator(slot_of("any-group")) == alone


def test_the_live_agents_in_node_order_with_this_one_always_among_them() -> None:
    directory = _directory(B, (C, A))
    assert directory.agents() == (A, B, C)
    assert directory.describe().controller_id == 1
    directory.update((A,))  # b's own heartbeat lapsed at the store: b still runs
    assert directory.agents() == (A, B)
    directory.update((AgentAddress("b", 1, "stale", 1), C))  # b's own address wins
    assert directory.agents() == (B, C)


def _partition(leader: str | None, *, live: bool) -> PartitionRecord:
    return PartitionRecord("t", 0, leader, 3, 0, 0, 0, lease_live=live)


def test_requests_go_to_the_live_lease_holder_else_to_this_agent() -> None:
    directory = _directory(B, (A, B, C))
    assert directory.leader_node(_partition("c", live=True)) == 2
    assert directory.leader_node(_partition(None, live=False)) == 1
    assert directory.leader_node(_partition("gone", live=True)) == 1  # not a live agent
    assert directory.leader_node(_partition("c", live=False)) == 1  # expired by store time
    directory.update((A, B))  # c stopped heartbeating
    assert directory.leader_node(_partition("c", live=True)) == 1


def test_requests_go_to_the_target_while_no_lease_is_live() -> None:
    directory = _directory(B, (A, B, C))
    tp = TopicPartition("t", 0)
    directory.place({tp: "c"}, {})
    assert directory.leader_node(_partition(None, live=False)) == 2
    assert directory.leader_node(_partition("a", live=True)) == 0  # the holder until it hands over
    assert directory.may_lead(TopicPartition("t", 1))  # not placed yet: the lease store decides
    assert not directory.may_lead(tp)


def test_a_coordinator_is_its_slots_live_holder_else_its_target() -> None:
    directory = _directory(A, (A, B, C))
    slot = slot_of("billing")
    assert directory.coordinator(slot) == A  # nothing known yet: this agent
    directory.place({slot: "b"}, {})
    assert directory.coordinator(slot) == B
    directory.place({slot: "b"}, {slot: "c"})  # c holds it until it hands it over
    assert directory.coordinator(slot) == C
    directory.update((A, B))  # c is gone: its target
    assert directory.coordinator(slot) == B


def test_keys_spread_over_every_slot_and_keep_their_slot() -> None:
    slots = {slot_of(f"group-{n}") for n in range(400)}
    assert len(slots) == COORDINATOR_SLOTS
    assert slot_of("billing") == slot_of("billing")
