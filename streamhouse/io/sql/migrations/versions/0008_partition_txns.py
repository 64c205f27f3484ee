"""Transactions in partitions: each producer's open transaction (where it began) and every
aborted one (its offset range), as of the partition's durable end; written by flush commits.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "partition_txns",
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("producer_id", sa.BigInteger(), nullable=False),
        sa.Column("first_offset", sa.BigInteger(), nullable=False),
        # the marker's offset once the transaction ended (committed ones are deleted then)
        sa.Column("last_offset", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint(
            "topic", "partition", "producer_id", "first_offset", name="pk_partition_txns"
        ),
        sa.ForeignKeyConstraint(
            ["topic", "partition"],
            ["partitions.topic", "partitions.partition"],
            name="fk_partition_txns_topic_partitions",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_partition_txns_last_offset", "partition_txns", ["topic", "partition", "last_offset"]
    )


def downgrade() -> None:
    op.drop_index("ix_partition_txns_last_offset", table_name="partition_txns")
    op.drop_table("partition_txns")
