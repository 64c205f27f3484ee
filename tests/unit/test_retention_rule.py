"""The retention rule (log/retention.py) against a tiny model of Kafka's: rows chosen by
Hypothesis, the model deleting whole rows oldest first by each rule on its own and taking the
further one; paging the scan changes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from streamhouse.log.retention import (
    RetentionPolicy,
    RetentionScan,
    retained_log_start,
    topic_retention,
)
from streamhouse.log.topic_configs import NO_LIMIT, topic_config_specs

NOW_MS = 1_700_000_000_000
SPECS = topic_config_specs(1 << 20)
AGE_STEP_MS = 500


@dataclass(frozen=True)
class Row:
    base_offset: int
    last_offset: int
    max_timestamp_ms: int
    length: int


@st.composite
def partitions(draw: st.DrawFn) -> tuple[list[Row], int]:
    """Contiguous rows from some offset on, and a log start at or inside the first row."""
    offset = draw(st.integers(0, 1_000))
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        count = draw(st.integers(1, 5))
        age_ms = draw(st.integers(-2, 40)) * AGE_STEP_MS  # coarse: ties with retention.ms
        rows.append(Row(offset, offset + count - 1, NOW_MS - age_ms, draw(st.integers(1, 500))))
        offset += count
    if not rows:
        return rows, offset
    first = rows[0]
    return rows, first.base_offset + draw(st.integers(0, first.last_offset - first.base_offset))


policies = st.builds(
    RetentionPolicy,
    st.one_of(st.just(NO_LIMIT), st.integers(0, 40).map(lambda steps: steps * AGE_STEP_MS)),
    st.one_of(st.just(NO_LIMIT), st.integers(0, 3_000)),
)


def model(rows: list[Row], log_start: int, policy: RetentionPolicy) -> int:
    """Kafka's rules told plainly: each rule deletes the longest run of oldest rows it allows."""
    by_time = 0
    if policy.retention_ms != NO_LIMIT:
        while by_time < len(rows) and NOW_MS - rows[by_time].max_timestamp_ms > policy.retention_ms:
            by_time += 1
    by_bytes = 0
    if policy.retention_bytes >= 0:
        size = sum(row.length for row in rows)
        while by_bytes < len(rows) and size - rows[by_bytes].length >= policy.retention_bytes:
            size -= rows[by_bytes].length
            by_bytes += 1
    deleted = max(by_time, by_bytes)
    return rows[deleted - 1].last_offset + 1 if deleted else log_start


@given(partitions(), policies)
def test_the_rule_matches_the_model(
    partition: tuple[list[Row], int], policy: RetentionPolicy
) -> None:
    rows, log_start = partition
    assert retained_log_start(rows, log_start, NOW_MS, policy) == model(rows, log_start, policy)


@given(partitions(), policies, st.lists(st.integers(1, 4), max_size=12))
def test_paging_changes_nothing(
    partition: tuple[list[Row], int], policy: RetentionPolicy, page_sizes: list[int]
) -> None:
    rows, log_start = partition
    scan = RetentionScan(policy, log_start, NOW_MS, sum(row.length for row in rows))
    taken = 0
    for size in [*page_sizes, len(rows)]:
        if scan.finished:
            break
        scan.take(rows[taken : taken + size])
        taken += size
    assert scan.log_start_offset == model(rows, log_start, policy)
    gone = [row for row in rows if row.last_offset < scan.log_start_offset]
    assert scan.rows_deleted == len(gone)
    assert scan.bytes_deleted == sum(row.length for row in gone)


@given(partitions(), policies)
def test_whole_rows_go_and_what_stays_keeps_the_limits(
    partition: tuple[list[Row], int], policy: RetentionPolicy
) -> None:
    rows, log_start = partition
    new_start = retained_log_start(rows, log_start, NOW_MS, policy)
    assert new_start >= log_start
    assert new_start == log_start or any(row.last_offset + 1 == new_start for row in rows)
    if policy.retention_bytes >= 0:
        # the bytes rule alone never takes what stays below the limit
        by_bytes_only = RetentionPolicy(NO_LIMIT, policy.retention_bytes)
        start = retained_log_start(rows, log_start, NOW_MS, by_bytes_only)
        assert sum(r.length for r in rows if r.last_offset >= start) >= min(
            policy.retention_bytes, sum(r.length for r in rows)
        )


def test_a_recent_record_keeps_its_row_and_every_later_one() -> None:
    old, recent = NOW_MS - 10_000, NOW_MS - 10
    rows = [Row(0, 9, old, 100), Row(10, 19, recent, 100), Row(20, 29, old, 100)]
    policy = RetentionPolicy(retention_ms=1_000)
    assert retained_log_start(rows, 0, NOW_MS, policy) == 10
    # exactly retention.ms old is kept (Kafka deletes what is strictly older)
    assert retained_log_start([Row(0, 9, NOW_MS - 1_000, 1)], 0, NOW_MS, policy) == 0


def test_bytes_keep_at_least_the_limit_counting_the_row_holding_the_log_start() -> None:
    rows = [Row(0, 9, NOW_MS, 100), Row(10, 19, NOW_MS, 100), Row(20, 29, NOW_MS, 100)]
    assert retained_log_start(rows, 5, NOW_MS, RetentionPolicy(retention_bytes=200)) == 10
    assert retained_log_start(rows, 5, NOW_MS, RetentionPolicy(retention_bytes=150)) == 10
    assert retained_log_start(rows, 5, NOW_MS, RetentionPolicy(retention_bytes=100)) == 20
    assert retained_log_start(rows, 5, NOW_MS, RetentionPolicy(retention_bytes=0)) == 30
    assert retained_log_start(rows, 5, NOW_MS, RetentionPolicy(retention_bytes=301)) == 5


def test_topic_retention_follows_cleanup_policy_and_kafka_defaults() -> None:
    assert topic_retention({}, SPECS) == RetentionPolicy(7 * 24 * 3600 * 1000, NO_LIMIT)
    assert topic_retention({"cleanup.policy": "compact"}, SPECS) is None
    both = {"cleanup.policy": "compact,delete", "retention.bytes": "10"}
    assert topic_retention(both, SPECS) == RetentionPolicy(7 * 24 * 3600 * 1000, 10)
    assert topic_retention({"retention.ms": "-1"}, SPECS) is None  # forever, unbounded
    assert topic_retention({"retention.ms": "-1", "retention.bytes": "0"}, SPECS) == (
        RetentionPolicy(NO_LIMIT, 0)
    )
