"""Protobuf: text and base64 inputs normalized to one descriptor, validation through a
descriptor pool, the canonical text (a round-trip property), the serialized form as
confluent-kafka's client reads it, and each compatibility rule in both directions."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from confluent_kafka.schema_registry.common.protobuf import _init_pool, _str_to_proto
from google.protobuf import descriptor_pb2, descriptor_pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.schemas import Dependency, InvalidSchema, SchemaType, parse_schema
from streamhouse.schemas.protobuf_schema import ProtobufSchema
from tests.property_budget import examples

USER = """
syntax = "proto3";
package shop.v1;

import "google/protobuf/timestamp.proto";

message User {
  string name = 1;
  optional int64 id = 2;          // proto3 optional
  map<string, Address> homes = 3;
  oneof contact {
    string email = 4;
    Phone phone = 5;
  }
  google.protobuf.Timestamp created = 6;
  Kind kind = 7;
  reserved 8, 10 to 12;
  reserved "legacy";

  message Phone { string number = 1; }
  enum Kind { KIND_UNKNOWN = 0; KIND_ADMIN = 1; }
}

message Address { repeated string lines = 1; }
"""


def _parse(text: str, *dependencies: Dependency, normalize: bool = False) -> ProtobufSchema:
    parsed = parse_schema(SchemaType.PROTOBUF, text, dependencies, normalize=normalize)
    assert isinstance(parsed, ProtobufSchema)
    return parsed


def _problems(reader: str, writer: str) -> list[str]:
    return [problem.kind for problem in _parse(reader).reader_problems(_parse(writer))]


# --- parsing, canonical text and the serialized form


def test_text_becomes_a_descriptor_as_protoc_would_describe_it() -> None:
    user = _parse(USER).descriptor.message_type[0]
    fields = {item.name: item for item in user.field}
    assert fields["homes"].type_name == ".shop.v1.User.HomesEntry"
    entry = next(nested for nested in user.nested_type if nested.name == "HomesEntry")
    assert entry.options.map_entry
    assert entry.field[1].type_name == ".shop.v1.Address"
    assert fields["phone"].type_name == ".shop.v1.User.Phone"
    assert fields["kind"].type == descriptor_pb2.FieldDescriptorProto.TYPE_ENUM
    assert fields["created"].type_name == ".google.protobuf.Timestamp"
    assert fields["id"].proto3_optional
    assert [oneof.name for oneof in user.oneof_decl] == ["contact", "_id"]
    assert fields["email"].oneof_index == 0 and fields["id"].oneof_index == 1
    assert [(item.start, item.end) for item in user.reserved_range] == [(8, 9), (10, 13)]


def test_the_canonical_text_ignores_formatting_and_parses_back_to_itself() -> None:
    squeezed = " ".join(line.split("//")[0] for line in USER.splitlines())
    one, two = _parse(USER), _parse(squeezed)
    assert one.canonical_text() == two.canonical_text()
    again = _parse(one.canonical_text())
    assert again.canonical_text() == one.canonical_text()
    assert again.descriptor == one.descriptor


def test_serialized_is_what_confluent_kafkas_deserializer_reads() -> None:
    schema = _parse(USER)
    proto = _str_to_proto("user.proto", schema.render("serialized"))
    pool = descriptor_pool.DescriptorPool()
    _init_pool(pool)
    pool.Add(proto)
    user = pool.FindMessageTypeByName("shop.v1.User")
    assert user.fields_by_name["homes"].message_type.GetOptions().map_entry
    assert schema.render(None) == schema.render("anything") == schema.canonical_text()


def test_base64_and_text_of_one_schema_store_the_same_descriptor() -> None:
    schema = _parse(USER)
    pool = descriptor_pool.DescriptorPool()
    _init_pool(pool)
    pool.AddSerializedFile(base64.b64decode(schema.render("serialized")))
    # what confluent-kafka's serializer sends: the file descriptor's own serialized bytes
    sent = base64.b64encode(pool.FindFileByName("schema.proto").serialized_pb).decode()
    assert _parse(sent).canonical_text() == schema.canonical_text()


def _nested_names(messages: Any) -> list[Any]:
    return [(message.name, _nested_names(message.nested_type)) for message in messages]


def test_a_large_real_proto2_file_survives() -> None:
    """descriptor.proto (moved to another package so it does not clash with the preloaded
    one): defaults, nested enums, extension ranges, reserved ranges, repeated options."""
    original = descriptor_pb2.FileDescriptorProto.FromString(
        descriptor_pb2.DESCRIPTOR.serialized_pb
    )
    original.package = "copy.protobuf"
    _rename_types(original.message_type)
    schema = _parse(base64.b64encode(original.SerializeToString()).decode())
    assert _nested_names(schema.descriptor.message_type) == _nested_names(original.message_type)
    assert _parse(schema.canonical_text()).descriptor == schema.descriptor


def _rename_types(messages: Any) -> None:
    for message in messages:
        for item in message.field:
            item.type_name = item.type_name.replace(".google.protobuf.", ".copy.protobuf.")
        _rename_types(message.nested_type)


def test_proto2_required_groups_defaults_and_extensions() -> None:
    text = """
    syntax = "proto2";
    package legacy;
    message Order {
      required int32 id = 1 [default = 7];
      optional string note = 2 [default = "none"];
      optional group Item = 3 { optional int32 count = 1; }
      extensions 100 to max;
    }
    extend Order { optional int32 priority = 100; }
    """
    schema = _parse(text)
    assert _parse(schema.canonical_text()).descriptor == schema.descriptor
    order = schema.descriptor.message_type[0]
    assert order.field[0].label == descriptor_pb2.FieldDescriptorProto.LABEL_REQUIRED
    assert order.field[0].default_value == "7"
    assert order.field[2].type == descriptor_pb2.FieldDescriptorProto.TYPE_GROUP
    assert schema.descriptor.extension[0].extendee == ".legacy.Order"


def test_dependencies_resolve_as_text_or_base64() -> None:
    common = 'syntax = "proto3"; package common; message Money { int64 cents = 1; }'
    dependency = _parse(common)
    order = (
        'syntax = "proto3"; package shop; import "common/money.proto";'
        " message Order { common.Money total = 1; }"
    )
    for text in (common, dependency.render("serialized")):
        parsed = _parse(order, Dependency("common/money.proto", SchemaType.PROTOBUF, text))
        assert parsed.descriptor.message_type[0].field[0].type_name == ".common.Money"
    with pytest.raises(InvalidSchema):
        _parse(order)


def test_google_type_files_are_built_in_as_confluent_kafka_assumes() -> None:
    text = (
        'syntax = "proto3"; import "google/type/date.proto"; import "google/type/money.proto";'
        " message A { google.type.Date d = 1; google.type.Money m = 2; }"
    )
    parsed = _parse(text)
    fields = parsed.descriptor.message_type[0].field
    assert [f.type_name for f in fields] == [".google.type.Date", ".google.type.Money"]


def test_normalize_keeps_declaration_order() -> None:
    text = 'syntax = "proto3"; message A { int32 b = 2; int32 a = 1; }'
    assert _parse(text, normalize=True).canonical_text() == _parse(text).canonical_text()


def test_nested_message_order_survives_among_map_entries() -> None:
    """Confluent's message indexes count nested types, map entries included, in order."""
    text = """
    syntax = "proto3";
    message Outer {
      message First { int32 x = 1; }
      map<string, int32> counts = 1;
      message Second { int32 y = 1; }
      map<string, First> firsts = 2;
      oneof choice { Second second = 3; string label = 4; }
    }
    """
    schema = _parse(text)
    expected = ["First", "CountsEntry", "Second", "FirstsEntry"]
    assert [nested.name for nested in schema.descriptor.message_type[0].nested_type] == expected
    again = _parse(schema.canonical_text())
    assert again.descriptor == schema.descriptor
    assert _parse(schema.render("serialized")).descriptor == schema.descriptor


