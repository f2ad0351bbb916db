"""team_blobs: which team holds which blob (proof of possession, per team)

Blobs stay stored once per organization; a team may name one in a manifest, or be
told it is stored, only when it holds it (service/files.py). Every team already holds
the blobs its versions' manifests name (entries without a `ref`), so existing versions
keep working and can be logged again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from registry_server.migrations.commit_numbers import mark_commits_on

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BATCH = 500  # digests looked up, and rows inserted, per statement


def upgrade() -> None:
    op.create_table(
        "team_blobs",
        sa.Column(
            "team_id",
            ID,
            sa.ForeignKey("teams.id", ondelete="CASCADE", name="fk_team_blobs_team_id_teams"),
            nullable=False,
        ),
        sa.Column(
            "blob_id",
            ID,
            sa.ForeignKey("blobs.id", ondelete="CASCADE", name="fk_team_blobs_blob_id_blobs"),
            nullable=False,
        ),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("team_id", "blob_id", name="pk_team_blobs"),
    )
    op.create_index("ix_team_blobs_blob", "team_blobs", ["blob_id"])
    mark_commits_on("team_blobs")
    _backfill(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_team_blobs_blob", table_name="team_blobs")
    op.drop_table("team_blobs")


# --- the backfill: each team holds the stored blobs its versions name ---------------------

teams = sa.table("teams", sa.column("id", ID), sa.column("org_id", ID))
projects = sa.table("projects", sa.column("id", ID), sa.column("team_id", ID))
artifacts = sa.table("artifacts", sa.column("id", ID), sa.column("project_id", ID))
versions = sa.table(
    "artifact_versions",
    sa.column("artifact_id", ID),
    sa.column("manifest", JSON),
    sa.column("create_time", sa.BigInteger()),
)
blobs = sa.table("blobs", sa.column("id", ID), sa.column("org_id", ID), sa.column("digest"))
team_blobs = sa.table(
    "team_blobs",
    sa.column("team_id", ID),
    sa.column("blob_id", ID),
    sa.column("create_time", sa.BigInteger()),
)


def _backfill(conn: sa.Connection) -> None:
    """One team at a time (deleted versions too: the team had the bytes), so memory
    holds the digests of one team's versions, never the whole organization's."""
    for team_id, org_id in conn.execute(sa.select(teams.c.id, teams.c.org_id)).all():
        named: dict[str, int] = {}  # digest -> the first time a version named it
        manifests = conn.execute(
            sa.select(versions.c.manifest, versions.c.create_time)
            .join(artifacts, artifacts.c.id == versions.c.artifact_id)
            .join(projects, projects.c.id == artifacts.c.project_id)
            .where(projects.c.team_id == team_id)
        )
        for manifest, created in manifests:
            for digest in _stored_digests(manifest):
                named[digest] = min(created, named.get(digest, created))
        rows = [
            {"team_id": team_id, "blob_id": blob_id, "create_time": named[digest]}
            for digest, blob_id in _blob_ids(conn, org_id, sorted(named))
        ]
        for chunk in _chunks(rows):
            conn.execute(sa.insert(team_blobs), chunk)


def _stored_digests(manifest: Any) -> Iterator[str]:
    """The digests of a manifest's entries without a `ref` (their bytes are stored)."""
    for entry in manifest or ():
        if not entry.get("ref") and entry.get("digest"):
            yield entry["digest"]


def _blob_ids(conn: sa.Connection, org_id: int, digests: list[str]) -> Iterator[tuple[str, int]]:
    """(digest, blob id) of those of `digests` the organization stores."""
    for chunk in _chunks(digests):
        found = conn.execute(
            sa.select(blobs.c.digest, blobs.c.id).where(
                blobs.c.org_id == org_id, blobs.c.digest.in_(chunk)
            )
        )
        yield from ((row.digest, row.id) for row in found)


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]
