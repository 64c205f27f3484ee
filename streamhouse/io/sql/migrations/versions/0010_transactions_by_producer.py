"""Transactions found by producer id: a partition leader checks that a producer's first
transactional batch belongs to its ongoing transaction (KIP-890's verification).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_transactions_producer_id", "transactions", ["producer_id"])


def downgrade() -> None:
    op.drop_index("ix_transactions_producer_id", table_name="transactions")