@pytest.mark.parametrize(
    "text",
    [
        "message {",
        'syntax = "proto3"; message A { Missing m = 1; }',
        'syntax = "proto3"; message A { int32 a = 1; int32 b = 1; }',
        'syntax = "proto3"; import "nowhere.proto"; message A {}',
        'syntax = "proto3"; message A { int32 a = 1 [no_such_option = true]; }',
        'edition = "2023"; message A {}',
    ],
)
def test_invalid_schemas_are_refused(text: str) -> None:
    with pytest.raises(InvalidSchema) as refused:
        _parse(text)
    assert str(refused.value)


# --- the round-trip property


@st.composite
def proto_files(draw: st.DrawFn) -> str:
    count = draw(st.integers(1, 3))
    names = [f"M{index}" for index in range(count)]
    scalars = ["int32", "int64", "uint32", "sint64", "fixed32", "sfixed64", "bool", "string"]
    scalars += ["bytes", "double", "float"]
    lines = ['syntax = "proto3";', "package gen.v1;", "enum Color { RED = 0; BLUE = 1; }"]
    for name in names:
        lines.append(f"message {name} {{")
        inner_first = draw(st.booleans())
        if inner_first:
            lines.append("  message Inner { string s = 1; }")
        numbers = iter(range(1, 100))
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from(["plain", "repeated", "optional", "map", "oneof"]))
            value = draw(st.sampled_from([*scalars, *names, "Color", "Inner"]))
            number = next(numbers)
            if kind == "map":
                lines.append(f"  map<string, {value}> f{number} = {number};")
            elif kind == "oneof":
                other = next(numbers)
                members = f"{value} f{number} = {number}; int32 f{other} = {other};"
                lines.append(f"  oneof o{number} {{ {members} }}")
            else:
                label = "" if kind == "plain" else kind + " "
                lines.append(f"  {label}{value} f{number} = {number};")
        if not inner_first:
            lines.append("  message Inner { string s = 1; }")
        lines.append("}")
    return "\n".join(lines)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(proto_files(), st.booleans())
