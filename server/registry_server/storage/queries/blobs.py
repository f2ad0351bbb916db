"""The `blobs` table: which files an organization's store holds (storage/blobs).

A row is written once a blob's bytes are verified and in place (STORED). Every
statement that tells a client a blob is there, lets a version refer to it, or starts
an upload of it again, moves its `touch_time` to now; `gc-blobs` deletes only rows
untouched for its grace period, with `touch_time` checked again in the DELETE itself,
so a concurrent touch always wins.

The `team_blobs` table: which team holds which blob. Blobs are stored once per
organization, but a team is told one is stored, and may name it in a manifest, only
once it holds it: a writer of one of its projects uploaded the bytes and the server
verified them (`hold`). Holder rows go with their blob (`delete_untouched`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from enum import IntEnum
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, and_, delete, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import models as m
from ..db import now_us
from .tables import insert_skipping_conflicts


class BlobState(IntEnum):
    STORED = 2  # the only state so far: a row exists once the bytes are verified


def _stored(org_id: int, digest: str, size: int, now: int) -> dict[str, Any]:
    """A new STORED row's values."""
    return {"org_id": org_id, "digest": digest, "size": size, "state": BlobState.STORED,
            "create_time": now, "touch_time": now}  # fmt: skip


def touch_stored(s: Session, org_id: int, digests: Collection[str]) -> dict[str, int]:
    """Touches the STORED blobs among `digests`; digest -> size of those."""
    return _touch_where(s, org_id, digests)


def held_by(team_id: int) -> Any:
    """The ids of the blobs `team_id` holds (a subquery)."""
    return select(m.TeamBlob.blob_id).where(m.TeamBlob.team_id == team_id)


def touch_held(s: Session, org_id: int, team_id: int, digests: Collection[str]) -> dict[str, int]:
    """Touches the STORED blobs among `digests` the team holds; digest -> size of those.
    Blobs of the organization the team does not hold are neither touched nor named."""
    return _touch_where(s, org_id, digests, m.Blob.id.in_(held_by(team_id)))


def _touch_where(
    s: Session, org_id: int, digests: Collection[str], *also: ColumnElement[bool]
) -> dict[str, int]:
    """Touches the STORED blobs among `digests` that match `also`; digest -> size."""
    if not digests:
        return {}
    rows = s.execute(
        update(m.Blob)
        .where(
            m.Blob.org_id == org_id,
            m.Blob.digest.in_(sorted(digests)),
            m.Blob.state == BlobState.STORED,
            *also,
        )
        .values(touch_time=now_us())
        .returning(m.Blob.digest, m.Blob.size)
    ).all()
    return {row.digest: row.size for row in rows}


def holds(s: Session, org_id: int, team_id: int, digest: str) -> bool:
    """Whether the team holds the organization's blob of `digest`."""
    found = s.execute(
        select(m.Blob.id).where(
            m.Blob.org_id == org_id, m.Blob.digest == digest, m.Blob.id.in_(held_by(team_id))
        )
    ).first()
    return found is not None


def hold(s: Session, org_id: int, team_id: int, digests: Collection[str]) -> None:
    """The team holds the organization's stored blobs among `digests`: a writer of one
    of its projects sent their bytes and they were verified. Holding one already (or
    a concurrent upload recording it first) changes nothing."""
    if not digests:
        return
    blobs = select(m.Blob.id, literal(team_id, BigInteger()), literal(now_us(), BigInteger()))
    blobs = blobs.where(
        m.Blob.org_id == org_id,
        m.Blob.digest.in_(sorted(digests)),
        m.Blob.state == BlobState.STORED,
    )
    dialect = s.get_bind().dialect.name
    s.execute(
        insert_skipping_conflicts(dialect, m.TeamBlob).from_select(
            ["blob_id", "team_id", "create_time"], blobs
        )
    )


def stored_among(s: Session, org_id: int, digests: Collection[str]) -> set[str]:
    """Those of `digests` the organization stores (untouched)."""
    if not digests:
        return set()
    return set(
        s.execute(
            select(m.Blob.digest).where(
                m.Blob.org_id == org_id,
                m.Blob.digest.in_(sorted(digests)),
                m.Blob.state == BlobState.STORED,
            )
        ).scalars()
    )


