"""Tenancy's tables: orgs, their API keys, SCRAM credentials, ACLs and quotas (each deleted with
its org), and the embedded org `default`, which every store has from the start.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out, not imported: a migration keeps what it did when the code around it changes
SEEDED_ORG = "default"


def upgrade() -> None:
    orgs = op.create_table(
        "orgs",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_orgs"),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("org", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("secret_hash", sa.String(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
        _org_key("api_keys"),
    )
    op.create_index("ix_api_keys_org", "api_keys", ["org"])
    op.create_table(
        "scram_credentials",
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("mechanism", sa.String(), nullable=False),
        sa.Column("org", sa.String(), nullable=False),
        sa.Column("salt", sa.Text(), nullable=False),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("stored_key", sa.Text(), nullable=False),
        sa.Column("server_key", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("user", "mechanism", name="pk_scram_credentials"),
        _org_key("scram_credentials"),
    )
    op.create_index("ix_scram_credentials_org", "scram_credentials", ["org"])
    acl_fields = (
        "org",
        "resource_type",
        "resource_name",
        "pattern_type",
        "principal",
        "host",
        "operation",
        "permission",
    )
    op.create_table(
        "acls",
        sa.Column("org", sa.String(), nullable=False),
        sa.Column("resource_type", sa.Integer(), nullable=False),
        sa.Column("resource_name", sa.String(), nullable=False),
        sa.Column("pattern_type", sa.Integer(), nullable=False),
        sa.Column("principal", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("operation", sa.Integer(), nullable=False),
        sa.Column("permission", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*acl_fields, name="pk_acls"),
        _org_key("acls"),
    )
    op.create_table(
        "quotas",
        sa.Column("org", sa.String(), nullable=False),
        sa.Column("entity", sa.Text(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("org", "entity", "key", name="pk_quotas"),
        _org_key("quotas"),
    )
    op.bulk_insert(orgs, [{"name": SEEDED_ORG, "created_ms": 0}])


def _org_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["org"], ["orgs.name"], name=f"fk_{table}_org_orgs", ondelete="CASCADE"
    )


def downgrade() -> None:
    op.drop_table("quotas")
    op.drop_table("acls")
    op.drop_index("ix_scram_credentials_org", table_name="scram_credentials")
    op.drop_table("scram_credentials")
    op.drop_index("ix_api_keys_org", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("orgs")
