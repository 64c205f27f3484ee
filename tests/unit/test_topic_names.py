"""Topic names follow Kafka's rules; partition counts stay within their bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamhouse.errors import ErrorCode, InvalidPartitions, InvalidTopic
from streamhouse.log.topics import (
    TOPIC_NAME_CHARS_MAX,
    validate_partition_count,
    validate_topic_name,
)

LEGAL = st.text(alphabet="abcXYZ019._-", min_size=1, max_size=TOPIC_NAME_CHARS_MAX).filter(
    lambda name: name not in (".", "..")
)


@given(LEGAL)
def test_legal_names_pass(name: str) -> None:
    validate_topic_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "a" * (TOPIC_NAME_CHARS_MAX + 1),
        "has space",
        "slash/y",
        "ünï",
        "A:b",
        "a:b:c",
        "a:",
    ],
)
def test_illegal_names_are_refused_with_kafkas_code(name: str) -> None:
    with pytest.raises(InvalidTopic) as raised:
        validate_topic_name(name)
    assert raised.value.code == ErrorCode.INVALID_TOPIC_EXCEPTION


def test_partition_counts_from_one_to_the_bound_pass() -> None:
    for count in (1, 7, 10):
        validate_partition_count(count, 10)
    for count in (-(2**31), -1, 0, 11, 2**31 - 1):
        with pytest.raises(InvalidPartitions) as raised:
            validate_partition_count(count, 10)
        assert raised.value.code == ErrorCode.INVALID_PARTITIONS
