"""SQL adapter of the schema registry's port: schemas, subjects' versions, configs and modes.

Every registration first locks the schema-id counter's row, so registrations on one store take
turns (SQLite's write lock already makes them; on PostgreSQL the row lock does): an id is
handed out once, a content gets one id, a version number one schema, and the fence on the
subject's latest version is judged with no registration in between. The unique constraints
stay as the last word; a violation that still happens surfaces as the port's errors, never
as the driver's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, Table, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from streamhouse.io.sql.schema import (
    SCHEMA_ID_COUNTER,
    counters,
    registry_configs,
    registry_modes,
    registry_references,
    registry_schemas,
    registry_subject_versions,
)
from streamhouse.io.sql.transactions import SqlAdapter
from streamhouse.ports.schemas import (
    SchemaContent,
    SchemaIdTaken,
    SchemaReference,
    SchemaStore,
    StoredSchema,
    SubjectChanged,
    SubjectVersion,
)

FIRST_SCHEMA_ID = 1
FIRST_VERSION = 1

version_rows = registry_subject_versions


class SqlSchemaStore(SqlAdapter, SchemaStore):
    """The schema registry's port over SQL: one transaction per call."""

    async def schema(self, schema_id: int) -> StoredSchema | None:
        return await self._sql.read(
            "schema", _select_schema, registry_schemas.c.schema_id == schema_id
        )

    async def schema_with_fingerprint(self, fingerprint: str) -> StoredSchema | None:
        return await self._sql.read(
            "schema_with_fingerprint",
            _select_schema,
            registry_schemas.c.fingerprint == fingerprint,
        )

    async def subject_versions(
        self, subject: str, *, include_deleted: bool
    ) -> list[SubjectVersion]:
        return await self._sql.read(
            "subject_versions", _select_versions, version_rows.c.subject == subject, include_deleted
        )

    async def subjects(self, *, include_deleted: bool) -> list[str]:
        return await self._sql.read("subjects", _select_subjects, include_deleted)

    async def schema_versions(
        self, schema_id: int, *, include_deleted: bool
    ) -> list[SubjectVersion]:
        return await self._sql.read(
            "schema_versions",
            _select_versions,
            version_rows.c.schema_id == schema_id,
            include_deleted,
        )

    async def register_version(
        self,
        subject: str,
        content: SchemaContent,
        *,
        latest_version: int | None,
        schema_id: int | None = None,
        version: int | None = None,
    ) -> SubjectVersion:
        return await self._sql.write(
            "register_version",
            _register_version,
            subject,
            content,
            latest_version=latest_version,
            schema_id=schema_id,
            version=version,
        )

    async def soft_delete_versions(self, subject: str, versions: Sequence[int]) -> None:
        await self._sql.write("soft_delete_versions", _soft_delete, subject, list(versions))

    async def remove_versions(self, subject: str, versions: Sequence[int]) -> None:
        await self._sql.write("remove_versions", _remove, subject, list(versions))

    async def referencing_schema_ids(self, subject: str, version: int) -> list[int]:
        return await self._sql.read("referencing_schema_ids", _referencing, subject, version)

    async def config(self, subject: str) -> str | None:
        return await self._sql.read("config", _select_setting, registry_configs, subject)

    async def set_config(self, subject: str, config: str | None) -> None:
        await self._sql.write("set_config", _keep_setting, registry_configs, subject, config)

    async def mode(self, subject: str) -> str | None:
        return await self._sql.read("mode", _select_setting, registry_modes, subject)

    async def set_mode(self, subject: str, mode: str | None) -> None:
        await self._sql.write("set_mode", _keep_setting, registry_modes, subject, mode)


# ---------------------------------------------------------------- reads


def _select_schema(conn: Connection, which: Any) -> StoredSchema | None:
    row = conn.execute(select(registry_schemas).where(which)).first()
    return None if row is None else _stored_schema(conn, row)


def _stored_schema(conn: Connection, row: Row[Any]) -> StoredSchema:
    query = (
        select(registry_references)
        .where(registry_references.c.schema_id == row.schema_id)
        .order_by(registry_references.c.position)
    )
    references = tuple(
        SchemaReference(ref.name, ref.subject, ref.version) for ref in conn.execute(query)
    )
    content = SchemaContent(
        schema_type=row.schema_type,
        text=row.text,
        references=references,
        metadata=row.metadata,
        rule_set=row.rule_set,
        fingerprint=row.fingerprint,
    )
    return StoredSchema(int(row.schema_id), content)


