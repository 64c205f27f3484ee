"""KafkaConnection: framing, headers, kio bodies, bounds, in-order responses, fuzzing."""

from __future__ import annotations

import datetime
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.index import load_response_schema
from kio.schema.api_versions.v0.response import ApiVersionsResponse as ApiVersionsResponseV0
from kio.schema.api_versions.v3.request import ApiVersionsRequest as ApiVersionsRequestV3
from kio.schema.errors import ErrorCode as KioErrorCode
from kio.schema.metadata.v8.request import MetadataRequest as MetadataRequestV8
from kio.schema.produce.v3 import request as produce_v3
from kio.schema.produce.v9 import request as produce_v9
from kio.schema.produce.v9.response import ProduceResponse as ProduceResponseV9
from kio.schema.types import TopicName
from kio.static.primitive import Records, i16, i32, i32Timedelta

from streamhouse.errors import ErrorCode
from streamhouse.kafka import codec
from streamhouse.kafka.apis import ALL_APIS, ApiKey, advertise
from streamhouse.kafka.connection import (
    CONNECTION_CLOSED,
    NEED_DATA,
    ConnectionClosed,
    Event,
    KafkaConnection,
    NeedData,
    ProtocolError,
    Rejected,
    Request,
)
from streamhouse.kafka.produce_wire import ProduceRequestBody
from streamhouse.kafka.records import SimpleRecord, build_batch
from tests.fixtures.kafka_wire import (
    GOLDEN_API_VERSIONS_V3,
    GOLDEN_BATCH,
    GOLDEN_METADATA_V8,
    GOLDEN_PRODUCE_V9,
    VALID_FRAMES,
    api_versions_request,
    decode_response,
    default_request,
    frame,
    request_frame,
    split_response,
)

TABLE = advertise(ALL_APIS)


def produce_v9_request(records: bytes, acks: int = 1) -> produce_v9.ProduceRequest:
    return produce_v9.ProduceRequest(
        acks=i16(acks),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=30)),
        topic_data=(
            produce_v9.TopicProduceData(
                name=TopicName("orders"),
                partition_data=(
                    produce_v9.PartitionProduceData(index=i32(0), records=Records(records)),
                ),
            ),
        ),
    )


def events(connection: KafkaConnection) -> list[Event]:
    found: list[Event] = []
    while not isinstance(event := connection.next_event(), NeedData | ConnectionClosed):
        found.append(event)
        if isinstance(event, ProtocolError):
            break
    return found


def one_event(data: bytes, **options: Any) -> Event:
    connection = KafkaConnection(TABLE, **options)
    connection.receive_data(data)
    return connection.next_event()


# ---------------------------------------------------------------- framing


def test_whole_frame_then_need_data() -> None:
    connection = KafkaConnection(TABLE)
    connection.receive_data(request_frame(api_versions_request(2), correlation_id=5))
    event = connection.next_event()
    assert isinstance(event, Request)
    assert (event.api_key, event.api_version, event.correlation_id) == (18, 2, 5)
    assert event.client_id == "t" and event.expects_response and event.sequence == 0
    assert connection.next_event() is NEED_DATA


def test_byte_at_a_time() -> None:
    data = request_frame(produce_v9_request(b"r" * 300))
    connection = KafkaConnection(TABLE)
    for byte in data[:-1]:
        connection.receive_data(bytes([byte]))
        assert connection.next_event() is NEED_DATA
    connection.receive_data(data[-1:])
    event = connection.next_event()
    assert isinstance(event, Request) and event.size == len(data) - 4


def test_several_frames_in_one_chunk_and_a_partial_tail() -> None:
    one = request_frame(api_versions_request(1), correlation_id=1)
    two = request_frame(produce_v9_request(b"x"), correlation_id=2)
    connection = KafkaConnection(TABLE)
    connection.receive_data(one + two + two[:10])
    found = events(connection)
    assert [e.correlation_id for e in found if isinstance(e, Request)] == [1, 2]
    connection.receive_data(two[10:])
    (last,) = events(connection)
    assert isinstance(last, Request) and last.sequence == 2


