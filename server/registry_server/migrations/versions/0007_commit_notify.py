"""number and announce every commit (PostgreSQL)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from registry_server.migrations.commit_numbers import (
    create_commit_numbering,
    drop_commit_numbering,
)

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_commit_numbering()  # on every table that exists now


def downgrade() -> None:
    drop_commit_numbering()
