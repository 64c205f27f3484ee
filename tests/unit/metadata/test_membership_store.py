"""Membership port: every adapter registers agents with stable node ids and judges their
heartbeats by the store's own clock, alike."""

from __future__ import annotations

from streamhouse.io.sql.store import SqlMetadataStore
from streamhouse.names import TopicPartition
from streamhouse.ports.membership import AgentRecord
from streamhouse.ports.metadata import MetadataStore
from tests.unit.metadata.builders import T0_MS, StoreTime, all_at_once, run

HEARTBEAT_TTL_MS = 9_000
LEASE_TTL_MS = 30_000
SLACK_MS = 1_000  # on PostgreSQL the server's clock runs on by itself during a test


def _register(store: MetadataStore, agent_id: str, port: int = 9092) -> AgentRecord:
    return run(store.register_agent(agent_id, f"host-{agent_id}", port, T0_MS, HEARTBEAT_TTL_MS))


def _live(store: MetadataStore) -> list[str]:
    return [agent.agent_id for agent in run(store.list_live_agents())]


def test_node_ids_are_allocated_once_per_agent_and_never_reused(store: MetadataStore) -> None:
    assert [_register(store, name).node_id for name in ("a", "b", "c")] == [0, 1, 2]
    run(store.deregister_agent("b"))
    assert _register(store, "d").node_id == 3  # b's id stays b's
    assert _register(store, "b").node_id == 1
    assert _register(store, "a").node_id == 0


def test_registering_again_moves_the_address(store: MetadataStore) -> None:
    first = _register(store, "a", port=9092)
    again = run(store.register_agent("a", "elsewhere", 19092, T0_MS + 5, HEARTBEAT_TTL_MS))
    assert again == AgentRecord("a", first.node_id, "elsewhere", 19092, T0_MS + 5)
    assert run(store.list_live_agents()) == [again]


def test_live_agents_are_listed_by_node_id(store: MetadataStore) -> None:
    for name in ("z", "m", "a"):
        _register(store, name)
    assert run(store.list_live_agents()) == [
        AgentRecord("z", 0, "host-z", 9092, T0_MS),
        AgentRecord("m", 1, "host-m", 9092, T0_MS),
        AgentRecord("a", 2, "host-a", 9092, T0_MS),
    ]


def test_a_heartbeat_lives_its_ttl_of_store_time(
    store: MetadataStore, store_time: StoreTime
) -> None:
    _register(store, "a")
    _register(store, "b")
    store_time.advance_ms(HEARTBEAT_TTL_MS - SLACK_MS)
    assert run(store.heartbeat_agent("b", HEARTBEAT_TTL_MS)) is True
    assert _live(store) == ["a", "b"]
    store_time.advance_ms(SLACK_MS)  # a's heartbeat expired by the store's clock
    assert _live(store) == ["b"]
    assert run(store.heartbeat_agent("a", HEARTBEAT_TTL_MS)) is True  # back, same node id
    assert run(store.list_live_agents())[0] == AgentRecord("a", 0, "host-a", 9092, T0_MS)
    store_time.advance_ms(HEARTBEAT_TTL_MS)
    assert _live(store) == []


def test_the_store_clock_alone_judges_heartbeats(
    store: MetadataStore, store_time: StoreTime
) -> None:
    """The agent's own start time says nothing about liveness: an agent whose clock is an
    hour behind or ahead is live for the TTL of the store's time, no more, no less."""
    hour_ms = 3_600_000
    run(store.register_agent("behind", "h", 1, T0_MS - hour_ms, HEARTBEAT_TTL_MS))
    run(store.register_agent("ahead", "h", 2, T0_MS + hour_ms, HEARTBEAT_TTL_MS))
    assert _live(store) == ["behind", "ahead"]
    store_time.advance_ms(HEARTBEAT_TTL_MS)
    assert _live(store) == []


def test_an_unknown_agent_must_register_first(store: MetadataStore) -> None:
    assert run(store.heartbeat_agent("stranger", HEARTBEAT_TTL_MS)) is False
    run(store.deregister_agent("stranger"))  # nothing to do
    assert _live(store) == []


def test_deregistering_leaves_at_once(store: MetadataStore) -> None:
    _register(store, "a")
    _register(store, "b")
    run(store.deregister_agent("a"))
    assert _live(store) == ["b"]
    assert run(store.heartbeat_agent("a", HEARTBEAT_TTL_MS)) is True  # still registered


def test_concurrent_registrations_get_distinct_node_ids(sql_store: SqlMetadataStore) -> None:
    names = [f"agent-{index}" for index in range(8)]
    records = all_at_once([lambda name=name: _register(sql_store, name) for name in names])
    assert sorted(record.node_id for record in records) == list(range(8))
    assert sorted(_live(sql_store)) == sorted(names)


def test_an_agent_holding_a_live_lease_is_live_past_its_heartbeat(
    store: MetadataStore, store_time: StoreTime
) -> None:
    """A store outage longer than the heartbeat TTL expires every heartbeat at once; the lease
    an agent renewed after it says it is there (until it deregisters)."""
    _register(store, "a")
    _register(store, "b")
    run(store.create_topic("orders", 1, {}, T0_MS))
    store_time.advance_ms(HEARTBEAT_TTL_MS + SLACK_MS)
    assert _live(store) == []
    assert run(store.acquire_lease(TopicPartition("orders", 0), "b", LEASE_TTL_MS)) is not None
    assert _live(store) == ["b"]
    run(store.deregister_agent("b"))
    assert _live(store) == []
