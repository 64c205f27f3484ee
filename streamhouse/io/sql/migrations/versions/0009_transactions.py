"""Transactions: each transactional id's coordinator state, and the offsets committed inside
open transactions (TxnOffsetCommit) until they end.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "transactions",
        sa.Column("transactional_id", sa.String(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("producer_id", sa.BigInteger(), nullable=False),
        sa.Column("producer_epoch", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("timeout_ms", sa.BigInteger(), nullable=False),
        sa.Column("partitions", sa.Text(), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("update_ms", sa.BigInteger(), nullable=False),
        sa.Column("prior_epoch", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("transactional_id", name="pk_transactions"),
    )
    op.create_index("ix_transactions_slot", "transactions", ["slot"])
    op.create_table(
        "txn_offsets",
        sa.Column("group_id", sa.String(), nullable=False),
        sa.Column("producer_id", sa.BigInteger(), nullable=False),
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("leader_epoch", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=True),
        sa.Column("commit_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "group_id", "producer_id", "topic", "partition", name="pk_txn_offsets"
        ),
        sa.ForeignKeyConstraint(
            ["topic", "partition"],
            ["partitions.topic", "partitions.partition"],
            name="fk_txn_offsets_topic_partitions",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_txn_offsets_producer_id", "txn_offsets", ["producer_id"])


def downgrade() -> None:
    op.drop_index("ix_txn_offsets_producer_id", table_name="txn_offsets")
    op.drop_table("txn_offsets")
    op.drop_index("ix_transactions_slot", table_name="transactions")
    op.drop_table("transactions")
