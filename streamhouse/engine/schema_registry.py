"""The schema registry's rules, Confluent's semantics: subjects, versions, global ids, deletes,
compatibility, configs and modes. The registry door (and streamctl through it) only translates.

Ids are content-addressed: one content (type, canonical text, references, metadata, rule set)
has one global id in every subject, kept after every delete, so the same schema registered again
gets its old id. Versions count up per subject from the highest one kept (soft-deleted versions
keep their number; a subject whose versions were all removed starts again at 1). Registering
checks the new schema against the subject's live versions at the subject's compatibility level
(its own config, else the registry's, else BACKWARD); IMPORT mode skips the check and may name
the id and version; READONLY refuses writes. A soft delete hides a version; only a soft-deleted
version can be removed for good; neither is allowed while another schema references it.

Every refusal is a RegistryError carrying Confluent's error code (its first three digits are the
HTTP status) and a message a user can act on.

Subjects here are internal names (`tenancy.names.scoped`), so each belongs to one org; the
registry-wide config and mode are kept per org (`_global_of`), and messages name subjects as
their org knows them. The doors reach this service through `engine.org_registry`, which maps an
org's names and keeps what other orgs have out of its sight.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streamhouse.ports.schemas import (
    GLOBAL,
    SchemaContent,
    SchemaIdTaken,
    SchemaReference,
    SchemaStore,
    StoredSchema,
    SubjectChanged,
    SubjectVersion,
)
from streamhouse.schemas import (
    CompatibilityLevel,
    Dependency,
    InvalidSchema,
    ParsedSchema,
    SchemaType,
    incompatibilities,
    parse_schema,
)
from streamhouse.tenancy.names import DEFAULT_ORG, org_of, scoped, unscoped

SCHEMA_BYTES_MAX = 1024 * 1024
REFERENCES_MAX = 100  # a schema's direct references
DEPENDENCIES_MAX = 1_000  # a schema's transitive dependencies
REFERENCE_DEPTH_MAX = 32
PARSED_SCHEMAS_MAX = 1_024  # parsed schemas kept by id (an id's content never changes)
REGISTER_ATTEMPTS_MAX = 16  # registrations racing on one subject: re-read and decide again
VERSION_MAX = 2**31 - 1
LATEST = "latest"
DEFAULT_LEVEL = CompatibilityLevel.BACKWARD


class Mode:
    READWRITE = "READWRITE"
    READONLY = "READONLY"
    READONLY_OVERRIDE = "READONLY_OVERRIDE"
    IMPORT = "IMPORT"
    ALL = (READWRITE, READONLY, READONLY_OVERRIDE, IMPORT)


# Confluent's error codes (the first three digits are the HTTP status)
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_SOFT_DELETED = 40404
SUBJECT_NOT_SOFT_DELETED = 40405
VERSION_SOFT_DELETED = 40406
VERSION_NOT_SOFT_DELETED = 40407
SUBJECT_LEVEL_COMPATIBILITY_NOT_CONFIGURED = 40408
SUBJECT_LEVEL_MODE_NOT_CONFIGURED = 40409
INCOMPATIBLE_SCHEMA = 409
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY_LEVEL = 42203
INVALID_MODE = 42204
OPERATION_NOT_PERMITTED = 42205
REFERENCE_EXISTS = 42206
INVALID_SUBJECT = 42208
STORE_ERROR = 50001
TIMEOUT = 50002


class RegistryError(Exception):
    """A refusal with Confluent's error code; `status` is the HTTP status it maps to."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message

    @property
    def status(self) -> int:
        return int(str(self.error_code)[:3])


@dataclass(frozen=True)
class SchemaRequest:
    """A schema as a client sends it to register, look up or check."""

    schema: str
    schema_type: SchemaType = SchemaType.AVRO
    references: tuple[SchemaReference, ...] = ()
    metadata: str | None = None  # JSON text
    rule_set: str | None = None  # JSON text
    schema_id: int | None = None  # IMPORT mode only
    version: int | None = None  # IMPORT mode only


