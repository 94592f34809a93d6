"""index articles by first sight and by (source, publication date)

The story index loads its 90-day window by a range of first_seen_at over the posts that have
a signature (a partial index); a source's health reads
its latest posts by (source_id, published_at) instead of sorting all of its history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 07:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.create_index(
            "ix_articles_story_window",
            ["first_seen_at"],
            unique=False,
            sqlite_where=sa.text("minhash IS NOT NULL"),
            postgresql_where=sa.text("minhash IS NOT NULL"),
        )
        batch.create_index(
            "ix_articles_source_published", ["source_id", "published_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("articles") as batch:
        batch.drop_index("ix_articles_source_published")
        batch.drop_index("ix_articles_story_window")