def test_the_canonical_text_parses_back_to_the_same_descriptor(text: str, normalize: bool) -> None:
    schema = _parse(text, normalize=normalize)
    again = _parse(schema.canonical_text(), normalize=normalize)
    assert again.descriptor == schema.descriptor
    assert again.canonical_text() == schema.canonical_text()
    served = _parse(schema.render("serialized"), normalize=normalize)
    assert served.canonical_text() == schema.canonical_text()
    assert schema.reader_problems(again) == []


# --- compatibility rules


def _message(body: str, package: str = "p", syntax: str = "proto3") -> str:
    return f'syntax = "{syntax}"; package {package}; message M {{ {body} }}'


def test_adding_and_removing_fields_is_compatible_both_ways() -> None:
    old, new = _message("string a = 1;"), _message("string a = 1; int32 b = 2;")
    assert _problems(new, old) == [] and _problems(old, new) == []


def test_renaming_a_field_is_compatible() -> None:
    assert _problems(_message("string b = 1;"), _message("string a = 1;")) == []


@pytest.mark.parametrize(
    ("before", "after", "compatible"),
    [
        ("int32", "int64", True),
        ("uint64", "bool", True),
        ("sint32", "sint64", True),
        ("fixed32", "sfixed32", True),
        ("fixed64", "sfixed64", True),
        ("string", "bytes", True),
        ("int32", "sint32", False),
        ("int32", "fixed32", False),
        ("float", "double", False),
        ("string", "int32", False),
    ],
)
def test_scalar_changes_within_wire_groups(before: str, after: str, compatible: bool) -> None:
    old, new = _message(f"{before} a = 1;"), _message(f"{after} a = 1;")
    expected = [] if compatible else ["FIELD_SCALAR_KIND_CHANGED"]
    assert _problems(new, old) == expected and _problems(old, new) == expected


