"""Topics port: every adapter creates, lists, grows, configures and deletes topics alike."""

from __future__ import annotations

import pytest

from streamhouse.errors import (
    ErrorCode,
    InvalidPartitions,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
)
from streamhouse.names import TopicPartition
from streamhouse.ports.metadata import MetadataStore
from tests.unit.metadata.builders import (
    T0_MS,
    TP0,
    TP1,
    TTL_MS,
    flush,
    orders_led_by_a,
    run,
)

# ---------------------------------------------------------------- topics


def test_create_topic_returns_record_and_fresh_partitions(store: MetadataStore) -> None:
    record = run(store.create_topic("orders", 3, {"cleanup.policy": "compact"}, T0_MS))
    assert (record.name, record.partition_count, record.created_ms) == ("orders", 3, T0_MS)
    assert dict(record.configs) == {"cleanup.policy": "compact"}
    assert run(store.get_topic("orders")) == record
    for index in range(3):
        partition = run(store.get_partition(TopicPartition("orders", index)))
        assert partition.tp == TopicPartition("orders", index)
        assert partition.leader_agent is None
        assert partition.leader_epoch == 0
        assert partition.durable_end_offset == 0
        assert partition.log_start_offset == 0


def test_create_duplicate_topic_raises_topic_already_exists(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    with pytest.raises(TopicAlreadyExists) as raised:
        run(store.create_topic("orders", 5, {"a": "b"}, T0_MS + 1))
    assert raised.value.code == ErrorCode.TOPIC_ALREADY_EXISTS == 36
    topic = run(store.get_topic("orders"))
    assert topic is not None and topic.partition_count == 1


def test_a_topic_without_partitions_is_our_bug_and_creates_nothing(store: MetadataStore) -> None:
    with pytest.raises(AssertionError, match="0 partitions"):
        run(store.create_topic("empty", 0, {}, T0_MS))
    assert run(store.get_topic("empty")) is None


def test_get_missing_topic_is_none(store: MetadataStore) -> None:
    assert run(store.get_topic("nope")) is None


def test_list_topics_sorted_by_name(store: MetadataStore) -> None:
    for name in ("zeta", "alpha", "Mid", "beta"):
        run(store.create_topic(name, 1, {}, T0_MS))
    assert [topic.name for topic in run(store.list_topics())] == sorted(
        ["zeta", "alpha", "Mid", "beta"]
    )


def test_delete_topic_removes_partitions_and_segments(store: MetadataStore) -> None:
    orders_led_by_a(store)
    run(store.create_topic("other", 1, {}, T0_MS))
    run(store.commit_flush(flush("obj-1", {TP0: 1}, [(TP0, 0, 9)])))
    run(store.delete_topic("orders"))
    assert run(store.get_topic("orders")) is None
    assert [topic.name for topic in run(store.list_topics())] == ["other"]
    with pytest.raises(UnknownTopicOrPartition):
        run(store.get_partition(TP0))
    # The object stays known, for the reconciler; a topic of the same name starts afresh.
    assert [obj.key for obj in run(store.list_objects())] == ["obj-1"]
    run(store.create_topic("orders", 1, {}, T0_MS))
    assert run(store.list_segments(TP0)) == []
    assert run(store.get_partition(TP0)).durable_end_offset == 0


def test_a_recreated_topic_never_reuses_an_epoch(store: MetadataStore) -> None:
    orders_led_by_a(store)  # agent-a holds both partitions at epoch 1
    run(store.delete_topic("orders"))
    run(store.create_topic("orders", 3, {}, T0_MS))
    run(store.add_partitions("orders", 4))
    lease = run(store.acquire_lease(TP0, "agent-b", TTL_MS))
    assert lease is not None and lease.epoch > 1
    assert run(store.get_partition(TP1)).leader_epoch >= 2
    assert run(store.get_partition(TopicPartition("orders", 3))).leader_epoch == 0
    # agent-a still believes in epoch 1 of the old topic: its flush must be fenced.
    outcome = run(store.commit_flush(flush("obj-stale", {TP0: 1}, [(TP0, 0, 4)])))
    assert outcome.fenced == frozenset({TP0}) and not outcome.committed
    assert run(store.list_segments(TP0)) == []


def test_delete_unknown_topic_raises(store: MetadataStore) -> None:
    with pytest.raises(UnknownTopicOrPartition) as raised:
        run(store.delete_topic("nope"))
    assert raised.value.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION == 3


# ---------------------------------------------------------------- partitions and configs


def test_add_partitions_creates_fresh_partitions_and_keeps_old(store: MetadataStore) -> None:
    orders_led_by_a(store)
    run(store.commit_flush(flush("obj-1", {TP0: 1}, [(TP0, 0, 9)])))
    record = run(store.add_partitions("orders", 5))
    assert (record.name, record.partition_count, record.created_ms) == ("orders", 5, T0_MS)
    assert run(store.get_topic("orders")) == record
    assert run(store.get_partition(TP0)).durable_end_offset == 10
    assert run(store.get_partition(TP0)).leader_epoch == 1
    for index in (2, 3, 4):
        partition = run(store.get_partition(TopicPartition("orders", index)))
        assert (partition.leader_agent, partition.leader_epoch) == (None, 0)
        assert (partition.durable_end_offset, partition.log_start_offset) == (0, 0)
    with pytest.raises(UnknownTopicOrPartition):
        run(store.get_partition(TopicPartition("orders", 5)))


@pytest.mark.parametrize("new_total", [0, 1, 2])
def test_add_partitions_must_grow(store: MetadataStore, new_total: int) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    with pytest.raises(InvalidPartitions) as raised:
        run(store.add_partitions("orders", new_total))
    assert raised.value.code == ErrorCode.INVALID_PARTITIONS == 37
    topic = run(store.get_topic("orders"))
    assert topic is not None and topic.partition_count == 2


def test_add_partitions_to_unknown_topic_raises(store: MetadataStore) -> None:
    with pytest.raises(UnknownTopicOrPartition):
        run(store.add_partitions("nope", 3))


def test_set_topic_configs_incremental_sets_and_deletes(store: MetadataStore) -> None:
    run(store.create_topic("orders", 2, {"a": "1", "b": "2"}, T0_MS))
    record = run(store.set_topic_configs("orders", {"a": None, "c": "3"}, incremental=True))
    assert dict(record.configs) == {"b": "2", "c": "3"}
    assert record.partition_count == 2
    assert run(store.get_topic("orders")) == record
    again = run(store.set_topic_configs("orders", {"missing": None}, incremental=True))
    assert dict(again.configs) == {"b": "2", "c": "3"}


def test_set_topic_configs_replacing_drops_other_keys(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {"a": "1", "b": "2"}, T0_MS))
    record = run(store.set_topic_configs("orders", {"c": "3", "d": None}, incremental=False))
    assert dict(record.configs) == {"c": "3"}
    topic = run(store.get_topic("orders"))
    assert topic is not None and dict(topic.configs) == {"c": "3"}


