"""Initial metadata schema: topics, partitions, objects, segments, flush outcomes.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _create_topics()
    _create_partitions()
    _create_objects()
    _create_segments()
    _create_flush_outcomes()


def downgrade() -> None:
    op.drop_table("flush_outcomes")
    op.drop_index("ix_segments_object_key", table_name="segments")
    op.drop_table("segments")
    op.drop_table("objects")
    op.drop_table("partitions")
    op.drop_table("topics")


def _create_topics() -> None:
    op.create_table(
        "topics",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("partition_count", sa.Integer(), nullable=False),
        sa.Column("configs", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_topics"),
    )


def _create_partitions() -> None:
    op.create_table(
        "partitions",
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("leader_agent", sa.String(), nullable=True),
        sa.Column("leader_epoch", sa.BigInteger(), nullable=False),
        sa.Column("lease_expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("durable_end_offset", sa.BigInteger(), nullable=False),
        sa.Column("log_start_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition", name="pk_partitions"),
        sa.ForeignKeyConstraint(
            ["topic"],
            ["topics.name"],
            name="fk_partitions_topic_topics",
            ondelete="CASCADE",
        ),
    )


def _create_objects() -> None:
    op.create_table(
        "objects",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("agent", sa.String(), nullable=False),
        sa.Column("org", sa.String(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_objects"),
    )


def _create_segments() -> None:
    op.create_table(
        "segments",
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("base_offset", sa.BigInteger(), nullable=False),
        sa.Column("last_offset", sa.BigInteger(), nullable=False),
        sa.Column("leader_epoch", sa.BigInteger(), nullable=False),
        sa.Column("max_timestamp_ms", sa.BigInteger(), nullable=False),
        sa.Column("object_key", sa.String(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition", "base_offset", name="pk_segments"),
        sa.ForeignKeyConstraint(
            ["object_key"],
            ["objects.key"],
            name="fk_segments_object_key_objects",
        ),
        sa.ForeignKeyConstraint(
            ["topic", "partition"],
            ["partitions.topic", "partitions.partition"],
            name="fk_segments_topic_partitions",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_segments_object_key", "segments", ["object_key"])


def _create_flush_outcomes() -> None:
    op.create_table(
        "flush_outcomes",
        sa.Column("object_key", sa.String(), nullable=False),
        sa.Column("committed", sa.Text(), nullable=False),
        sa.Column("fenced", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("object_key", name="pk_flush_outcomes"),
    )
