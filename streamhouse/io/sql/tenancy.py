"""SQL adapter of the tenancy port: orgs, API keys, SCRAM credentials, ACLs and quotas.

Agents racing to create one org, add one ACL or set one quota all succeed: those writes are
INSERT ... ON CONFLICT in either dialect, so the database settles the race and the loser finds
the winner's row, never a constraint error. An org's rows go with it (ON DELETE CASCADE; SQLite
enforces foreign keys on every connection). Bytes are kept as base64 text (what a snapshot
carries); a quota entity as canonical JSON. Lists are sorted here: PostgreSQL's collation may
order names otherwise than Python does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, Table, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from streamhouse.io.sql.schema import acls, api_keys, orgs, quotas, scram_credentials
from streamhouse.io.sql.transactions import SqlAdapter
from streamhouse.ports.tenancy import (
    AclBinding,
    ApiKey,
    KeyTaken,
    Org,
    QuotaChange,
    QuotaEntity,
    QuotaValue,
    ScramCredential,
    TenancyStore,
)

ACL_FIELDS = (
    "resource_type",
    "resource_name",
    "pattern_type",
    "principal",
    "host",
    "operation",
    "permission",
)


class SqlTenancyStore(SqlAdapter, TenancyStore):
    """The tenancy port over SQL: one transaction per call."""

    async def create_org(self, name: str, now_ms: int) -> bool:
        return await self._sql.write("create_org", _create_org, name, now_ms)

    async def orgs(self) -> list[Org]:
        return await self._sql.read("orgs", _select_orgs)

    async def delete_org(self, name: str) -> bool:
        return await self._sql.write("delete_org", _delete_org, name)

    async def add_key(self, key: ApiKey) -> None:
        await self._sql.write("add_key", _add_key, key)

    async def key(self, key_id: str) -> ApiKey | None:
        found = await self._sql.read("key", _select_keys, api_keys.c.key_id == key_id)
        return found[0] if found else None

    async def keys(self, org: str | None = None) -> list[ApiKey]:
        which = None if org is None else api_keys.c.org == org
        return await self._sql.read("keys", _select_keys, which)

    async def revoke_key(self, key_id: str, now_ms: int) -> bool:
        return await self._sql.write("revoke_key", _revoke_key, key_id, now_ms)

    async def set_scram_credential(self, credential: ScramCredential) -> None:
        await self._sql.write("set_scram_credential", _set_scram_credential, credential)

    async def delete_scram_credential(self, user: str, mechanism: str) -> bool:
        return await self._sql.write(
            "delete_scram_credential", _delete_scram_credential, user, mechanism
        )

    async def scram_credentials(self, user: str | None = None) -> list[ScramCredential]:
        which = None if user is None else scram_credentials.c.user == user
        return await self._sql.read("scram_credentials", _select_scram_credentials, which)

    async def acls(self, org: str) -> list[AclBinding]:
        return await self._sql.read("acls", _select_acls, org)

    async def add_acls(self, org: str, bindings: Sequence[AclBinding]) -> None:
        await self._sql.write("add_acls", _add_acls, org, list(bindings))

    async def remove_acls(self, org: str, bindings: Sequence[AclBinding]) -> int:
        return await self._sql.write("remove_acls", _remove_acls, org, list(bindings))

    async def quotas(self, org: str) -> list[QuotaValue]:
        return await self._sql.read("quotas", _select_quotas, org)

    async def alter_quotas(self, org: str, changes: Sequence[QuotaChange]) -> None:
        await self._sql.write("alter_quotas", _alter_quotas, org, list(changes))


# ---------------------------------------------------------------- orgs


def _create_org(conn: Connection, name: str, now_ms: int) -> bool:
    # RETURNING, not rowcount: PostgreSQL's driver leaves an INSERT's rowcount unknown here
    added = _insert_or_skip(conn, orgs).values(name=name, created_ms=now_ms)
    return conn.execute(added.returning(orgs.c.name)).first() is not None


def _select_orgs(conn: Connection) -> list[Org]:
    found = [Org(row.name, int(row.created_ms)) for row in conn.execute(select(orgs))]
    return sorted(found, key=lambda org: org.name)


def _delete_org(conn: Connection, name: str) -> bool:
    return conn.execute(delete(orgs).where(orgs.c.name == name)).rowcount == 1


# ---------------------------------------------------------------- keys


def _add_key(conn: Connection, key: ApiKey) -> None:
    try:
        with conn.begin_nested():  # a savepoint: the check below still runs in the transaction
            conn.execute(insert(api_keys).values(_key_row(key)))
    except IntegrityError as exc:
        taken = select(api_keys.c.key_id).where(api_keys.c.key_id == key.key_id)
        if conn.execute(taken).first() is not None:
            raise KeyTaken(f"API key id {key.key_id!r} exists already") from exc
        raise  # not the id: the org is missing, which the caller was to make sure of


def _key_row(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "org": key.org,
        "role": key.role,
        "secret_hash": key.secret_hash,
        "created_ms": key.created_ms,
        "revoked_ms": key.revoked_ms,
    }


def _select_keys(conn: Connection, which: Any) -> list[ApiKey]:
    query = select(api_keys) if which is None else select(api_keys).where(which)
    found = [_api_key(row) for row in conn.execute(query)]
    return sorted(found, key=lambda key: (key.org, key.key_id))


def _api_key(row: Row[Any]) -> ApiKey:
    revoked = None if row.revoked_ms is None else int(row.revoked_ms)
    return ApiKey(row.key_id, row.org, row.role, row.secret_hash, int(row.created_ms), revoked)


def _revoke_key(conn: Connection, key_id: str, now_ms: int) -> bool:
    revoked = conn.execute(
        update(api_keys)
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_ms.is_(None))
        .values(revoked_ms=now_ms)
    )
    # whether or not it was revoked before: a revoked key never keeps a way to log in
    conn.execute(delete(scram_credentials).where(scram_credentials.c.user == key_id))
    return revoked.rowcount == 1


# ---------------------------------------------------------------- SCRAM credentials


def _set_scram_credential(conn: Connection, credential: ScramCredential) -> None:
    row = {
        "user": credential.user,
        "mechanism": credential.mechanism,
        "org": credential.org,
        "salt": _text_of(credential.salt),
        "iterations": credential.iterations,
        "stored_key": _text_of(credential.stored_key),
        "server_key": _text_of(credential.server_key),
    }
    replaced = ["org", "salt", "iterations", "stored_key", "server_key"]
    conn.execute(_upsert(conn, scram_credentials, ["user", "mechanism"], replaced), row)


def _delete_scram_credential(conn: Connection, user: str, mechanism: str) -> bool:
    deleted = conn.execute(
        delete(scram_credentials).where(
            scram_credentials.c.user == user, scram_credentials.c.mechanism == mechanism
        )
    )
    return deleted.rowcount == 1


def _select_scram_credentials(conn: Connection, which: Any) -> list[ScramCredential]:
    query = select(scram_credentials)
    if which is not None:
        query = query.where(which)
    found = [
        ScramCredential(
            user=row.user,
            org=row.org,
            mechanism=row.mechanism,
            salt=_bytes_of(row.salt),
            iterations=int(row.iterations),
            stored_key=_bytes_of(row.stored_key),
            server_key=_bytes_of(row.server_key),
        )
        for row in conn.execute(query)
    ]
    return sorted(found, key=lambda credential: (credential.user, credential.mechanism))


def _text_of(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bytes_of(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


# ---------------------------------------------------------------- ACLs


def _select_acls(conn: Connection, org: str) -> list[AclBinding]:
    query = select(*(acls.c[field] for field in ACL_FIELDS)).where(acls.c.org == org)
    found = [AclBinding(**row._mapping) for row in conn.execute(query)]
    return sorted(found, key=_acl_order)


def _acl_order(binding: AclBinding) -> tuple[Any, ...]:
    return tuple(getattr(binding, field) for field in ACL_FIELDS)


def _add_acls(conn: Connection, org: str, bindings: list[AclBinding]) -> None:
    if bindings:
        rows = [_acl_row(org, binding) for binding in bindings]
        conn.execute(_insert_or_skip(conn, acls), rows)


def _remove_acls(conn: Connection, org: str, bindings: list[AclBinding]) -> int:
    removed = 0
    for binding in set(bindings):  # one binding named twice is one row
        row = _acl_row(org, binding)
        matching = [acls.c[name] == value for name, value in row.items()]
        removed += conn.execute(delete(acls).where(*matching)).rowcount
    return removed


def _acl_row(org: str, binding: AclBinding) -> dict[str, Any]:
    return {"org": org, **{field: getattr(binding, field) for field in ACL_FIELDS}}


# ---------------------------------------------------------------- quotas


def _select_quotas(conn: Connection, org: str) -> list[QuotaValue]:
    query = select(quotas).where(quotas.c.org == org)
    found = [
        QuotaValue(_entity_of(row.entity), row.key, float(row.value)) for row in conn.execute(query)
    ]
    return sorted(found, key=lambda quota: (_entity_order(quota.entity), quota.key))


def _alter_quotas(conn: Connection, org: str, changes: list[QuotaChange]) -> None:
    for change in changes:
        entity = _text_of_entity(change.entity)
        if change.value is None:
            conn.execute(
                delete(quotas).where(
                    quotas.c.org == org, quotas.c.entity == entity, quotas.c.key == change.key
                )
            )
            continue
        row = {"org": org, "entity": entity, "key": change.key, "value": change.value}
        conn.execute(_upsert(conn, quotas, ["org", "entity", "key"], ["value"]), row)


def _text_of_entity(entity: QuotaEntity) -> str:
    """The entity's one spelling: its pairs by type (an entity names each type once)."""
    return json.dumps(sorted(entity, key=lambda pair: pair[0]), separators=(",", ":"))


def _entity_of(text: str) -> QuotaEntity:
    return tuple(
        (str(kind), None if name is None else str(name)) for kind, name in json.loads(text)
    )


def _entity_order(entity: QuotaEntity) -> tuple[tuple[str, bool, str], ...]:
    """Sortable: a type's default entity (None) before its named ones."""
    return tuple((kind, name is not None, name or "") for kind, name in entity)


# ---------------------------------------------------------------- both dialects


def _insert_or_skip(conn: Connection, table: Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING: a row another agent added first is left as it is."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def _upsert(conn: Connection, table: Table, key: list[str], replaced: list[str]) -> Any:
    """INSERT ... ON CONFLICT (key) DO UPDATE: of agents setting one row at once, each succeeds
    and the later one's values are kept."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    return statement.on_conflict_do_update(
        index_elements=key, set_={name: statement.excluded[name] for name in replaced}
    )
