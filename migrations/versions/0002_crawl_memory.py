"""crawl memory: validators, revisits, withdrawals

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 04:04:45.730980
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "http_validators",
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("etag", sa.String(length=300), nullable=True),
        sa.Column("last_modified", sa.String(length=100), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
        ),
        sa.PrimaryKeyConstraint("url"),
    )
    with op.batch_alter_table("http_validators", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_http_validators_source_id"), ["source_id"], unique=False
        )

    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("withdrawn_reason", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("checks", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("list_url", sa.String(length=1000), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_articles_next_check_at"), ["next_check_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_articles_next_check_at"))
        batch_op.drop_column("list_url")
        batch_op.drop_column("checks")
        batch_op.drop_column("next_check_at")
        batch_op.drop_column("withdrawn_reason")

    with op.batch_alter_table("http_validators", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_http_validators_source_id"))

    op.drop_table("http_validators")
