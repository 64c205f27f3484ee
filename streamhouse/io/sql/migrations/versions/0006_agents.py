"""Cluster membership: registered agents, their node ids and heartbeats, and the node id counter.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("agent_id", sa.String(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_expires_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", name="pk_agents"),
        sa.UniqueConstraint("node_id", name="uq_agents_node_id"),
    )
    counters = sa.table("counters", sa.column("name", sa.String), sa.column("next_value"))
    op.bulk_insert(counters, [{"name": "node_id", "next_value": 0}])


def downgrade() -> None:
    op.execute("DELETE FROM counters WHERE name = 'node_id'")
    op.drop_table("agents")