def state_of(s: Session, org_id: int, digest: str) -> int | None:
    return s.execute(
        select(m.Blob.state).where(m.Blob.org_id == org_id, m.Blob.digest == digest)
    ).scalar_one_or_none()


def touch(s: Session, org_id: int, digest: str) -> int | None:
    """Moves the blob's touch_time to now (an upload of it starts); its state, None when
    gc took it meanwhile."""
    return s.execute(
        update(m.Blob)
        .where(m.Blob.org_id == org_id, m.Blob.digest == digest)
        .values(touch_time=now_us())
        .returning(m.Blob.state)
    ).scalar_one_or_none()


def mark_stored(s: Session, org_id: int, digest: str, size: int) -> None:
    """The bytes are verified and in place: the row is recorded (or touched)."""
    now = now_us()
    stmt = (
        update(m.Blob)
        .where(m.Blob.org_id == org_id, m.Blob.digest == digest)
        .values(state=BlobState.STORED, size=size, touch_time=now)
    )
    if s.execute(stmt).rowcount:  # type: ignore[attr-defined]
        return
    try:
        with s.begin_nested():
            s.execute(insert(m.Blob), [_stored(org_id, digest, size, now)])
    except IntegrityError:  # the same bytes, uploaded concurrently, were recorded first
        s.execute(stmt)


def mark_stored_many(s: Session, org_id: int, sizes: Mapping[str, int]) -> None:
    """`mark_stored` for every digest -> size of `sizes`: one UPDATE, one INSERT."""
    if not sizes:
        return
    now = now_us()
    updated = set(
        s.execute(
            update(m.Blob)
            .where(m.Blob.org_id == org_id, m.Blob.digest.in_(sorted(sizes)))
            .values(state=BlobState.STORED, touch_time=now)
            .returning(m.Blob.digest)
        ).scalars()
    )
    new = [d for d in sorted(sizes) if d not in updated]
    if not new:
        return
    try:
        with s.begin_nested():
            s.execute(insert(m.Blob), [_stored(org_id, d, sizes[d], now) for d in new])
    except IntegrityError:  # some, uploaded concurrently, were recorded first
        for d in new:
            mark_stored(s, org_id, d, sizes[d])


def orgs_with_old_blobs(s: Session, cutoff: int) -> list[int]:
    return list(
        s.execute(select(m.Blob.org_id).where(m.Blob.touch_time < cutoff).distinct()).scalars()
    )


def referenced_digests(s: Session, org_id: int) -> set[str]:
    """The digests the manifests of an organization's versions (not deleted) name."""
    manifests: Iterable[Any] = s.execute(
        select(m.ArtifactVersion.manifest)
        .join(m.Artifact, m.Artifact.id == m.ArtifactVersion.artifact_id)
        .join(m.Project, m.Project.id == m.Artifact.project_id)
        .join(m.Team, m.Team.id == m.Project.team_id)
        .where(m.Team.org_id == org_id, m.ArtifactVersion.delete_time.is_(None))
    ).scalars()
    return {entry["digest"] for manifest in manifests for entry in manifest or ()}


def old_blobs(
    s: Session, org_id: int, cutoff: int, after_id: int, limit: int
) -> list[tuple[int, str, int]]:
    """(id, digest, state) of blobs untouched since `cutoff`, by id after `after_id`."""
    rows = s.execute(
        select(m.Blob.id, m.Blob.digest, m.Blob.state)
        .where(m.Blob.org_id == org_id, m.Blob.touch_time < cutoff, m.Blob.id > after_id)
        .order_by(m.Blob.id)
        .limit(limit)
    ).all()
    return [(row.id, row.digest, row.state) for row in rows]


def delete_untouched(s: Session, ids: Collection[int], cutoff: int) -> list[str]:
    """Deletes those of `ids` still untouched since `cutoff`, and who held them; their
    digests. (Holder rows go with their blob anyway, ON DELETE CASCADE; they are
    deleted here too so that no database setting is relied on.)"""
    if not ids:
        return []
    deleted = s.execute(
        delete(m.Blob)
        .where(and_(m.Blob.id.in_(sorted(ids)), m.Blob.touch_time < cutoff))
        .returning(m.Blob.id, m.Blob.digest)
    ).all()
    if deleted:
        gone = sorted(row.id for row in deleted)
        s.execute(delete(m.TeamBlob).where(m.TeamBlob.blob_id.in_(gone)))
    return [row.digest for row in deleted]
