"""The schema registry's store: schemas by global id, subjects' versions, configs and modes.

The store keeps what the registry decided and nothing more: every rule (compatibility, modes,
what a delete may remove, which content is the same schema) lives in the engine's registry
service. Each call is one transaction, so agents sharing a metadata store never hand out one id
twice, never give one content two ids, and never write two schemas as one version of a subject.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

GLOBAL = ""
"""The subject name under which the registry-wide config and mode are kept."""


@dataclass(frozen=True)
class SchemaReference:
    """A schema's dependency: `name` as the referring schema spells it (an Avro full name, a
    JSON Schema `$ref` URL, a Protobuf import path), found at `subject` / `version`."""

    name: str
    subject: str
    version: int


@dataclass(frozen=True)
class SchemaContent:
    """One schema as stored and served; `fingerprint` identifies it (one content, one id)."""

    schema_type: str  # AVRO, JSON or PROTOBUF
    text: str  # the canonical text served back
    references: tuple[SchemaReference, ...]
    metadata: str | None  # JSON text of Confluent's `metadata`, kept as received
    rule_set: str | None  # JSON text of Confluent's `ruleSet`, kept as received
    fingerprint: str  # digest of every field above


@dataclass(frozen=True)
class StoredSchema:
    schema_id: int
    content: SchemaContent


@dataclass(frozen=True)
class SubjectVersion:
    subject: str
    version: int
    schema_id: int
    deleted: bool  # soft-deleted: hidden unless asked for, still blocks reuse of its number


class SubjectChanged(Exception):
    """The subject's versions moved since the caller read them: read again and decide again."""


class SchemaIdTaken(Exception):
    """An import asked for a schema id another content already has (or for content that already
    has another id), or a version another schema already holds."""


class SchemaStore(ABC):
    """Schemas and subjects, shared by every agent of a cluster."""

    @abstractmethod
    async def schema(self, schema_id: int) -> StoredSchema | None:
        """The schema with this global id, whether or not any subject still lists it."""

    @abstractmethod
    async def schema_with_fingerprint(self, fingerprint: str) -> StoredSchema | None:
        """The schema whose content has this fingerprint, if it was ever registered."""

    @abstractmethod
    async def subject_versions(
        self, subject: str, *, include_deleted: bool
    ) -> list[SubjectVersion]:
        """The subject's versions, lowest first; soft-deleted ones only when asked for."""

    @abstractmethod
    async def subjects(self, *, include_deleted: bool) -> list[str]:
        """Subjects with at least one version (a live one unless `include_deleted`), sorted."""

    @abstractmethod
    async def schema_versions(
        self, schema_id: int, *, include_deleted: bool
    ) -> list[SubjectVersion]:
        """Every subject version that points at this schema, by subject then version."""

    @abstractmethod
    async def register_version(
        self,
        subject: str,
        content: SchemaContent,
        *,
        latest_version: int | None,
        schema_id: int | None = None,
        version: int | None = None,
    ) -> SubjectVersion:
        """Add a version of `subject` pointing at the schema with `content.fingerprint`.

        The schema row is created first if no content has that fingerprint yet: with
        `schema_id` when given (IMPORT mode), else with the next unused global id. The version is
        `version` when given (IMPORT mode), else one past `latest_version`. Raises
        SubjectChanged when the subject's highest version, soft-deleted ones included (None
        when it has none), is no longer `latest_version`; SchemaIdTaken when `schema_id` belongs
        to another content, the content already has an id other than `schema_id` (one content,
        one id), or `version` exists.
        """

    @abstractmethod
    async def soft_delete_versions(self, subject: str, versions: Sequence[int]) -> None:
        """Mark these versions deleted (kept, hidden); versions already deleted stay so."""

    @abstractmethod
    async def remove_versions(self, subject: str, versions: Sequence[int]) -> None:
        """Remove these versions for good. Their schemas keep their ids and content, so the same
        content registered again gets its old id."""

    @abstractmethod
    async def referencing_schema_ids(self, subject: str, version: int) -> list[int]:
        """Ids of schemas whose references name this subject version, lowest first."""

    @abstractmethod
    async def config(self, subject: str) -> str | None:
        """The config kept for `subject` (GLOBAL for the registry's): JSON text, or None."""

    @abstractmethod
    async def set_config(self, subject: str, config: str | None) -> None:
        """Keep `config` (JSON text) for `subject`; None removes it."""

    @abstractmethod
    async def mode(self, subject: str) -> str | None:
        """The mode kept for `subject` (GLOBAL for the registry's), or None."""

    @abstractmethod
    async def set_mode(self, subject: str, mode: str | None) -> None:
        """Keep `mode` for `subject`; None removes it."""