@dataclass(frozen=True)
class SubjectSchema:
    """One version of a subject with its schema."""

    subject: str
    version: int
    schema_id: int
    content: SchemaContent
    deleted: bool = False


@dataclass(frozen=True)
class Compatibility:
    is_compatible: bool
    messages: tuple[str, ...]


@dataclass
class RegistryStats:
    """Counters for the metrics door."""

    registrations: int = 0
    compatibility_refusals: int = 0
    validation_refusals: int = 0


def fingerprint(
    schema_type: str,
    text: str,
    references: Sequence[SchemaReference],
    metadata: str | None,
    rule_set: str | None,
) -> str:
    """The digest naming one content; equal for equal contents on every agent."""
    refs = [[ref.name, ref.subject, ref.version] for ref in references]
    document = json.dumps([schema_type, text, refs, metadata, rule_set], separators=(",", ":"))
    return hashlib.sha256(document.encode()).hexdigest()


def canonical_json(value: Any) -> str | None:
    """JSON text kept for `metadata` and `ruleSet`: compact, keys sorted; None stays None."""
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def parse_level(text: str) -> CompatibilityLevel:
    try:
        return CompatibilityLevel(text.upper())
    except ValueError:
        raise RegistryError(
            INVALID_COMPATIBILITY_LEVEL,
            "Invalid compatibility level. Valid values are none, backward, forward, full, "
            "backward_transitive, forward_transitive, and full_transitive",
        ) from None


def parse_mode(text: str) -> str:
    if text.upper() not in Mode.ALL:
        raise RegistryError(
            INVALID_MODE,
            "Invalid mode. Valid values are READWRITE, READONLY, READONLY_OVERRIDE, IMPORT",
        )
    return text.upper()


def parse_version(spec: str | int) -> int | None:
    """A version as a path names it: a number from 1, or `latest`/-1 (None)."""
    text = str(spec)
    if text in (LATEST, "-1"):
        return None
    if text.isdigit() and 1 <= int(text) <= VERSION_MAX:
        return int(text)
    raise RegistryError(
        INVALID_VERSION,
        f"The specified version '{text}' is not a valid version id. Allowed values are "
        f'between [1, 2^31-1] and the string "{LATEST}"',
    )