def _select_versions(conn: Connection, which: Any, include_deleted: bool) -> list[SubjectVersion]:
    query = select(version_rows).where(which)
    if not include_deleted:
        query = query.where(version_rows.c.deleted.is_(False))
    found = [
        SubjectVersion(row.subject, row.version, int(row.schema_id), bool(row.deleted))
        for row in conn.execute(query)
    ]
    # sorted here, not by the database: PostgreSQL's collation may order names otherwise
    return sorted(found, key=lambda v: (v.subject, v.version))


def _select_subjects(conn: Connection, include_deleted: bool) -> list[str]:
    query = select(version_rows.c.subject).distinct()
    if not include_deleted:
        query = query.where(version_rows.c.deleted.is_(False))
    return sorted(str(subject) for subject in conn.execute(query).scalars())


def _referencing(conn: Connection, subject: str, version: int) -> list[int]:
    query = (
        select(registry_references.c.schema_id)
        .distinct()
        .where(registry_references.c.subject == subject, registry_references.c.version == version)
        .order_by(registry_references.c.schema_id)
    )
    return [int(schema_id) for schema_id in conn.execute(query).scalars()]


# ---------------------------------------------------------------- registration


def _register_version(
    conn: Connection,
    subject: str,
    content: SchemaContent,
    *,
    latest_version: int | None,
    schema_id: int | None,
    version: int | None,
) -> SubjectVersion:
    next_id = _locked_next_id(conn)  # first: every registration takes its turn here
    found = _highest_version(conn, subject)
    if found != latest_version:
        raise SubjectChanged(
            f"subject {subject!r}: latest version is {found}, not {latest_version}"
        )
    if version is not None and _version_exists(conn, subject, version):
        raise SchemaIdTaken(f"subject {subject!r} already has version {version}")
    if schema_id is None:
        stored_id = _id_of_content(conn, content, next_id)
    else:
        stored_id = _imported_id(conn, content, schema_id)
    _set_next_id(conn, max(next_id, stored_id + 1))
    number = version if version is not None else (latest_version or 0) + 1
    _insert_version(conn, subject, number, stored_id, imported=version is not None)
    return SubjectVersion(subject, number, stored_id, deleted=False)


def _locked_next_id(conn: Connection) -> int:
    """The id counter's value, its row locked until the transaction ends (created if this
    store never handed out an id; never below what the schemas table holds)."""
    row = counters.c.name == SCHEMA_ID_COUNTER
    locked = select(counters.c.next_value).where(row).with_for_update()
    value = conn.execute(locked).scalar()
    if value is None:
        try:
            with conn.begin_nested():  # a concurrent first registration may create it first
                conn.execute(insert(counters).values(name=SCHEMA_ID_COUNTER, next_value=0))
        except IntegrityError:
            pass
        value = conn.execute(locked).scalar_one()
    highest = conn.execute(select(func.max(registry_schemas.c.schema_id))).scalar()
    used = FIRST_SCHEMA_ID if highest is None else int(highest) + 1
    return max(int(value), used)


def _set_next_id(conn: Connection, value: int) -> None:
    conn.execute(
        update(counters).where(counters.c.name == SCHEMA_ID_COUNTER).values(next_value=value)
    )


def _highest_version(conn: Connection, subject: str) -> int | None:
    query = select(func.max(version_rows.c.version)).where(version_rows.c.subject == subject)
    highest = conn.execute(query).scalar()
    return None if highest is None else int(highest)


def _version_exists(conn: Connection, subject: str, version: int) -> bool:
    query = select(version_rows.c.version).where(
        version_rows.c.subject == subject, version_rows.c.version == version
    )
    return conn.execute(query).first() is not None


def _id_of_content(conn: Connection, content: SchemaContent, next_id: int) -> int:
    """The id of this content: its own if it has one, else `next_id`, given to it now."""
    known = _id_with_fingerprint(conn, content.fingerprint)
    if known is not None:
        return known
    return _insert_schema(conn, content, next_id)


def _imported_id(conn: Connection, content: SchemaContent, schema_id: int) -> int:
    """`schema_id`, for content imported with it: refused if either has another already."""
    known = _id_with_fingerprint(conn, content.fingerprint)
    if known is not None and known != schema_id:
        raise SchemaIdTaken(f"this schema already has id {known}, not {schema_id}")
    if known is None:
        holder = select(registry_schemas.c.schema_id).where(
            registry_schemas.c.schema_id == schema_id
        )
        if conn.execute(holder).first() is not None:
            raise SchemaIdTaken(f"schema id {schema_id} belongs to another schema")
        if _insert_schema(conn, content, schema_id) != schema_id:  # given another concurrently
            raise SchemaIdTaken(f"this schema got another id than {schema_id} meanwhile")
    return schema_id


