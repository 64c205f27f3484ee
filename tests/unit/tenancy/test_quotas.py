"""Client quotas: Kafka's precedence of (user, client-id) entities with the org last, Kafka's
sampled Rate, and the throttle that brings a client back to its quota."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhouse.tenancy.quotas import (
    CONSUMER_BYTE_RATE,
    ORG_PARTITIONS,
    ORG_STORAGE_BYTES,
    PRODUCER_BYTE_RATE,
    QUOTA_WINDOW_MS,
    QUOTA_WINDOWS,
    REQUEST_PERCENTAGE,
    REQUEST_THROTTLE_MS_MAX,
    THROTTLE_MS_MAX,
    InvalidQuota,
    QuotaEntity,
    RateSampler,
    check_quota_value,
    quota_levels,
    resolve_quota,
    throttle_ms,
)
from tests.property_budget import examples

# Kafka's documented order (docs, "Quotas": most specific first), then the org.
KAFKA_ORDER: list[QuotaEntity] = [
    (("client-id", "app"), ("user", "alice")),  # /config/users/alice/clients/app
    (("client-id", None), ("user", "alice")),  # /config/users/alice/clients/<default>
    (("user", "alice"),),  # /config/users/alice
    (("client-id", "app"), ("user", None)),  # /config/users/<default>/clients/app
    (("client-id", None), ("user", None)),  # /config/users/<default>/clients/<default>
    (("user", None),),  # /config/users/<default>
    (("client-id", "app"),),  # /config/clients/app
    (("client-id", None),),  # /config/clients/<default>
    (),  # the org
]


def test_the_keys_and_windows_are_kafkas() -> None:
    assert (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE) == (
        "producer_byte_rate",
        "consumer_byte_rate",
        "request_percentage",
    )
    assert (ORG_STORAGE_BYTES, ORG_PARTITIONS) == ("org_storage_bytes", "org_partitions")
    assert (QUOTA_WINDOW_MS, QUOTA_WINDOWS) == (1000, 11)
    assert REQUEST_THROTTLE_MS_MAX == 1000
    assert THROTTLE_MS_MAX == 11_000


def test_the_levels_are_kafkas_eight_then_the_org() -> None:
    assert quota_levels("alice", "app") == KAFKA_ORDER
    for entity in KAFKA_ORDER:
        assert list(entity) == sorted(entity, key=lambda pair: pair[0])


@pytest.mark.parametrize("level", range(len(KAFKA_ORDER)))
def test_the_most_specific_configured_level_wins(level: int) -> None:
    values = {entity: float(index) for index, entity in enumerate(KAFKA_ORDER) if index >= level}
    assert resolve_quota(values, "alice", "app") == float(level)


def test_no_quota_configured_is_none() -> None:
    assert resolve_quota({}, "alice", "app") is None


def test_another_users_or_clients_quota_does_not_apply() -> None:
    values: dict[QuotaEntity, float] = {
        (("user", "bob"),): 1.0,
        (("client-id", "other"),): 2.0,
        (("client-id", "app"), ("user", "bob")): 3.0,
    }
    assert resolve_quota(values, "alice", "app") is None
    assert resolve_quota(values, "bob", "x") == 1.0


def test_a_zero_quota_is_a_quota() -> None:
    assert resolve_quota({(("user", "alice"),): 0.0, (): 5.0}, "alice", "app") == 0.0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (PRODUCER_BYTE_RATE, 1024.0),
        (CONSUMER_BYTE_RATE, 0.0),
        (REQUEST_PERCENTAGE, 12.5),
        (ORG_STORAGE_BYTES, 1e12),
        (ORG_PARTITIONS, 100.0),
    ],
)
def test_valid_quota_values(key: str, value: float) -> None:
    check_quota_value(key, value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("producer_byte_rates", 1.0, "Unknown quota key 'producer_byte_rates'"),
        ("", 1.0, "Unknown quota key"),
        (PRODUCER_BYTE_RATE, -1.0, "a quota is a finite number >= 0"),
        (REQUEST_PERCENTAGE, math.nan, "a quota is a finite number >= 0"),
        (CONSUMER_BYTE_RATE, math.inf, "a quota is a finite number >= 0"),
        (PRODUCER_BYTE_RATE, 10.5, "must be a whole number"),
        (ORG_PARTITIONS, 0.5, "must be a whole number"),
    ],
)
def test_invalid_quota_values_are_refused(key: str, value: float, message: str) -> None:
    with pytest.raises(InvalidQuota, match=message):
        check_quota_value(key, value)
    assert issubclass(InvalidQuota, ValueError)


# -- throttle --------------------------------------------------------------------------------


def test_throttle_is_kafkas_formula() -> None:
    # (1500 - 1000) / 1000 * 10000 ms
    assert throttle_ms(1500.0, 1000.0, 10_000) == 5000
    assert throttle_ms(1000.5, 1000.0, 10_000) == 5


def test_no_throttle_within_quota() -> None:
    assert throttle_ms(999.0, 1000.0, 10_000) == 0
    assert throttle_ms(1000.0, 1000.0, 10_000) == 0
    assert throttle_ms(0.0, 0.0, 10_000) == 0


def test_throttle_is_capped() -> None:
    assert throttle_ms(1e9, 1.0, 10_000) == THROTTLE_MS_MAX
    assert throttle_ms(1.0, 0.0, 10_000) == THROTTLE_MS_MAX
    assert throttle_ms(300.0, 100.0, 10_000, cap_ms=REQUEST_THROTTLE_MS_MAX) == 1000


@given(
    quota=st.floats(min_value=0, max_value=1e9),
    share=st.floats(min_value=0, max_value=1),
    window=st.integers(min_value=1, max_value=QUOTA_WINDOW_MS * QUOTA_WINDOWS),
)
@settings(max_examples=examples(400))
def test_throttle_is_zero_within_quota(quota: float, share: float, window: int) -> None:
    assert throttle_ms(quota * share, quota, window) == 0


@given(
    quota=st.floats(min_value=1e-3, max_value=1e9),
    rates=st.tuples(st.floats(min_value=0, max_value=1e12), st.floats(min_value=0, max_value=1e12)),
    window=st.integers(min_value=1, max_value=QUOTA_WINDOW_MS * QUOTA_WINDOWS),
)
@settings(max_examples=examples(400))
def test_throttle_grows_with_the_rate_and_stays_in_bounds(
    quota: float, rates: tuple[float, float], window: int
) -> None:
    low, high = sorted(rates)
    assert 0 <= throttle_ms(low, quota, window) <= throttle_ms(high, quota, window)
    assert throttle_ms(high, quota, window) <= THROTTLE_MS_MAX


# -- the sampled rate ------------------------------------------------------------------------


def test_a_young_sampler_divides_by_ten_windows_at_least() -> None:
    # Kafka's Rate counts at least samples - 1 whole windows, so a first burst of 1000 bytes
    # reads as 100 B/s, not as an infinite rate.
    sampler = RateSampler()
    sampler.record(1000, now_ms=0)
    assert sampler.window_ms_total(0) == 10_000
    assert sampler.rate_per_s(0) == pytest.approx(100.0)
    assert sampler.rate_per_s(5_000) == pytest.approx(100.0)


def test_past_ten_windows_the_rate_divides_by_the_elapsed_time() -> None:
    sampler = RateSampler()
    sampler.record(1050, now_ms=0)
    assert sampler.window_ms_total(10_500) == 10_500
    assert sampler.rate_per_s(10_500) == pytest.approx(100.0)


def test_samples_older_than_the_span_are_forgotten() -> None:
    sampler = RateSampler()
    sampler.record(1000, now_ms=0)
    sampler.record(500, now_ms=3_000)
    assert sampler.total(10_999) == 1500
    assert sampler.total(11_000) == 500  # the first sample's start is 11 windows old
    assert sampler.total(14_000) == 0
    assert sampler.rate_per_s(30_000) == 0.0


def test_records_within_a_window_share_a_sample() -> None:
    sampler = RateSampler(window_ms=1000, windows=2)
    sampler.record(1, now_ms=0)
    sampler.record(1, now_ms=999)
    sampler.record(1, now_ms=1000)  # a second sample
    sampler.record(1, now_ms=2500)  # a third: the first is dropped (two kept)
    assert sampler.total(2500) == 2


def test_a_steady_rate_reads_as_itself() -> None:
    sampler = RateSampler()
    for second in range(30):
        sampler.record(2000, now_ms=second * 1000)
    # 11 live samples, 22000 bytes over 10.999 s: Kafka's Rate reads up to a window high
    # right after a window starts, and the true rate by its end.
    rate = sampler.rate_per_s(29_999)
    assert 1900 <= rate <= 2200


def test_a_sampler_needs_sane_windows() -> None:
    with pytest.raises(ValueError, match="window"):
        RateSampler(window_ms=0)
    with pytest.raises(ValueError, match="window"):
        RateSampler(windows=1)


def test_the_throttle_is_the_delay_that_spreads_the_total_to_the_quota() -> None:
    # Kafka's derivation: the bytes measured over `window` would be at the quota over
    # `window + delay`. (The sampler itself, whose span stops growing at 10 windows, reads
    # the quota only once the burst's sample expires: Kafka's Rate behaves the same.)
    sampler = RateSampler()
    sampler.record(20_000, now_ms=0)
    quota = 1000.0
    rate = sampler.rate_per_s(0)
    window = sampler.window_ms_total(0)
    delay = throttle_ms(rate, quota, window)
    assert delay == 10_000
    assert sampler.total(delay) / ((window + delay) / 1000) == pytest.approx(quota)


@given(
    records=st.lists(
        st.tuples(st.integers(min_value=0, max_value=5_000), st.floats(min_value=0, max_value=1e6)),
        max_size=40,
    ),
    later=st.integers(min_value=0, max_value=30_000),
)
@settings(max_examples=examples(400))
def test_the_rate_is_never_negative_and_forgets_everything_eventually(
    records: list[tuple[int, float]], later: int
) -> None:
    sampler = RateSampler()
    now = 0
    for step, amount in records:
        now += step
        sampler.record(amount, now)
        assert sampler.rate_per_s(now) >= 0
    assert sampler.total(now + QUOTA_WINDOW_MS * QUOTA_WINDOWS + later) == 0