class SchemaRegistry:
    """Confluent's schema registry over the metadata store, shared by every agent."""

    def __init__(self, store: SchemaStore) -> None:
        self._store = store
        self._parsed: OrderedDict[int, ParsedSchema] = OrderedDict()
        self.stats = RegistryStats()
        # told after every change, so the bucket's metadata snapshot comes to include it
        self.on_changed: list[Callable[[], None]] = []

    def _changed(self) -> None:
        for listener in self.on_changed:
            listener()

    # --- schemas by id ----------------------------------------------------------------------

    async def schema_by_id(self, schema_id: int) -> StoredSchema:
        stored = await self._store.schema(schema_id)
        if stored is None:
            raise schema_not_found(schema_id)
        return stored

    async def render(self, stored: StoredSchema, fmt: str | None) -> str:
        """The schema text served for `?format=` (PROTOBUF's `serialized`: base64)."""
        if not fmt:
            return stored.content.text
        return (await self._parsed_schema(stored)).render(fmt)

    async def schema_versions(self, schema_id: int, *, deleted: bool) -> list[SubjectVersion]:
        await self.schema_by_id(schema_id)
        return await self._store.schema_versions(schema_id, include_deleted=deleted)

    async def schemas(
        self, *, prefix: str, deleted: bool, latest_only: bool, org: str = DEFAULT_ORG
    ) -> list[SubjectSchema]:
        """The versions of `org`'s subjects whose names (as the org knows them) start with
        `prefix`."""
        found: list[SubjectSchema] = []
        for subject in await self._org_subjects(org, deleted, prefix):
            versions = await self._store.subject_versions(subject, include_deleted=deleted)
            for version in versions[-1:] if latest_only else versions:
                found.append(await self._subject_schema(version))
        return found

    # --- subjects ---------------------------------------------------------------------------

    async def subjects(
        self, *, prefix: str = "", deleted: bool, deleted_only: bool, org: str = DEFAULT_ORG
    ) -> list[str]:
        """`org`'s subjects (internal names) whose names as the org knows them start with
        `prefix`."""
        every = await self._org_subjects(org, deleted or deleted_only, prefix)
        if deleted_only:
            live = set(await self._store.subjects(include_deleted=False))
            with_deleted = []
            for subject in every:
                versions = await self._store.subject_versions(subject, include_deleted=True)
                if any(v.deleted for v in versions) or subject not in live:
                    with_deleted.append(subject)
            every = with_deleted
        return every

    async def _org_subjects(self, org: str, include_deleted: bool, prefix: str = "") -> list[str]:
        return [
            subject
            for subject in await self._store.subjects(include_deleted=include_deleted)
            if org_of(subject) == org and local_subject(subject).startswith(prefix)
        ]

    async def versions(self, subject: str, *, deleted: bool, deleted_only: bool) -> list[int]:
        versions = await self._store.subject_versions(
            subject, include_deleted=deleted or deleted_only
        )
        if not versions:
            raise _subject_not_found(subject)
        if deleted_only:
            return [v.version for v in versions if v.deleted]
        return [v.version for v in versions]

    async def version(self, subject: str, spec: str | int, *, deleted: bool) -> SubjectSchema:
        found = await self._find_version(subject, spec, include_deleted=deleted)
        return await self._subject_schema(found)

    async def referenced_by(self, subject: str, spec: str | int) -> list[int]:
        found = await self._find_version(subject, spec, include_deleted=False)
        return await self._referrers(subject, found.version)

    async def _referrers(self, subject: str, version: int) -> list[int]:
        """Ids of the schemas referencing this version that some subject still keeps."""
        kept = []
        for schema_id in await self._store.referencing_schema_ids(subject, version):
            if await self._store.schema_versions(schema_id, include_deleted=True):
                kept.append(schema_id)
        return kept

    # --- register, look up, check -----------------------------------------------------------

    async def register(
        self, subject: str, request: SchemaRequest, *, normalize: bool = False
    ) -> SubjectSchema:
        mode = await self.effective_mode(subject)
        _check_writable(subject, mode)
        if (request.schema_id is not None or request.version is not None) and mode != Mode.IMPORT:
            raise RegistryError(
                OPERATION_NOT_PERMITTED,
                f"Subject {local_subject(subject)} is not in import mode: an id or version may be "
                "given only in IMPORT mode",
            )
        normalize = normalize or await self._normalizes(subject)
        parsed, content = await self._prepare(request, normalize=normalize)
        for _ in range(REGISTER_ATTEMPTS_MAX):
            try:
                return await self._register_once(subject, request, parsed, content, mode)
            except SubjectChanged:
                continue
        raise RegistryError(
            TIMEOUT, f"Subject {local_subject(subject)} kept changing while registering; try again"
        )

    async def _register_once(
        self,
        subject: str,
        request: SchemaRequest,
        parsed: ParsedSchema,
        content: SchemaContent,
        mode: str,
    ) -> SubjectSchema:
        versions = await self._store.subject_versions(subject, include_deleted=True)
        live = [v for v in versions if not v.deleted]
        existing = await self._store.schema_with_fingerprint(content.fingerprint)
        if existing is not None:
            _check_import_id(request, existing.schema_id)
            for version in reversed(live):
                if version.schema_id == existing.schema_id:  # registered here already
                    return SubjectSchema(subject, version.version, existing.schema_id, content)
        if mode != Mode.IMPORT:
            await self._check_against(subject, parsed, live, await self.effective_level(subject))
        latest = versions[-1].version if versions else None
        try:
            added = await self._store.register_version(
                subject,
                content,
                latest_version=latest,
                schema_id=request.schema_id,
                version=request.version,
            )
        except SchemaIdTaken as taken:
            raise RegistryError(OPERATION_NOT_PERMITTED, str(taken)) from None
        self.stats.registrations += 1
        self._changed()
        return SubjectSchema(subject, added.version, added.schema_id, content)

    async def _check_against(
        self,
        subject: str,
        parsed: ParsedSchema,
        live: Sequence[SubjectVersion],
        level: CompatibilityLevel,
    ) -> None:
        problems = await self._problems(level, parsed, live)
        if problems:
            self.stats.compatibility_refusals += 1
            raise RegistryError(
                INCOMPATIBLE_SCHEMA,
                f"Schema being registered is incompatible with an earlier schema for subject "
                f'"{local_subject(subject)}", details: {problems}',
            )

    async def _problems(
        self, level: CompatibilityLevel, parsed: ParsedSchema, live: Sequence[SubjectVersion]
    ) -> list[str]:
        """Why `parsed` cannot follow `live` at `level` (only the versions it looks at are read:
        the latest one unless the level is transitive)."""
        looked_at = live if level.value.endswith("_TRANSITIVE") else live[-1:]
        earlier = [await self.parsed_by_id(v.schema_id) for v in looked_at]
        return incompatibilities(level, parsed, earlier, versions=[v.version for v in looked_at])

    async def lookup(
        self,
        subject: str,
        request: SchemaRequest,
        *,
        normalize: bool = False,
        deleted: bool = False,
    ) -> SubjectSchema:
        """The version of `subject` holding this schema (the newest such one)."""
        versions = await self._store.subject_versions(subject, include_deleted=deleted)
        if not versions:
            raise _subject_not_found(subject)
        normalize = normalize or await self._normalizes(subject)
        _, content = await self._prepare(request, normalize=normalize)
        exact = await self._store.schema_with_fingerprint(content.fingerprint)
        for version in reversed(versions):  # the same content: no need to read each schema
            if exact is not None and version.schema_id == exact.schema_id:
                return SubjectSchema(
                    subject, version.version, exact.schema_id, exact.content, version.deleted
                )
        for version in reversed(versions):
            stored = await self.schema_by_id(version.schema_id)
            if _same_schema(stored.content, content, request):
                return SubjectSchema(
                    subject, version.version, stored.schema_id, stored.content, version.deleted
                )
        raise RegistryError(SCHEMA_NOT_FOUND, "Schema not found")

    async def check(
        self,
        subject: str,
        spec: str | int | None,
        request: SchemaRequest,
        *,
        normalize: bool = False,
    ) -> Compatibility:
        """Whether `request` could be registered: against one version (`spec`), or, with None,
        against the versions the subject's level looks at."""
        normalize = normalize or await self._normalizes(subject)
        parsed, _ = await self._prepare(request, normalize=normalize)
        level = await self.effective_level(subject)
        if spec is None:
            live = await self._store.subject_versions(subject, include_deleted=False)
        else:
            live = [await self._find_version(subject, spec, include_deleted=False)]
            level = _non_transitive(level)
        problems = await self._problems(level, parsed, live)
        return Compatibility(not problems, tuple(problems))

    # --- deletes ----------------------------------------------------------------------------

    async def delete_version(self, subject: str, spec: str | int, *, permanent: bool) -> int:
        _check_writable(subject, await self.effective_mode(subject))
        numbered = parse_version(spec) is not None  # `latest` names the latest live version
        found = await self._find_version(subject, spec, include_deleted=permanent or numbered)
        await self._check_unreferenced(subject, found.version)
        if not permanent:
            if found.deleted:
                raise RegistryError(
                    VERSION_SOFT_DELETED,
                    f"Subject '{local_subject(subject)}' Version {found.version} was soft "
                    "deleted. Set permanent=true to delete permanently",
                )
            await self._store.soft_delete_versions(subject, [found.version])
        elif not found.deleted:
            raise RegistryError(
                VERSION_NOT_SOFT_DELETED,
                f"Subject '{local_subject(subject)}' Version {found.version} was not deleted "
                "first before being permanently deleted",
            )
        else:
            await self._store.remove_versions(subject, [found.version])
        self._changed()
        return found.version

    async def delete_subject(self, subject: str, *, permanent: bool) -> list[int]:
        _check_writable(subject, await self.effective_mode(subject))
        versions = await self._store.subject_versions(subject, include_deleted=True)
        if not versions:
            raise _subject_not_found(subject)
        live = [v.version for v in versions if not v.deleted]
        if permanent and live:
            raise RegistryError(
                SUBJECT_NOT_SOFT_DELETED,
                f"Subject '{local_subject(subject)}' was not deleted first before being "
                "permanently deleted",
            )
        if not permanent and not live:
            raise RegistryError(
                SUBJECT_SOFT_DELETED,
                f"Subject '{local_subject(subject)}' was soft deleted.Set permanent=true to delete "
                "permanently",
            )
        targets = live or [v.version for v in versions]
        for version in targets:
            await self._check_unreferenced(subject, version)
        if permanent:
            await self._store.remove_versions(subject, targets)
            await self._store.set_config(subject, None)
            await self._store.set_mode(subject, None)
        else:
            await self._store.soft_delete_versions(subject, targets)
        self._changed()
        return targets

    async def _check_unreferenced(self, subject: str, version: int) -> None:
        if await self._referrers(subject, version):
            raise RegistryError(
                REFERENCE_EXISTS,
                f"One or more references exist to the schema {{subject={local_subject(subject)}, "
                f"version={version}}}",
            )

    # --- config and mode --------------------------------------------------------------------

    async def config(
        self, subject: str = GLOBAL, *, default_to_global: bool = False
    ) -> dict[str, Any]:
        """The config as GET answers it (`compatibilityLevel`, and whatever else was set)."""
        kept = await self._config_document(subject)
        if kept is None and subject != _global_of(subject):
            if not default_to_global:
                raise RegistryError(
                    SUBJECT_LEVEL_COMPATIBILITY_NOT_CONFIGURED,
                    f"Subject '{local_subject(subject)}' does not have subject-level compatibility "
                    "configured",
                )
            kept = await self._config_document(_global_of(subject))
        kept = dict(kept or {})
        level = kept.pop("compatibility", None) or DEFAULT_LEVEL.value
        return {"compatibilityLevel": level, **kept}

    async def set_config(self, subject: str, update: dict[str, Any]) -> dict[str, Any]:
        """Keep `update` for `subject` (GLOBAL: the registry); answers what PUT echoes."""
        if "compatibility" in update and update["compatibility"] is not None:
            update = {**update, "compatibility": parse_level(str(update["compatibility"])).value}
        kept = {key: value for key, value in update.items() if value is not None}
        await self._store.set_config(subject, json.dumps(kept, sort_keys=True))
        self._changed()
        return kept

    async def delete_config(self, subject: str) -> dict[str, Any]:
        previous = await self.config(subject, default_to_global=subject == _global_of(subject))
        await self._store.set_config(subject, None)
        self._changed()
        return previous

    async def effective_level(self, subject: str) -> CompatibilityLevel:
        for scope in (subject, _global_of(subject)):
            kept = await self._config_document(scope)
            if kept and kept.get("compatibility"):
                return parse_level(str(kept["compatibility"]))
        return DEFAULT_LEVEL

    async def _normalizes(self, subject: str) -> bool:
        for scope in (subject, _global_of(subject)):
            kept = await self._config_document(scope)
            if kept and kept.get("normalize") is not None:
                return bool(kept["normalize"])
        return False

    async def _config_document(self, subject: str) -> dict[str, Any] | None:
        text = await self._store.config(subject)
        return None if text is None else dict(json.loads(text))

    async def mode(self, subject: str = GLOBAL, *, default_to_global: bool = False) -> str:
        kept = await self._store.mode(subject)
        if kept is not None:
            return kept
        if subject != _global_of(subject) and not default_to_global:
            raise RegistryError(
                SUBJECT_LEVEL_MODE_NOT_CONFIGURED,
                f"Subject '{local_subject(subject)}' does not have subject-level mode configured",
            )
        return await self._store.mode(_global_of(subject)) or Mode.READWRITE

    async def effective_mode(self, subject: str) -> str:
        return await self.mode(subject, default_to_global=True)

    async def set_mode(self, subject: str, mode: str, *, force: bool = False) -> str:
        mode = parse_mode(mode)
        if mode == Mode.IMPORT and not force:
            if subject == _global_of(subject):
                has_schemas = bool(await self._org_subjects(org_of(subject), False))
            else:
                has_schemas = bool(
                    await self._store.subject_versions(subject, include_deleted=False)
                )
            if has_schemas:
                raise RegistryError(
                    OPERATION_NOT_PERMITTED,
                    "Cannot import since found existing subjects; use force=true to import "
                    "into a registry or subject that has schemas",
                )
        await self._store.set_mode(subject, mode)
        self._changed()
        return mode

    async def delete_mode(self, subject: str) -> str:
        previous = await self.mode(subject, default_to_global=subject == _global_of(subject))
        await self._store.set_mode(subject, None)
        self._changed()
        return previous

    # --- validation on the produce path -----------------------------------------------------

    async def subject_has_schema(self, subject: str, schema_id: int) -> bool:
        """Whether `schema_id` is a live version of `subject`."""
        versions = await self._store.schema_versions(schema_id, include_deleted=False)
        return any(v.subject == subject for v in versions)

    # --- parsing ----------------------------------------------------------------------------

    async def _prepare(
        self, request: SchemaRequest, *, normalize: bool
    ) -> tuple[ParsedSchema, SchemaContent]:
        if len(request.schema.encode()) > SCHEMA_BYTES_MAX:
            raise RegistryError(
                INVALID_SCHEMA,
                f"Invalid schema: {len(request.schema.encode())} bytes, more than the "
                f"{SCHEMA_BYTES_MAX} a schema may hold",
            )
        dependencies = await self._dependencies(request.references)
        try:
            parsed = parse_schema(
                request.schema_type, request.schema, dependencies, normalize=normalize
            )
        except InvalidSchema as invalid:
            raise RegistryError(
                INVALID_SCHEMA,
                f"Invalid schema {_abbreviated(request.schema)}, details: {invalid}",
            ) from None
        text = parsed.canonical_text()
        content = SchemaContent(
            schema_type=request.schema_type.value,
            text=text,
            references=request.references,
            metadata=request.metadata,
            rule_set=request.rule_set,
            fingerprint=fingerprint(
                request.schema_type.value,
                text,
                request.references,
                request.metadata,
                request.rule_set,
            ),
        )
        return parsed, content

    async def _dependencies(self, references: Sequence[SchemaReference]) -> list[Dependency]:
        """Every schema `references` reach, each after the ones it depends on."""
        if len(references) > REFERENCES_MAX:
            raise RegistryError(
                INVALID_SCHEMA,
                f"Invalid schema: {len(references)} references, more than {REFERENCES_MAX}",
            )
        ordered: dict[str, Dependency] = {}
        for reference in references:
            await self._collect(reference, ordered, depth=1)
        return list(ordered.values())

    async def _collect(
        self, reference: SchemaReference, ordered: dict[str, Dependency], depth: int
    ) -> None:
        if reference.name in ordered:
            return
        if depth > REFERENCE_DEPTH_MAX or len(ordered) >= DEPENDENCIES_MAX:
            raise RegistryError(
                INVALID_SCHEMA,
                f"Invalid schema: references nest deeper than {REFERENCE_DEPTH_MAX} or reach "
                f"more than {DEPENDENCIES_MAX} schemas",
            )
        stored = await self._referenced(reference)
        for inner in stored.content.references:
            await self._collect(inner, ordered, depth + 1)
        ordered[reference.name] = Dependency(
            reference.name, SchemaType(stored.content.schema_type), stored.content.text
        )

    async def _referenced(self, reference: SchemaReference) -> StoredSchema:
        versions = await self._store.subject_versions(reference.subject, include_deleted=False)
        wanted = None if reference.version == -1 else reference.version
        for version in reversed(versions):
            if wanted is None or version.version == wanted:
                return await self.schema_by_id(version.schema_id)
        raise RegistryError(
            INVALID_SCHEMA,
            f"Invalid schema: reference '{reference.name}' names subject "
            f"'{local_subject(reference.subject)}' version {reference.version}, which does not "
            "exist",
        )

    async def parsed_by_id(self, schema_id: int) -> ParsedSchema:
        """The schema of `schema_id`, parsed with its references (kept, bounded, by id)."""
        if schema_id in self._parsed:
            self._parsed.move_to_end(schema_id)
            return self._parsed[schema_id]
        return await self._parsed_schema(await self.schema_by_id(schema_id))

    async def _parsed_schema(self, stored: StoredSchema) -> ParsedSchema:
        cached = self._parsed.get(stored.schema_id)
        if cached is not None:
            return cached
        dependencies = await self._dependencies(stored.content.references)
        try:
            parsed = parse_schema(
                SchemaType(stored.content.schema_type), stored.content.text, dependencies
            )
        except InvalidSchema as invalid:  # a stored schema parsed once; its text is ours
            raise AssertionError(f"stored schema {stored.schema_id} no longer parses") from (
                invalid
            )
        self._parsed[stored.schema_id] = parsed
        if len(self._parsed) > PARSED_SCHEMAS_MAX:
            self._parsed.popitem(last=False)
        return parsed

    async def _find_version(
        self, subject: str, spec: str | int, *, include_deleted: bool
    ) -> SubjectVersion:
        wanted = parse_version(spec)
        versions = await self._store.subject_versions(subject, include_deleted=True)
        if not any(include_deleted or not v.deleted for v in versions):
            raise _subject_not_found(subject)
        if wanted is None:
            visible = [v for v in versions if include_deleted or not v.deleted]
            return visible[-1]
        for version in versions:
            if version.version != wanted:
                continue
            if version.deleted and not include_deleted:
                break
            return version
        raise RegistryError(VERSION_NOT_FOUND, f"Version {wanted} not found.")

    async def _subject_schema(self, version: SubjectVersion) -> SubjectSchema:
        stored = await self.schema_by_id(version.schema_id)
        return SubjectSchema(
            version.subject, version.version, stored.schema_id, stored.content, version.deleted
        )