def _id_with_fingerprint(conn: Connection, fingerprint: str) -> int | None:
    query = select(registry_schemas.c.schema_id).where(
        registry_schemas.c.fingerprint == fingerprint
    )
    found = conn.execute(query).scalar()
    return None if found is None else int(found)


def _insert_schema(conn: Connection, content: SchemaContent, schema_id: int) -> int:
    """Give `content` the id `schema_id`, or the id an agent gave it concurrently."""
    try:
        with conn.begin_nested():  # a savepoint: a failed insert leaves the transaction usable
            conn.execute(insert(registry_schemas).values(_schema_row(content, schema_id)))
            references = [
                _reference_row(schema_id, position, reference)
                for position, reference in enumerate(content.references)
            ]
            if references:
                conn.execute(insert(registry_references), references)
    except IntegrityError as exc:
        known = _id_with_fingerprint(conn, content.fingerprint)
        if known is None:  # the id went to other content meanwhile
            raise SchemaIdTaken(f"schema id {schema_id} was taken concurrently") from exc
        return known
    return schema_id


def _schema_row(content: SchemaContent, schema_id: int) -> dict[str, Any]:
    return {
        "schema_id": schema_id,
        "schema_type": content.schema_type,
        "text": content.text,
        "metadata": content.metadata,
        "rule_set": content.rule_set,
        "fingerprint": content.fingerprint,
    }


def _reference_row(schema_id: int, position: int, reference: SchemaReference) -> dict[str, Any]:
    return {
        "schema_id": schema_id,
        "position": position,
        "name": reference.name,
        "subject": reference.subject,
        "version": reference.version,
    }


def _insert_version(
    conn: Connection, subject: str, version: int, schema_id: int, *, imported: bool
) -> None:
    row = {"subject": subject, "version": version, "schema_id": schema_id, "deleted": False}
    try:
        with conn.begin_nested():
            conn.execute(insert(version_rows).values(row))
    except IntegrityError as exc:  # written concurrently since the checks above
        if imported:
            raise SchemaIdTaken(f"subject {subject!r} already has version {version}") from exc
        raise SubjectChanged(f"subject {subject!r} got version {version} meanwhile") from exc


# ---------------------------------------------------------------- deletes


def _soft_delete(conn: Connection, subject: str, numbers: list[int]) -> None:
    conn.execute(
        update(version_rows)
        .where(version_rows.c.subject == subject, version_rows.c.version.in_(numbers))
        .values(deleted=True)
    )


def _remove(conn: Connection, subject: str, numbers: list[int]) -> None:
    conn.execute(
        delete(version_rows).where(
            version_rows.c.subject == subject, version_rows.c.version.in_(numbers)
        )
    )


# ---------------------------------------------------------------- configs and modes


def _select_setting(conn: Connection, table: Table, subject: str) -> str | None:
    value_column = _value_column(table)
    query = select(value_column).where(table.c.subject == subject)
    found = conn.execute(query).scalar()
    return None if found is None else str(found)


def _keep_setting(conn: Connection, table: Table, subject: str, value: str | None) -> None:
    if value is None:
        conn.execute(delete(table).where(table.c.subject == subject))
        return
    name = _value_column(table).name
    conn.execute(_upsert(conn, table, name), {"subject": subject, name: value})


def _value_column(table: Table) -> Any:
    [column] = [column for column in table.columns if column.name != "subject"]
    return column


def _upsert(conn: Connection, table: Table, replaced: str) -> Any:
    """INSERT ... ON CONFLICT (subject) DO UPDATE, in the connection's dialect: two agents
    setting one subject's value at once both succeed, the later one's kept."""
    if conn.dialect.name == "postgresql":
        on_postgres = postgresql.insert(table)
        return on_postgres.on_conflict_do_update(
            index_elements=["subject"], set_={replaced: on_postgres.excluded[replaced]}
        )
    on_sqlite = sqlite.insert(table)
    return on_sqlite.on_conflict_do_update(
        index_elements=["subject"], set_={replaced: on_sqlite.excluded[replaced]}
    )