def test_clean_close_and_close_inside_a_frame() -> None:
    connection = KafkaConnection(TABLE)
    connection.receive_data(b"")
    assert connection.next_event() is CONNECTION_CLOSED
    connection = KafkaConnection(TABLE)
    connection.receive_data(request_frame(api_versions_request(0))[:6])
    connection.receive_data(b"")
    event = connection.next_event()
    assert isinstance(event, ProtocolError) and "inside a frame" in event.message


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (struct.pack(">i", 1025) + b"\x00" * 8, "exceeds frame_bytes_max=1024"),
        (b"GET / HTTP/1.1\r\n", "looks like HTTP"),
        (struct.pack(">i", -5), "not positive"),
        (struct.pack(">i", 0), "not positive"),
        (struct.pack(">i", 7) + b"\x00" * 7, "truncated request header"),
        (struct.pack(">ihhi", 8, 18, 0, 1), "no client id length"),
        (struct.pack(">ihhih", 12, 18, 0, 1, 5) + b"ab", "client id of 5 bytes"),
        (struct.pack(">ihhih", 12, 18, 0, 1, 2) + b"\xff\xfe", "not UTF-8"),
        (struct.pack(">ihhih", 10, 999, 0, 1, -1), "api key 999 (UNKNOWN) is not served"),
        (struct.pack(">ihhih", 10, 38, 1, 1, -1), "CREATE_DELEGATION_TOKEN) is not served"),
        (struct.pack(">ihhih", 10, 3, 99, 1, -1), "version outside v0..v13"),
        (struct.pack(">ihhih", 10, 0, 99, 1, -1), "version outside v0..v13"),
    ],
)
def test_malformed_frames_close_the_connection(data: bytes, words: str) -> None:
    event = one_event(data, frame_bytes_max=1024)
    assert isinstance(event, ProtocolError), event
    assert words in event.message, event.message


def test_unparseable_body_closes_and_trailing_bytes_are_ignored() -> None:
    good = codec.encode_body(produce_v9_request(b"abc"))
    truncated = one_event(frame(0, 9, 1, good[:-3]))
    assert isinstance(truncated, ProtocolError) and "malformed body" in truncated.message
    trailing = one_event(frame(0, 9, 1, good + b"\x00"))
    assert isinstance(trailing, Request), "trailing body bytes are ignored, as Kafka does"


def test_hostile_array_count_is_refused_before_kio() -> None:
    # kio 0.6.5 preallocates arrays from the wire count: this frame aborts the process
    # (Rust OOM) if it ever reaches kio's reader.
    body = b"\x00" + b"\xff\xff\x01\x00" + struct.pack(">i", 30000) + b"\xff\xff\xff\xff\x7f"
    event = one_event(frame(0, 9, 1, body))
    assert isinstance(event, ProtocolError) and "array of" in event.message


def test_a_protocol_error_is_final() -> None:
    connection = KafkaConnection(TABLE)
    connection.receive_data(struct.pack(">i", -1))
    first = connection.next_event()
    connection.receive_data(request_frame(api_versions_request(0)))
    assert connection.next_event() == first


# ---------------------------------------------------------------- ApiVersions


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_api_versions_round_trip(version: int) -> None:
    connection = KafkaConnection(TABLE)
    connection.receive_data(request_frame(api_versions_request(version), correlation_id=42))
    request = connection.next_event()
    assert isinstance(request, Request)
    schema: Any = load_response_schema(ApiKey.API_VERSIONS, version)
    response = codec.default_entity(schema, KioErrorCode.none, {})
    data = connection.send_response(request, response)
    # ApiVersions responses always use response header v0 (no tagged fields), so a client
    # can read them whatever version it asked for.
    correlation_id, body, rest = split_response(data, flexible_header=False)
    assert (correlation_id, rest) == (42, b"")
    assert decode_response(ApiKey.API_VERSIONS, version, body) == response


def test_unknown_api_versions_version_gets_v0_with_unsupported_version() -> None:
    # v99 is flexible (>= 3): header v2, and the body is ignored, as Kafka does.
    event = one_event(frame(ApiKey.API_VERSIONS, 99, 9, b"\x07garbage"))
    assert isinstance(event, Rejected) and event.error == ErrorCode.UNSUPPORTED_VERSION
    connection = KafkaConnection(TABLE)
    connection.receive_data(frame(ApiKey.API_VERSIONS, 99, 9, b"\x07garbage"))
    rejected = connection.next_event()
    assert isinstance(rejected, Rejected)
    data = connection.send_error(rejected.request, rejected.error)
    correlation_id, body, _ = split_response(data, flexible_header=False)
    response = decode_response(ApiKey.API_VERSIONS, 0, body)
    assert isinstance(response, ApiVersionsResponseV0) and correlation_id == 9
    assert response.error_code == KioErrorCode.unsupported_version
    listed = {int(a.api_key): (a.min_version, a.max_version) for a in response.api_keys}
    assert listed[ApiKey.API_VERSIONS] == (0, 4)
    assert listed[ApiKey.PRODUCE][0] == 0


