"""What each compatibility level asks: which earlier versions a new schema is checked against
and in which direction (reader or writer).

BACKWARD: the new schema, as reader, reads data written with the latest earlier version.
FORWARD: the latest earlier version, as reader, reads data written with the new schema.
FULL: both. The *_TRANSITIVE levels ask the same of every earlier version, not only the latest.
NONE, or no earlier version: always compatible.

Each message names Confluent's errorType, a path, what is wrong and which earlier version it
concerns: "version N" when the caller passes the versions' numbers, else "earlier version #i",
i being the index in `earlier` (0 = the oldest live version).
"""

from __future__ import annotations

from collections.abc import Sequence

from streamhouse.schemas.model import CompatibilityLevel, ParsedSchema, Problem

_BACKWARD = {
    CompatibilityLevel.BACKWARD,
    CompatibilityLevel.BACKWARD_TRANSITIVE,
    CompatibilityLevel.FULL,
    CompatibilityLevel.FULL_TRANSITIVE,
}
_FORWARD = {
    CompatibilityLevel.FORWARD,
    CompatibilityLevel.FORWARD_TRANSITIVE,
    CompatibilityLevel.FULL,
    CompatibilityLevel.FULL_TRANSITIVE,
}
_TRANSITIVE = {
    CompatibilityLevel.BACKWARD_TRANSITIVE,
    CompatibilityLevel.FORWARD_TRANSITIVE,
    CompatibilityLevel.FULL_TRANSITIVE,
}


def incompatibilities(
    level: CompatibilityLevel,
    new: ParsedSchema,
    earlier: Sequence[ParsedSchema],
    *,
    versions: Sequence[int] | None = None,
) -> list[str]:
    """Human-readable reasons `new` may not follow `earlier` (the subject's live versions,
    oldest first) under `level`; empty means compatible. `versions`, if given, are the
    version numbers of `earlier`, for the messages."""
    if level == CompatibilityLevel.NONE or not earlier:
        return []
    if versions is not None and len(versions) != len(earlier):
        raise ValueError("one version number per earlier schema")
    indexes = range(len(earlier)) if level in _TRANSITIVE else [len(earlier) - 1]
    messages: list[str] = []
    for index in indexes:
        old_name = f"version {versions[index]}" if versions else f"earlier version #{index}"
        messages += _against(level, new, earlier[index], old_name)
    return messages


def _against(
    level: CompatibilityLevel, new: ParsedSchema, old: ParsedSchema, old_name: str
) -> list[str]:
    if new.schema_type != old.schema_type:
        return [
            f"TYPE_MISMATCH at /: the new schema is {new.schema_type}"
            f" but {old_name}'s schema is {old.schema_type}"
        ]
    messages: list[str] = []
    if level in _BACKWARD:
        where = f"the new schema reading data written with {old_name}'s schema"
        messages += [_message(problem, where) for problem in new.reader_problems(old)]
    if level in _FORWARD:
        where = f"{old_name}'s schema reading data written with the new schema"
        messages += [_message(problem, where) for problem in old.reader_problems(new)]
    return messages


def _message(problem: Problem, where: str) -> str:
    return f"{problem.kind} at {problem.path}: {problem.detail} ({where})"