def test_kind_and_named_type_changes() -> None:
    types = "message A { int32 x = 1; } message B { int32 x = 1; } enum E { Z = 0; }"

    def with_field(field: str) -> str:
        return f'syntax = "proto3"; package p; {types} message M {{ {field} }}'

    assert _problems(with_field("A a = 1;"), with_field("int32 a = 1;")) == ["FIELD_KIND_CHANGED"]
    assert _problems(with_field("E a = 1;"), with_field("A a = 1;")) == ["FIELD_KIND_CHANGED"]
    assert _problems(with_field("B a = 1;"), with_field("A a = 1;")) == ["FIELD_NAMED_TYPE_CHANGED"]
    renamed_map = _problems(
        with_field("map<string, A> b = 1;"), with_field("map<string, A> a = 1;")
    )
    assert renamed_map == []
    assert _problems(with_field("map<string, B> a = 1;"), with_field("map<string, A> a = 1;")) == [
        "FIELD_NAMED_TYPE_CHANGED"
    ]


def test_labels() -> None:
    assert _problems(_message("repeated int32 a = 1;"), _message("int32 a = 1;")) == [
        "FIELD_NUMERIC_LABEL_CHANGED"
    ]
    assert _problems(_message("repeated string a = 1;"), _message("string a = 1;")) == []


def test_removing_a_message_is_incompatible() -> None:
    old = 'syntax = "proto3"; package p; message A {} message B {}'
    new = 'syntax = "proto3"; package p; message A {}'
    assert _problems(new, old) == ["MESSAGE_REMOVED"]
    assert _problems(old, new) == []


def test_package_change_is_incompatible_both_ways() -> None:
    one, two = _message("int32 a = 1;"), _message("int32 a = 1;", package="q")
    assert "PACKAGE_CHANGED" in _problems(one, two) and "PACKAGE_CHANGED" in _problems(two, one)


def test_required_fields_added_or_removed() -> None:
    old = _message("optional int32 a = 1;", syntax="proto2")
    new = _message("optional int32 a = 1; required int32 b = 2;", syntax="proto2")
    assert _problems(new, old) == ["REQUIRED_FIELD_ADDED"]
    assert _problems(old, new) == ["REQUIRED_FIELD_REMOVED"]
    made_required = _message("required int32 a = 1;", syntax="proto2")
    assert _problems(made_required, old) == ["REQUIRED_FIELD_ADDED"]
    assert _problems(old, made_required) == ["REQUIRED_FIELD_REMOVED"]


def test_oneof_rules() -> None:
    in_oneof = _message("oneof o { int32 a = 1; int32 b = 2; }")
    only_a = _message("oneof o { int32 a = 1; }")
    assert _problems(only_a, in_oneof) == ["ONEOF_FIELD_REMOVED"]
    assert _problems(in_oneof, only_a) == []
    outside = _message("int32 a = 1; int32 b = 2;")
    assert _problems(in_oneof, outside) == ["MULTIPLE_FIELDS_MOVED_TO_ONEOF"]
    assert _problems(outside, in_oneof) == []  # out of a oneof: fine
    joined = _message("oneof o { int32 a = 1; int32 b = 2; }")
    assert _problems(joined, _message("oneof o { int32 a = 1; } int32 b = 2;")) == [
        "FIELD_MOVED_TO_EXISTING_ONEOF"
    ]
    one_into_new = _message("int32 a = 1; oneof n { int32 b = 2; }")
    assert _problems(one_into_new, outside) == []


def test_enum_values_keep_their_numbers() -> None:
    old = 'syntax = "proto3"; package p; enum E { A = 0; B = 1; }'
    assert _problems('syntax = "proto3"; package p; enum E { A = 0; B = 2; }', old) == [
        "ENUM_CONST_CHANGED"
    ]
    assert _problems('syntax = "proto3"; package p; enum E { A = 0; B = 1; C = 2; }', old) == []
    assert _problems('syntax = "proto3"; package p; enum E { A = 0; }', old) == []


def test_a_syntax_change_alone_is_compatible() -> None:
    proto2 = _message("optional int32 a = 1;", syntax="proto2")
    assert _problems(_message("int32 a = 1;"), proto2) == []
