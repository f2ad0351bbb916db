"""number and announce every commit (PostgreSQL)

Revision ID: 0009
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

from registry_server.migrations.commit_numbers import (
    create_commit_numbering,
    drop_commit_numbering,
)

revision = "0009"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_commit_numbering()  # on every table that exists now


def downgrade() -> None:
    drop_commit_numbering()