def test_set_configs_of_unknown_topic_raises(store: MetadataStore) -> None:
    with pytest.raises(UnknownTopicOrPartition):
        run(store.set_topic_configs("nope", {"a": "1"}, incremental=True))


# ---------------------------------------------------------------- placement inputs


def test_list_partitions_reads_every_partition_in_order_with_live_leases(
    store: MetadataStore,
) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    run(store.create_topic("audit", 1, {}, T0_MS))
    run(store.acquire_lease(TP1, "agent-a", TTL_MS))
    listed = run(store.list_partitions())
    assert [p.tp for p in listed] == [
        TopicPartition("audit", 0),
        TP0,
        TP1,
    ]
    by_tp = {p.tp: p for p in listed}
    assert (by_tp[TP1].leader_agent, by_tp[TP1].lease_live) == ("agent-a", True)
    assert by_tp[TP0].leader_agent is None and not by_tp[TP0].lease_live
    assert all(p.preferred_agent is None for p in listed)
    run(store.delete_topic("audit"))
    assert [p.tp for p in run(store.list_partitions())] == [TP0, TP1]


def test_list_topic_partitions_reads_one_topic_in_index_order_with_live_leases(
    store: MetadataStore,
) -> None:
    run(store.create_topic("orders", 12, {}, T0_MS))  # 10 sorts before 2 as text, not as index
    run(store.create_topic("audit", 1, {}, T0_MS))
    run(store.acquire_lease(TP1, "agent-a", TTL_MS))
    listed = run(store.list_topic_partitions("orders"))
    assert [p.tp for p in listed] == [TopicPartition("orders", i) for i in range(12)]
    assert listed == [run(store.get_partition(p.tp)) for p in listed]
    assert (listed[1].leader_agent, listed[1].lease_live) == ("agent-a", True)
    assert run(store.list_topic_partitions("nope")) == []
    run(store.delete_topic("orders"))
    assert run(store.list_topic_partitions("orders")) == []


def test_preferred_agent_is_recorded_and_cleared(store: MetadataStore) -> None:
    run(store.create_topic("orders", 2, {}, T0_MS))
    run(store.set_preferred_agent(TP1, "agent-b"))
    assert run(store.get_partition(TP1)).preferred_agent == "agent-b"
    assert run(store.get_partition(TP0)).preferred_agent is None
    assert {p.tp: p.preferred_agent for p in run(store.list_partitions())}[TP1] == "agent-b"
    run(store.set_preferred_agent(TP1, None))
    assert run(store.get_partition(TP1)).preferred_agent is None


def test_preferred_agent_of_an_unknown_partition_raises(store: MetadataStore) -> None:
    run(store.create_topic("orders", 1, {}, T0_MS))
    with pytest.raises(UnknownTopicOrPartition):
        run(store.set_preferred_agent(TopicPartition("orders", 5), "agent-b"))
    with pytest.raises(UnknownTopicOrPartition):
        run(store.set_preferred_agent(TopicPartition("nope", 0), "agent-b"))
