"""The schema registry's tables: schemas by global id (never deleted, one per content), their
references, subjects' versions (soft-deleted ones kept), and configs and modes per subject.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_schemas",
        sa.Column("schema_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("schema_type", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=True),
        sa.Column("rule_set", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("schema_id", name="pk_registry_schemas"),
        sa.UniqueConstraint("fingerprint", name="uq_registry_schemas_fingerprint"),
    )
    op.create_table(
        "registry_references",
        sa.Column("schema_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("schema_id", "position", name="pk_registry_references"),
        sa.ForeignKeyConstraint(
            ["schema_id"],
            ["registry_schemas.schema_id"],
            name="fk_registry_references_schema_id_registry_schemas",
        ),
    )
    op.create_index("ix_registry_references_subject", "registry_references", ["subject", "version"])
    op.create_table(
        "registry_subject_versions",
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("schema_id", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "version", name="pk_registry_subject_versions"),
        sa.ForeignKeyConstraint(
            ["schema_id"],
            ["registry_schemas.schema_id"],
            name="fk_registry_subject_versions_schema_id_registry_schemas",
        ),
    )
    op.create_index(
        "ix_registry_subject_versions_schema_id", "registry_subject_versions", ["schema_id"]
    )
    op.create_table(
        "registry_configs",
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("subject", name="pk_registry_configs"),
    )
    op.create_table(
        "registry_modes",
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("mode", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("subject", name="pk_registry_modes"),
    )


def downgrade() -> None:
    op.drop_table("registry_modes")
    op.drop_table("registry_configs")
    op.drop_index("ix_registry_subject_versions_schema_id", table_name="registry_subject_versions")
    op.drop_table("registry_subject_versions")
    op.drop_index("ix_registry_references_subject", table_name="registry_references")
    op.drop_table("registry_references")
    op.drop_table("registry_schemas")