def test_golden_kafka_python_frames() -> None:
    connection = KafkaConnection(TABLE)
    connection.receive_data(GOLDEN_API_VERSIONS_V3 + GOLDEN_METADATA_V8 + GOLDEN_PRODUCE_V9)
    versions, metadata, produce = events(connection)
    assert isinstance(versions, Request) and versions.client_id == "golden"
    assert isinstance(versions.body, ApiVersionsRequestV3)
    assert versions.body.client_software_version == "3.0.12"
    assert isinstance(metadata, Request) and isinstance(metadata.body, MetadataRequestV8)
    assert [t.name for t in metadata.body.topics or ()] == ["orders"]
    assert isinstance(produce, Request) and produce.correlation_id == 3
    assert isinstance(produce.body, ProduceRequestBody)
    assert produce.body.topic_data[0].partition_data[0].records == GOLDEN_BATCH


# ---------------------------------------------------------------- Produce


def test_produce_v9_records_bytes_intact() -> None:
    batch = build_batch([SimpleRecord(b"key", b"v" * 16384, timestamp_ms=1)])
    event = one_event(request_frame(produce_v9_request(batch)))
    assert isinstance(event, Request) and isinstance(event.body, ProduceRequestBody)
    assert event.body.topic_data[0].partition_data[0].records == batch


def test_produce_acks_zero_expects_no_response_and_blocks_nothing() -> None:
    connection = KafkaConnection(TABLE)
    connection.receive_data(
        request_frame(produce_v9_request(b"a", acks=0), 1)
        + request_frame(api_versions_request(0), 2)
    )
    fire_and_forget, versions = events(connection)
    assert isinstance(fire_and_forget, Request) and not fire_and_forget.expects_response
    assert isinstance(versions, Request)
    assert connection.send_error(fire_and_forget, ErrorCode.CORRUPT_MESSAGE) == b""
    assert connection.send_error(versions, ErrorCode.INVALID_REQUEST)[4:8] == b"\x00\x00\x00\x02"
    assert connection.responses_pending == 0


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_below_v3_is_rejected_per_partition(version: int) -> None:
    # The v0..v2 body is v3's without the transactional id.
    body = codec.encode_body(produce_v3_request())[2:]
    connection = KafkaConnection(TABLE)
    connection.receive_data(frame(ApiKey.PRODUCE, version, 4, body))
    event = connection.next_event()
    assert isinstance(event, Rejected) and event.error == ErrorCode.UNSUPPORTED_VERSION
    _, response, _ = split_response(connection.send_error(event.request, event.error), False)
    partition = struct.pack(">ihq", 0, 35, -1) + (struct.pack(">q", -1) if version >= 2 else b"")
    expected = struct.pack(">ih", 1, 6) + b"orders" + struct.pack(">i", 1) + partition
    assert response == expected + (struct.pack(">i", 0) if version >= 1 else b"")


def produce_v3_request() -> produce_v3.ProduceRequest:
    partition = produce_v3.PartitionProduceData(index=i32(0), records=Records(b"old"))
    return produce_v3.ProduceRequest(
        transactional_id=None,
        acks=i16(1),
        timeout=_ms(1000),
        topic_data=(
            produce_v3.TopicProduceData(name=TopicName("orders"), partition_data=(partition,)),
        ),
    )


def test_produce_error_mirrors_partitions_with_flexible_header() -> None:
    connection = KafkaConnection(TABLE)
    connection.receive_data(request_frame(produce_v9_request(b"x"), 11))
    request = connection.next_event()
    assert isinstance(request, Request)
    correlation_id, body, _ = split_response(
        connection.send_error(request, ErrorCode.NOT_LEADER_OR_FOLLOWER), flexible_header=True
    )
    response = decode_response(0, 9, body)
    assert isinstance(response, ProduceResponseV9) and correlation_id == 11
    (partition,) = response.responses[0].partition_responses
    assert (response.responses[0].name, partition.index) == ("orders", 0)
    assert partition.error_code == KioErrorCode.not_leader_or_follower


def _same_body(ours: Any, kio_entity: Any) -> bool:
    """Equal bodies; Produce's is our own (kafka/produce_wire.py), compared field by field."""
    if not isinstance(ours, ProduceRequestBody):
        return bool(ours == kio_entity)
    return (ours.transactional_id, ours.acks, ours.timeout, len(ours.topic_data)) == (
        kio_entity.transactional_id,
        kio_entity.acks,
        kio_entity.timeout,
        len(kio_entity.topic_data),
    )


