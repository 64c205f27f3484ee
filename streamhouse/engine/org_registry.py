"""The schema registry as one org sees it: the org isolation rules every registry door applies.

Subjects are kept under their internal names (`tenancy.names.scoped`: `acme:orders-value` for
org acme's `orders-value`; the default org's subjects keep their bare names), so the broker's
validation of topic `acme:orders` finds subject `acme:orders-value`. An org names and sees only
its own subjects: names are scoped on the way in and unscoped on the way out (references too),
listings hold only the org's subjects, and a schema id is visible to an org only while one of
its subjects (soft-deleted versions included) uses it; any other id is as unknown as one never
issued. The registry-wide config and mode are the org's own. A default-org subject that would
read as another org's (`acme:x`) is refused, as is an empty subject name.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from streamhouse.engine.schema_registry import (
    INVALID_SUBJECT,
    Compatibility,
    RegistryError,
    SchemaRegistry,
    SchemaRequest,
    SubjectSchema,
    local_subject,
    schema_not_found,
)
from streamhouse.ports.schemas import GLOBAL, SchemaContent, StoredSchema, SubjectVersion
from streamhouse.schemas import ParsedSchema
from streamhouse.tenancy.names import org_of, scoped


class OrgRegistry:
    """`registry` as org `org` sees it; the methods are the registry's, in the org's names."""

    def __init__(self, registry: SchemaRegistry, org: str) -> None:
        self._registry = registry
        self.org = org

    # --- schemas by id ----------------------------------------------------------------------

    async def schema_by_id(self, schema_id: int) -> StoredSchema:
        await self._check_visible(schema_id)
        stored = await self._registry.schema_by_id(schema_id)
        return replace(stored, content=_local_content(stored.content))

    async def parsed_schema(self, schema_id: int) -> ParsedSchema:
        """The schema of `schema_id` parsed with its references, for reading and writing data."""
        await self._check_visible(schema_id)
        return await self._registry.parsed_by_id(schema_id)

    async def render(self, stored: StoredSchema, fmt: str | None) -> str:
        """The text served for `?format=` of a schema this view answered."""
        if not fmt:
            return stored.content.text
        # rendering resolves references, which only the internal names find
        return await self._registry.render(await self._registry.schema_by_id(stored.schema_id), fmt)

    async def schema_versions(self, schema_id: int, *, deleted: bool) -> list[SubjectVersion]:
        await self._check_visible(schema_id)
        versions = await self._registry.schema_versions(schema_id, deleted=deleted)
        return [
            replace(v, subject=local_subject(v.subject))
            for v in versions
            if org_of(v.subject) == self.org
        ]

    async def schemas(
        self, *, prefix: str, deleted: bool, latest_only: bool
    ) -> list[SubjectSchema]:
        found = await self._registry.schemas(
            prefix=prefix, deleted=deleted, latest_only=latest_only, org=self.org
        )
        return [_local_version(item) for item in found]

    async def _check_visible(self, schema_id: int) -> None:
        versions = await self._registry.schema_versions(schema_id, deleted=True)
        if not any(org_of(v.subject) == self.org for v in versions):
            raise schema_not_found(schema_id)  # exactly as an id never issued

    # --- subjects ---------------------------------------------------------------------------

    async def subjects(self, *, prefix: str = "", deleted: bool, deleted_only: bool) -> list[str]:
        found = await self._registry.subjects(
            prefix=prefix, deleted=deleted, deleted_only=deleted_only, org=self.org
        )
        return [local_subject(subject) for subject in found]

    async def versions(self, subject: str, *, deleted: bool, deleted_only: bool) -> list[int]:
        return await self._registry.versions(
            self._internal(subject), deleted=deleted, deleted_only=deleted_only
        )

    async def version(self, subject: str, spec: str | int, *, deleted: bool) -> SubjectSchema:
        found = await self._registry.version(self._internal(subject), spec, deleted=deleted)
        return _local_version(found)

    async def referenced_by(self, subject: str, spec: str | int) -> list[int]:
        return await self._registry.referenced_by(self._internal(subject), spec)

    # --- register, look up, check -----------------------------------------------------------

    async def register(
        self, subject: str, request: SchemaRequest, *, normalize: bool = False
    ) -> SubjectSchema:
        added = await self._registry.register(
            self._internal(subject), self._request(request), normalize=normalize
        )
        return _local_version(added)

    async def lookup(
        self,
        subject: str,
        request: SchemaRequest,
        *,
        normalize: bool = False,
        deleted: bool = False,
    ) -> SubjectSchema:
        found = await self._registry.lookup(
            self._internal(subject), self._request(request), normalize=normalize, deleted=deleted
        )
        return _local_version(found)

    async def check(
        self,
        subject: str,
        spec: str | int | None,
        request: SchemaRequest,
        *,
        normalize: bool = False,
    ) -> Compatibility:
        return await self._registry.check(
            self._internal(subject), spec, self._request(request), normalize=normalize
        )

    # --- deletes ----------------------------------------------------------------------------

    async def delete_version(self, subject: str, spec: str | int, *, permanent: bool) -> int:
        return await self._registry.delete_version(
            self._internal(subject), spec, permanent=permanent
        )

    async def delete_subject(self, subject: str, *, permanent: bool) -> list[int]:
        return await self._registry.delete_subject(self._internal(subject), permanent=permanent)

    # --- config and mode (GLOBAL: the org's own registry-wide setting) ----------------------

    async def config(
        self, subject: str = GLOBAL, *, default_to_global: bool = False
    ) -> dict[str, Any]:
        key = self._setting_key(subject)
        return await self._registry.config(key, default_to_global=default_to_global)

    async def set_config(self, subject: str, update: dict[str, Any]) -> dict[str, Any]:
        return await self._registry.set_config(self._setting_key(subject), update)

    async def delete_config(self, subject: str) -> dict[str, Any]:
        return await self._registry.delete_config(self._setting_key(subject))

    async def mode(self, subject: str = GLOBAL, *, default_to_global: bool = False) -> str:
        key = self._setting_key(subject)
        return await self._registry.mode(key, default_to_global=default_to_global)

    async def set_mode(self, subject: str, mode: str, *, force: bool = False) -> str:
        return await self._registry.set_mode(self._setting_key(subject), mode, force=force)

    async def delete_mode(self, subject: str) -> str:
        return await self._registry.delete_mode(self._setting_key(subject))

    # --- names ------------------------------------------------------------------------------

    def _internal(self, subject: str) -> str:
        """The internal name of the org's `subject`."""
        if not subject:
            raise RegistryError(INVALID_SUBJECT, "A subject needs a name: it may not be empty")
        try:
            return scoped(self.org, subject)
        except ValueError:
            raise RegistryError(
                INVALID_SUBJECT,
                f"Invalid subject '{subject}': it would read as org '{org_of(subject)}''s "
                "subject; name it without the 'org:' prefix",
            ) from None

    def _setting_key(self, subject: str) -> str:
        """Where a config or mode is kept: the subject's internal name, or the org's global
        key for GLOBAL (no subject name is empty, so the two never meet)."""
        if subject == GLOBAL:
            return scoped(self.org, GLOBAL)
        return self._internal(subject)

    def _request(self, request: SchemaRequest) -> SchemaRequest:
        """`request` with its references naming the org's subjects."""
        references = tuple(
            replace(reference, subject=self._internal(reference.subject))
            for reference in request.references
        )
        return replace(request, references=references)


def _local_content(content: SchemaContent) -> SchemaContent:
    if not content.references:
        return content
    references = tuple(
        replace(reference, subject=local_subject(reference.subject))
        for reference in content.references
    )
    return replace(content, references=references)


def _local_version(found: SubjectSchema) -> SubjectSchema:
    return replace(
        found, subject=local_subject(found.subject), content=_local_content(found.content)
    )
