"""`build`: version-agnostic values to the kio entity of one version. Fields the version lacks
are dropped; a name that is a field in no version of the API is refused (our bug)."""

from __future__ import annotations

import pytest
from kio.schema.api_versions.v3.response import ApiVersionsResponse
from kio.schema.errors import ErrorCode as KioErrorCode
from kio.schema.join_group.v0.request import JoinGroupRequest as JoinGroupRequestV0
from kio.schema.metadata.v1.response import MetadataResponse as MetadataResponseV1
from kio.schema.metadata.v12.response import MetadataResponse as MetadataResponseV12

from streamhouse.kafka.entities import build

TOPIC = {"error_code": 3, "name": "orders", "topic_id": None, "partitions": []}


def test_fields_of_other_versions_are_dropped() -> None:
    values = {"throttle_time": 5, "cluster_id": "c", "controller_id": 0, "topics": [TOPIC]}
    old = build(MetadataResponseV1, values)  # no throttle_time, cluster_id, topic_id in v1
    assert old.controller_id == 0 and old.topics[0].name == "orders"
    assert old.topics[0].error_code == KioErrorCode.unknown_topic_or_partition
    new = build(MetadataResponseV12, values)
    assert new.cluster_id == "c" and new.throttle_time.total_seconds() == 0.005
    request = build(JoinGroupRequestV0, {"group_id": "g", "rebalance_timeout": 1000})  # v1+
    assert request.group_id == "g"


def test_a_name_in_no_version_is_refused_with_the_entity_and_the_key() -> None:
    with pytest.raises(AssertionError, match=r"ApiVersionsResponse has no field 'eror_code'"):
        build(ApiVersionsResponse, {"eror_code": 35, "api_keys": []})
    misspelled = {**TOPIC, "errror_code": 3}
    with pytest.raises(AssertionError, match=r"MetadataResponseTopic has no field 'errror_code'"):
        build(MetadataResponseV1, {"topics": [misspelled]})  # nested entities too