def test_every_served_api_decodes_and_builds_an_error_response() -> None:
    for key, api in ALL_APIS.items():
        for version in range(api.served_min, api.max_version + 1):
            request = default_request(key, version)
            connection = KafkaConnection(TABLE)
            connection.receive_data(request_frame(request))
            event = connection.next_event()
            assert isinstance(event, Request) and _same_body(event.body, request), (key, version)
            data = connection.send_error(event, ErrorCode.INVALID_REQUEST)
            if not event.expects_response:  # Produce with acks=0
                assert data == b""
                continue
            flexible = load_response_schema(key, version).__flexible__ and key != 18
            _, body, rest = split_response(data, flexible)
            assert rest == b""
            decode_response(key, version, body)


# ---------------------------------------------------------------- response order


def test_out_of_order_completion_comes_out_in_request_order() -> None:
    connection = KafkaConnection(TABLE)
    connection.receive_data(b"".join(request_frame(api_versions_request(0), n) for n in range(4)))
    requests = [e for e in events(connection) if isinstance(e, Request)]
    schema: Any = load_response_schema(ApiKey.API_VERSIONS, 0)
    response = schema(error_code=KioErrorCode.none, api_keys=())
    assert connection.send_response(requests[2], response) == b""
    assert connection.send_response(requests[1], response) == b""
    assert connection.responses_pending == 4
    out = connection.send_response(requests[0], response)
    order = []
    while out:
        correlation_id, _, out = split_response(out, flexible_header=False)
        order.append(correlation_id)
    assert order == [0, 1, 2]
    assert split_response(connection.send_response(requests[3], response), False)[0] == 3
    assert connection.responses_pending == 0


def test_misuse_of_send_response_is_refused() -> None:
    connection = KafkaConnection(TABLE)
    connection.receive_data(request_frame(api_versions_request(0)))
    request = connection.next_event()
    assert isinstance(request, Request)
    with pytest.raises(ValueError, match="answers api 0"):
        connection.send_response(request, ProduceResponseV9(responses=(), throttle_time=_ms(0)))
    connection.send_error(request, ErrorCode.INVALID_REQUEST)
    with pytest.raises(ValueError, match="answered already"):
        connection.send_error(request, ErrorCode.INVALID_REQUEST)


def _ms(value: int) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=value))


# ---------------------------------------------------------------- the table


def test_advertise_always_includes_api_versions_and_caps_versions() -> None:
    table = advertise([ApiKey.PRODUCE], max_versions={ApiKey.PRODUCE: 9})
    produce = table.get(ApiKey.PRODUCE)
    assert produce is not None and (produce.min_version, produce.served_min) == (0, 3)
    assert produce.max_version == 9 and table.get(ApiKey.API_VERSIONS) is not None
    assert table.get(ApiKey.FETCH) is None and len(table) == 2
    with pytest.raises(ValueError, match="below v3"):
        advertise([ApiKey.PRODUCE], max_versions={ApiKey.PRODUCE: 2})


def test_only_advertised_keys_are_served() -> None:
    connection = KafkaConnection(advertise([]))
    connection.receive_data(request_frame(produce_v9_request(b"x")))
    event = connection.next_event()
    assert isinstance(event, ProtocolError) and "api key 0 (PRODUCE)" in event.message


# ---------------------------------------------------------------- fuzz


def _feed_and_drain(data: bytes, chunk: int) -> list[Event]:
    connection = KafkaConnection(TABLE, frame_bytes_max=4096)
    found: list[Event] = []
    for start in range(0, len(data), chunk):
        connection.receive_data(data[start : start + chunk])
        found += events(connection)
    connection.receive_data(b"")
    found.append(connection.next_event())
    for event in found:
        assert isinstance(event, Request | Rejected | ProtocolError | ConnectionClosed)
        if isinstance(event, Request | Rejected):
            request = event.request if isinstance(event, Rejected) else event
            connection.send_error(request, ErrorCode.INVALID_REQUEST)
    return found


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_fuzz_random_bytes(data: bytes, chunk: int) -> None:
    _feed_and_drain(data, chunk)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(VALID_FRAMES),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    st.integers(-8, 8),
    st.integers(1, 97),
)
def test_fuzz_mutated_valid_frames(
    valid: bytes, flips: list[tuple[int, int]], cut: int, chunk: int
) -> None:
    data = bytearray(valid)
    for position, value in flips:
        data[position % len(data)] = value
    data = data[:cut] if cut < 0 else data + bytes(cut)
    _feed_and_drain(bytes(data) * 2, chunk)
