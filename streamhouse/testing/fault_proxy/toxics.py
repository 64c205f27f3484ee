"""Toxic definitions: toxiproxy's types, attributes and defaults, and checking API input
against them. What each toxic does to a stream lives in `stages.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

UPSTREAM = "upstream"  # client -> server
DOWNSTREAM = "downstream"  # server -> client
STREAMS = (UPSTREAM, DOWNSTREAM)

# Each type's attributes (all integers, toxiproxy's names and units) and their defaults.
ATTRIBUTE_DEFAULTS: dict[str, dict[str, int]] = {
    "latency": {"latency": 0, "jitter": 0},  # ms, ms
    "bandwidth": {"rate": 0},  # KB/s (1 KB = 1000 bytes); 0 = unlimited
    "slow_close": {"delay": 0},  # ms
    "timeout": {"timeout": 0},  # ms; 0 = never close
    "reset_peer": {"timeout": 0},  # ms; 0 = at once
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},  # bytes, bytes, us
    "limit_data": {"bytes": 0},  # bytes
}


ATTRIBUTE_VALUE_MAX = 2**63 - 1  # toxiproxy's attributes are int64


class BadInput(ValueError):
    """A request the API answers with 400 (toxiproxy's "bad request" family)."""


@dataclass
class Toxic:
    """One toxic on a proxy. `version` grows on every update, so links know to re-roll
    toxicity and restart timers for this toxic (toxiproxy restarts a toxic's stub on update)."""

    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int] = field(default_factory=dict)
    version: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }

    def update(self, body: dict[str, Any]) -> None:
        """Apply an update body: `toxicity` and `attributes` (merged); name, type and stream
        stay as they are, as in toxiproxy."""
        toxicity = _toxicity(body.get("toxicity", self.toxicity))
        merged = {**self.attributes, **_attributes(self.type, body.get("attributes", {}))}
        self.toxicity, self.attributes = toxicity, merged
        self.version += 1


def toxic_from_json(body: Any) -> Toxic:
    """A new toxic from a create body, with toxiproxy's defaults; BadInput if it is wrong."""
    if not isinstance(body, dict):
        raise BadInput("bad request body: a toxic is a JSON object")
    toxic_type = body.get("type")
    if toxic_type not in ATTRIBUTE_DEFAULTS:
        known = ", ".join(ATTRIBUTE_DEFAULTS)
        raise BadInput(f"invalid toxic type {toxic_type!r}; known types: {known}")
    stream = body.get("stream") or DOWNSTREAM
    if stream not in STREAMS:
        raise BadInput("stream was invalid, can be either upstream or downstream")
    name = body.get("name") or f"{toxic_type}_{stream}"
    if not isinstance(name, str):
        raise BadInput("toxic name must be a string")
    attributes = {
        **ATTRIBUTE_DEFAULTS[toxic_type],
        **_attributes(toxic_type, body.get("attributes", {})),
    }
    toxicity = _toxicity(body.get("toxicity", 1.0))
    return Toxic(name, toxic_type, stream, toxicity, attributes)


def _toxicity(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise BadInput(f"toxicity must be a number from 0 to 1, got {value!r}")
    return float(value)


def _attributes(toxic_type: str, given: Any) -> dict[str, int]:
    # Unknown names are refused (toxiproxy ignores them): a misspelt attribute that silently
    # did nothing would make a chaos test pass for the wrong reason.
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise BadInput("attributes must be a JSON object")
    known = ATTRIBUTE_DEFAULTS[toxic_type]
    for key, value in given.items():
        if key not in known:
            raise BadInput(f"{toxic_type} has no attribute {key!r}; it has {', '.join(known)}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadInput(f"attribute {key!r} must be an integer, got {value!r}")
        if not 0 <= value <= ATTRIBUTE_VALUE_MAX:
            raise BadInput(f"attribute {key!r} must be from 0 to {ATTRIBUTE_VALUE_MAX}")
    return dict(given)
