"""The quick record decoder answers exactly what the checked reader answers: the same records
for well-formed sections (short and long varints, null and empty keys and values, headers,
negative deltas and attributes), and the same error for sections with a byte changed, bytes
cut off or bytes added."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamhouse.errors import InvalidRecordBatch
from streamhouse.kafka.records import (
    Record,
    _decode_records_section,
    encode_record,
)
from streamhouse.kafka.varint import encode_varint

nullable_bytes = st.none() | st.binary(max_size=300)  # lengths of one and two varint bytes
headers = st.lists(st.tuples(st.text(max_size=12), st.none() | st.binary(max_size=8)), max_size=3)
records = st.builds(
    Record,
    offset_delta=st.integers(-(2**31), 2**31 - 1) | st.integers(0, 200),
    timestamp_delta=st.integers(-(2**63), 2**63 - 1) | st.integers(-100, 100_000),
    key=nullable_bytes,
    value=nullable_bytes,
    headers=headers.map(tuple),
    attributes=st.integers(-128, 127),
)


def checked_only(body: bytes, count: int) -> list[Record]:
    return _decode_records_section(memoryview(body), count, quick=False)


def outcome(decode: object, body: bytes, count: int) -> object:
    try:
        return decode(body, count)  # type: ignore[operator]
    except InvalidRecordBatch as err:
        return ("error", str(err))


def both(body: bytes, count: int) -> tuple[object, object]:
    quick = outcome(lambda b, n: _decode_records_section(memoryview(b), n), body, count)
    return quick, outcome(checked_only, body, count)


@given(st.lists(records, min_size=1, max_size=8))
def test_well_formed_sections_decode_alike(found: list[Record]) -> None:
    body = b"".join(encode_record(record) for record in found)
    quick, checked = both(body, len(found))
    assert quick == checked == found


@given(st.lists(records, min_size=1, max_size=4), st.data())
def test_damaged_sections_decode_or_fail_alike(found: list[Record], data: st.DataObject) -> None:
    body = bytearray(b"".join(encode_record(record) for record in found))
    damage = data.draw(st.sampled_from(("change", "cut", "add")))
    at = data.draw(st.integers(0, len(body) - 1))
    if damage == "change":
        body[at] = data.draw(st.integers(0, 255))
    elif damage == "cut":
        del body[at:]
    else:
        body[at:at] = data.draw(st.binary(min_size=1, max_size=3))
    count = len(found) + data.draw(st.integers(-1, 1))
    quick, checked = both(bytes(body), max(count, 0))
    assert quick == checked


def test_fields_ending_before_or_after_the_length_fail_alike() -> None:
    record = Record(1, 2, b"key", b"value", (("h", b"v"),))
    whole = encode_record(record)
    fields = whole[1:]  # a one-byte length prefix
    for length, padding in ((len(fields) + 1, b"\x00"), (len(fields) - 1, b"")):
        body = encode_varint(length) + fields + padding
        quick, checked = both(body, 1)
        assert quick == checked
        assert isinstance(quick, tuple) and "record 0 of 1" in quick[1]
