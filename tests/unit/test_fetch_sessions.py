"""Fetch sessions (KIP-227): opening, incremental updates, forgetting, epochs, eviction."""

from __future__ import annotations

from streamhouse.errors import ErrorCode
from streamhouse.kafka.fetch_response import FetchedPartition
from streamhouse.kafka.fetch_sessions import FetchSessionCache
from streamhouse.names import TopicPartition

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def _answer(records: bytes = b"", high_watermark: int = 10, error: int = 0) -> FetchedPartition:
    batches = [records] if records else []
    return FetchedPartition(0, error, high_watermark, high_watermark, 0, batches)


def test_sessionless_fetch_covers_exactly_the_request() -> None:
    cache = FetchSessionCache()
    resolved = cache.resolve(0, -1, [(A, 5, 100)], [])
    assert resolved.session is None and resolved.wanted == [(A, 5, 100)] and len(cache) == 0


def test_incremental_requests_update_and_forget() -> None:
    cache = FetchSessionCache()
    opened = cache.resolve(0, 0, [(A, 0, 100), (B, 0, 100)], [])
    assert opened.session is not None and not opened.incremental
    session_id = opened.session.session_id
    step = cache.resolve(session_id, 1, [(A, 7, 100)], [])
    assert step.incremental and step.wanted == [(A, 7, 100), (B, 0, 100)]
    step = cache.resolve(session_id, 2, [], [B])
    assert step.wanted == [(A, 7, 100)]


def test_wrong_epoch_and_unknown_session_are_refused() -> None:
    cache = FetchSessionCache()
    session = cache.resolve(0, 0, [(A, 0, 1)], []).session
    assert session is not None
    assert (
        cache.resolve(session.session_id, 2, [], []).error == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    )
    assert cache.resolve(999, 1, [], []).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert cache.resolve(session.session_id, -1, [(A, 0, 1)], []).session is None  # closed
    assert (
        cache.resolve(session.session_id, 1, [], []).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    )


def test_incremental_responses_mention_only_news() -> None:
    cache = FetchSessionCache()
    session = cache.resolve(0, 0, [(A, 0, 1), (B, 0, 1)], []).session
    assert session is not None
    assert session.worth_mentioning(A, _answer()) and session.worth_mentioning(B, _answer())
    assert not session.worth_mentioning(A, _answer())  # nothing new
    assert session.worth_mentioning(A, _answer(records=b"batch"))
    assert session.worth_mentioning(B, _answer(high_watermark=11))
    assert session.worth_mentioning(B, _answer(high_watermark=11, error=1))
    stable_moved = FetchedPartition(0, 0, 11, 5, 0)  # a read_committed reader's news too
    assert session.worth_mentioning(B, stable_moved)
    assert not session.worth_mentioning(B, stable_moved)


def test_cache_is_bounded_least_recently_used_first() -> None:
    cache = FetchSessionCache(sessions_max=2)
    first = cache.resolve(0, 0, [], []).session
    second = cache.resolve(0, 0, [], []).session
    assert first is not None and second is not None
    cache.resolve(first.session_id, 1, [], [])  # first is now the most recently used
    cache.resolve(0, 0, [], [])
    assert len(cache) == 2
    assert cache.resolve(second.session_id, 1, [], []).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert cache.resolve(first.session_id, 2, [], []).error == ErrorCode.NONE


def test_partitions_that_returned_records_go_last() -> None:
    cache = FetchSessionCache()
    session = cache.resolve(0, 0, [(A, 0, 1), (B, 0, 1)], []).session
    assert session is not None
    session.served_last([A])
    step = cache.resolve(session.session_id, 1, [(A, 5, 1)], [])
    assert step.wanted == [(B, 0, 1), (A, 5, 1)]  # an update keeps the rotated order
