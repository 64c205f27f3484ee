"""Kafka's topic configs that StreamHouse honours: names, types, defaults and legal values.

Only configs the agent acts on are accepted (an unknown name is INVALID_CONFIG
rather than silently kept); types and bounds are Kafka's, so a value Kafka
refuses is refused here too. `max.message.bytes` defaults to the agent's batch
size bound.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from streamhouse.errors import InvalidConfig
from streamhouse.kafka.varint import INT32_MAX, INT32_MIN

LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
RECORD_OVERHEAD_V0_BYTES = 14  # Kafka's floor for segment.bytes
NO_LIMIT = -1
DAY_MS = 24 * 3600 * 1000
SEGMENT_BYTES_DEFAULT = 1 << 30
KEY_SCHEMA_VALIDATION = "confluent.key.schema.validation"
VALUE_SCHEMA_VALIDATION = "confluent.value.schema.validation"
MAX_MESSAGE_BYTES = "max.message.bytes"
KEY_SUBJECT_NAME_STRATEGY = "confluent.key.subject.name.strategy"
VALUE_SUBJECT_NAME_STRATEGY = "confluent.value.subject.name.strategy"
TOPIC_NAME_STRATEGY = "io.confluent.kafka.serializers.subject.TopicNameStrategy"


class ConfigType(enum.IntEnum):
    """A config's type, with the values DescribeConfigs answers (Kafka's ConfigType)."""

    UNKNOWN = 0  # an override stored before its name was checked
    BOOLEAN = 1
    STRING = 2
    INT = 3
    LONG = 5
    DOUBLE = 6
    LIST = 7


class ConfigSource(enum.IntEnum):
    """Where a config's value comes from, with DescribeConfigs' values (Kafka's ConfigSource)."""

    DYNAMIC_TOPIC_CONFIG = 1
    STATIC_BROKER_CONFIG = 4  # a broker config set when the agent started (flag, environment)
    DEFAULT_CONFIG = 5


@dataclass(frozen=True)
class TopicConfigSpec:
    """One topic config: its type, default and the values it takes."""

    name: str
    type: ConfigType
    default: str
    minimum: int | None = None  # for INT, LONG and DOUBLE
    maximum: int | None = None  # for INT, LONG and DOUBLE (None: the type's own bound)
    choices: frozenset[str] = frozenset()  # for LIST: the items it may hold; STRING: its values

    def check(self, value: str) -> None:
        """Raise InvalidConfig unless `value` is legal for this config."""
        if self.type is ConfigType.LIST:
            items = value.split(",")
            if not items or not set(items) <= self.choices:
                allowed = " and/or ".join(sorted(self.choices))
                raise InvalidConfig(f"{self.name} {value!r} is not {allowed}")
            return
        if self.type is ConfigType.BOOLEAN:
            if value.lower() not in ("true", "false"):
                raise InvalidConfig(f"config {self.name!r} must be true or false, got {value!r}")
            return
        if self.type is ConfigType.STRING:
            if self.choices and value not in self.choices:
                allowed = ", ".join(sorted(self.choices))
                raise InvalidConfig(f"config {self.name!r} must be one of {allowed}, got {value!r}")
            return
        low, high = (INT32_MIN, INT32_MAX) if self.type is ConfigType.INT else (LONG_MIN, LONG_MAX)
        number = self._number(value)
        low = low if self.minimum is None else self.minimum
        high = high if self.maximum is None else self.maximum
        if not low <= number <= high:
            raise InvalidConfig(f"config {self.name!r} must be in [{low}, {high}], got {value}")

    def _number(self, value: str) -> float:
        kind = "a number" if self.type is ConfigType.DOUBLE else "an integer"
        try:
            number = float(value) if self.type is ConfigType.DOUBLE else int(value)
        except ValueError:
            raise InvalidConfig(f"config {self.name!r} needs {kind}, got {value!r}") from None
        if number != number:  # NaN compares with nothing
            raise InvalidConfig(f"config {self.name!r} needs {kind}, got {value!r}")
        return number


@dataclass(frozen=True)
class ConfigSynonym:
    """One place a config's value could come from, most significant first (DescribeConfigs'
    synonyms)."""

    name: str
    value: str
    source: ConfigSource


@dataclass(frozen=True)
class ConfigEntry:
    """A topic or broker config as DescribeConfigs shows it."""

    name: str
    value: str
    type: ConfigType
    source: ConfigSource
    read_only: bool = False
    synonyms: tuple[ConfigSynonym, ...] = ()
    documentation: str | None = None

    @property
    def is_default(self) -> bool:
        return self.source is ConfigSource.DEFAULT_CONFIG


def topic_config_specs(batch_bytes_max: int) -> dict[str, TopicConfigSpec]:
    """Every topic config StreamHouse honours, by name."""
    specs = (
        TopicConfigSpec(
            "cleanup.policy", ConfigType.LIST, "delete", choices=frozenset({"delete", "compact"})
        ),
        TopicConfigSpec("retention.ms", ConfigType.LONG, str(7 * DAY_MS), minimum=NO_LIMIT),
        TopicConfigSpec("retention.bytes", ConfigType.LONG, str(NO_LIMIT)),
        TopicConfigSpec(
            "segment.bytes",
            ConfigType.INT,
            str(SEGMENT_BYTES_DEFAULT),
            minimum=RECORD_OVERHEAD_V0_BYTES,
        ),
        TopicConfigSpec("segment.ms", ConfigType.LONG, str(7 * DAY_MS), minimum=1),
        TopicConfigSpec(MAX_MESSAGE_BYTES, ConfigType.INT, str(batch_bytes_max), minimum=0),
        # log compaction (Kafka's names and defaults)
        TopicConfigSpec("delete.retention.ms", ConfigType.LONG, str(DAY_MS), minimum=0),
        TopicConfigSpec("min.compaction.lag.ms", ConfigType.LONG, "0", minimum=0),
        TopicConfigSpec("max.compaction.lag.ms", ConfigType.LONG, str(LONG_MAX), minimum=1),
        TopicConfigSpec(
            "min.cleanable.dirty.ratio", ConfigType.DOUBLE, "0.5", minimum=0, maximum=1
        ),
        # broker-side schema validation (Confluent Server's names): records must carry the id
        # of a schema registered under the topic's subject; subjects named by topic only
        TopicConfigSpec(KEY_SCHEMA_VALIDATION, ConfigType.BOOLEAN, "false"),
        TopicConfigSpec(VALUE_SCHEMA_VALIDATION, ConfigType.BOOLEAN, "false"),
        TopicConfigSpec(
            KEY_SUBJECT_NAME_STRATEGY,
            ConfigType.STRING,
            TOPIC_NAME_STRATEGY,
            choices=frozenset({TOPIC_NAME_STRATEGY}),
        ),
        TopicConfigSpec(
            VALUE_SUBJECT_NAME_STRATEGY,
            ConfigType.STRING,
            TOPIC_NAME_STRATEGY,
            choices=frozenset({TOPIC_NAME_STRATEGY}),
        ),
    )
    return {spec.name: spec for spec in specs}


def check_topic_configs(
    configs: Mapping[str, str | None], specs: Mapping[str, TopicConfigSpec]
) -> None:
    """Raise InvalidConfig for a name not in `specs` or a value its spec refuses (None, a
    deletion, is always legal)."""
    for name, value in configs.items():
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(sorted(specs))
            raise InvalidConfig(f"unknown topic config {name!r}; known: {known}")
        if value is not None:
            spec.check(value)


def config_entries(
    overrides: Mapping[str, str], specs: Mapping[str, TopicConfigSpec]
) -> list[ConfigEntry]:
    """Every config of a topic with these overrides, by name: its value and source."""
    values = {name: (spec.default, ConfigSource.DEFAULT_CONFIG) for name, spec in specs.items()}
    values.update(
        (name, (value, ConfigSource.DYNAMIC_TOPIC_CONFIG)) for name, value in overrides.items()
    )
    return [
        ConfigEntry(name, value, specs[name].type if name in specs else ConfigType.UNKNOWN, source)
        for name, (value, source) in sorted(values.items())
    ]


def changed_list(current: str, given: str | None, *, append: bool) -> str:
    """A list config after IncrementalAlterConfigs' APPEND (items not yet there, in order) or
    SUBTRACT (every given item removed)."""
    items = [item for item in current.split(",") if item]
    named = [item for item in (given or "").split(",") if item]
    if append:
        return ",".join(items + [item for item in named if item not in items])
    return ",".join(item for item in items if item not in named)
