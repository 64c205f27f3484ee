"""Log compaction's checkpoint per partition: where the cleaned part of the log ends (the next
round's first dirty offset, Kafka's cleaner-offset-checkpoint) and when a round last swapped.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("partitions") as batch:
        batch.add_column(
            sa.Column("cleaned_end_offset", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("compacted_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("partitions") as batch:
        batch.drop_column("compacted_ms")
        batch.drop_column("cleaned_end_offset")