def schema_not_found(schema_id: int) -> RegistryError:
    return RegistryError(SCHEMA_NOT_FOUND, f"Schema {schema_id} not found")


def local_subject(internal: str) -> str:
    """A subject as its org knows it: what messages name (the org's prefix never shows)."""
    local = unscoped(org_of(internal), internal)
    assert local is not None  # an internal name always belongs to the org it names
    return local


def _global_of(internal: str) -> str:
    """The key of the registry-wide config and mode of the subject's org (GLOBAL for the
    default org, `org:` for another: no subject has an empty name, so none collides)."""
    return scoped(org_of(internal), GLOBAL)


def _subject_not_found(subject: str) -> RegistryError:
    return RegistryError(SUBJECT_NOT_FOUND, f"Subject '{local_subject(subject)}' not found.")


def _check_writable(subject: str, mode: str) -> None:
    if mode in (Mode.READONLY, Mode.READONLY_OVERRIDE):
        raise RegistryError(
            OPERATION_NOT_PERMITTED, f"Subject {local_subject(subject)} is in read-only mode"
        )


def _check_import_id(request: SchemaRequest, schema_id: int) -> None:
    if request.schema_id is not None and request.schema_id != schema_id:
        raise RegistryError(
            OPERATION_NOT_PERMITTED,
            f"Overwrite new schema with id {request.schema_id} is not permitted: this schema "
            f"already has id {schema_id}",
        )


def _same_schema(stored: SchemaContent, asked: SchemaContent, request: SchemaRequest) -> bool:
    """A lookup matches on type, text and references; metadata and rules only when sent."""
    if (stored.schema_type, stored.text, stored.references) != (
        asked.schema_type,
        asked.text,
        asked.references,
    ):
        return False
    if request.metadata is not None and stored.metadata != asked.metadata:
        return False
    return request.rule_set is None or stored.rule_set == asked.rule_set


def _non_transitive(level: CompatibilityLevel) -> CompatibilityLevel:
    return CompatibilityLevel(level.value.removesuffix("_TRANSITIVE"))


def _abbreviated(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
