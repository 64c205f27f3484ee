"""Kafka's client quotas: which configured quota applies to a (user, client-id), how a rate is
sampled, and how long a client over its quota is throttled. Time comes in as `now_ms`.

A quota entity is Kafka's: sorted (type, name) pairs, type `user` or `client-id`, a None name
being the type's default entity; the empty entity `()` is the org's own quota, applied after
all eight of Kafka's levels.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

QuotaEntity = tuple[tuple[str, str | None], ...]

USER = "user"
CLIENT_ID = "client-id"

PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
ORG_STORAGE_BYTES = "org_storage_bytes"
ORG_PARTITIONS = "org_partitions"
CLIENT_QUOTA_KEYS = frozenset({PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE})
ORG_LIMIT_KEYS = frozenset({ORG_STORAGE_BYTES, ORG_PARTITIONS})
QUOTA_KEYS = CLIENT_QUOTA_KEYS | ORG_LIMIT_KEYS
# Counts of bytes and partitions: Kafka types the byte rates as LONG, and half a partition
# means nothing. request_percentage is a DOUBLE in Kafka.
_WHOLE_NUMBER_KEYS = frozenset({PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE}) | ORG_LIMIT_KEYS

QUOTA_WINDOW_MS = 1000  # Kafka's quota.window.size.seconds = 1
QUOTA_WINDOWS = 11  # Kafka's quota.window.num = 11
# Kafka caps only the request-percentage throttle (at one window) and leaves the byte-rate
# throttle uncapped; we cap every throttle at the whole sampled span, so one burst cannot mute
# a client for longer than the rate takes to forget it.
THROTTLE_MS_MAX = QUOTA_WINDOW_MS * QUOTA_WINDOWS
REQUEST_THROTTLE_MS_MAX = QUOTA_WINDOW_MS  # Kafka's ClientRequestQuotaManager bound


class InvalidQuota(ValueError):
    """A quota key or value that AlterClientQuotas must refuse."""


def check_quota_value(key: str, value: float) -> None:
    """Raise InvalidQuota for an unknown key or a value no quota can have."""
    if key not in QUOTA_KEYS:
        known = ", ".join(sorted(QUOTA_KEYS))
        raise InvalidQuota(f"Unknown quota key {key!r} (known: {known})")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise InvalidQuota(f"Invalid value {value} for {key}: a quota is a finite number >= 0")
    if key in _WHOLE_NUMBER_KEYS and value != int(value):
        raise InvalidQuota(f"Invalid value {value} for {key}: must be a whole number")


def quota_levels(user: str, client_id: str) -> list[QuotaEntity]:
    """The entities whose quota may apply to (user, client_id), the most specific first:
    Kafka's eight levels, then the org."""
    return [
        ((CLIENT_ID, client_id), (USER, user)),
        ((CLIENT_ID, None), (USER, user)),
        ((USER, user),),
        ((CLIENT_ID, client_id), (USER, None)),
        ((CLIENT_ID, None), (USER, None)),
        ((USER, None),),
        ((CLIENT_ID, client_id),),
        ((CLIENT_ID, None),),
        (),
    ]


def resolve_quota(values: Mapping[QuotaEntity, float], user: str, client_id: str) -> float | None:
    """The quota of the most specific entity configured for (user, client_id), or None."""
    for entity in quota_levels(user, client_id):
        value = values.get(entity)
        if value is not None:
            return value
    return None


def throttle_ms(
    observed_rate: float, quota: float, window_ms_total: int, cap_ms: int = THROTTLE_MS_MAX
) -> int:
    """How long to delay a client whose rate is `observed_rate` against `quota`: the time the
    measured window needs to bring the rate back to the quota if nothing more arrives
    (Kafka's QuotaUtils.throttleTime), 0 within quota, at most `cap_ms`."""
    if observed_rate <= quota:
        return 0
    if quota <= 0:
        return cap_ms  # a zero quota: everything is over it
    throttle = (observed_rate - quota) / quota * window_ms_total
    return min(cap_ms, round(throttle))


@dataclass
class _Sample:
    start_ms: int
    total: float


class RateSampler:
    """Kafka's Rate over sampled windows: up to `windows` samples of `window_ms`, each started
    by the first record past the previous one; the rate is their total over the span they
    cover, counted as at least `windows - 1` whole windows so a young sampler does not read a
    first burst as a huge rate."""

    def __init__(self, window_ms: int = QUOTA_WINDOW_MS, windows: int = QUOTA_WINDOWS) -> None:
        if window_ms <= 0 or windows < 2:
            raise ValueError("a rate needs a positive window and at least two windows")
        self.window_ms = window_ms
        self.windows = windows
        self._samples: deque[_Sample] = deque()

    def record(self, amount: float, now_ms: int) -> None:
        self._forget_old(now_ms)
        if not self._samples or now_ms >= self._samples[-1].start_ms + self.window_ms:
            self._samples.append(_Sample(now_ms, 0.0))
            if len(self._samples) > self.windows:
                self._samples.popleft()
        self._samples[-1].total += amount

    def rate_per_s(self, now_ms: int) -> float:
        total = self.total(now_ms)
        return total * 1000.0 / self.window_ms_total(now_ms)

    def total(self, now_ms: int) -> float:
        self._forget_old(now_ms)
        return sum(sample.total for sample in self._samples)

    def window_ms_total(self, now_ms: int) -> int:
        """The span the rate divides by (Kafka's Rate.windowSize), at least 1 ms."""
        self._forget_old(now_ms)
        oldest_start = self._samples[0].start_ms if self._samples else now_ms
        elapsed = max(0, now_ms - oldest_start)
        full_windows = elapsed // self.window_ms
        if full_windows < self.windows - 1:
            elapsed += (self.windows - 1 - full_windows) * self.window_ms
        return max(elapsed, 1)

    def _forget_old(self, now_ms: int) -> None:
        # A sample is obsolete once its start is a whole sampled span old (Kafka's expiry).
        horizon = self.windows * self.window_ms
        while self._samples and now_ms - self._samples[0].start_ms >= horizon:
            self._samples.popleft()
