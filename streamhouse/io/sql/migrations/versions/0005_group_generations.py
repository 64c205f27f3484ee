"""Consumer groups' reserved generation numbers, so a restarted coordinator continues above.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "group_generations",
        sa.Column("group_id", sa.String(), nullable=False),
        sa.Column("next_generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", name="pk_group_generations"),
    )


def downgrade() -> None:
    op.drop_table("group_generations")
