"""File contents: which blobs a project's writer must still upload, uploads, the
manifest check of CreateArtifactVersion, downloads and garbage collection.

Blobs are stored once per organization and sha256 digest (storage/blobs), so the same
file logged by several teams of the organization is stored once. Which team may use
a stored blob is per team (`team_blobs`): a team holds a blob once a writer of one of
its projects sent its bytes and the server verified them (proof of possession), and
only then is it told the blob is stored or may name it in a manifest. A digest learned
outside the registry therefore never reaches another team's bytes, and a team that
has the file uploads it once more (verified, never written over the stored copy). Uploading
needs the right to log versions in a project (team MEMBER and above); downloading is
gated exactly like `UseArtifactVersion` (`resolve.resolve_reference`: VIEWER and above
in a registry, a RESTRICTED_VIEWER gets PERMISSION_DENIED), so a legacy path, its
migrated collection's path and the project path of one version give the same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain import names
from ..domain.errors import FailedPrecondition, InvalidArgument, NotFound, quote
from ..domain.roles import LegacyPermission
from ..storage import models as m
from ..storage.blobs import BlobStore
from ..storage.db import Database, now_us
from ..storage.queries import blobs as q
from ..storage.sql import Sql
from . import access
from .context import Principal
from .resolve import ArtifactVersionInfo, Resolution, resolve_reference

log = logging.getLogger("registry.files")

PROJECT = "teams/{team}/projects/{project}"
BLOB_MISSING = "BLOB_MISSING"
FILE_IS_REFERENCE = "FILE_IS_REFERENCE"
SHA256 = "sha256:"


@dataclass(frozen=True)
class Target:
    """Where an upload goes: the project's organization (blobs are stored once per
    organization) and team (which holds what its writers uploaded)."""

    org_id: int
    team_id: int


@dataclass(frozen=True)
class UploadStart:
    """An upload of one blob about to start: whether the organization stores it and
    whether the project's team holds it. Stored and held: nothing needs to be sent.
    Stored but not held: the whole bytes are sent and verified, then not kept (the
    stored copy is never replaced), and the team holds it."""

    target: Target
    stored: bool
    held: bool


def upload_project(s: Session, p: Principal, parent: str, field: str = "parent") -> Target:
    """The organization and team of a project the caller may log versions in."""
    v = names.parse(parent, PROJECT, field)
    ta = access.team_access(s, p, v["team"], LegacyPermission.WRITE, what=parent)
    found = s.execute(
        select(m.Project.id).where(m.Project.team_id == ta.team.id, m.Project.name == v["project"])
    ).first()
    if found is None:
        raise NotFound(f"{parent} not found")
    return Target(ta.team.org_id, ta.team.id)


# --- uploads ------------------------------------------------------------------------


def find_missing(s: Session, p: Principal, parent: str, digests: Sequence[str]) -> list[int]:
    """Indexes of `digests` (checked, `sha256:...`) the project's team cannot name in a
    manifest yet: those the organization does not store, and those it stores that the
    team does not hold (so the answer never tells whether another team has a file).
    The others are touched (gc leaves them alone for its grace period)."""
    target = upload_project(s, p, parent)
    held = q.touch_held(s, target.org_id, target.team_id, set(digests))
    return [i for i, d in enumerate(digests) if d not in held]


def upload_target(s: Session, p: Principal, parent: str, digest: str) -> UploadStart:
    """Where an upload of `digest` goes, and whether the blob is stored (has a row)
    and held by the project's team already."""
    target = upload_project(s, p, parent)
    stored = q.state_of(s, target.org_id, digest) is not None
    held = stored and q.holds(s, target.org_id, target.team_id, digest)
    return UploadStart(target, stored, held)


def batch_target(
    s: Session, p: Principal, parent: str, digests: Collection[str]
) -> tuple[Target, set[str]]:
    """BatchUploadBlobs: (where it goes, those of `digests` the organization stores
    already)."""
    target = upload_project(s, p, parent)
    return target, q.stored_among(s, target.org_id, digests)


def record_upload(s: Session, target: Target, digest: str, size: int) -> None:
    """The bytes of an upload were verified (and are in the store): the blob is
    recorded (or touched) and the team holds it."""
    q.mark_stored(s, target.org_id, digest, size)
    q.hold(s, target.org_id, target.team_id, [digest])


def record_batch(
    s: Session, target: Target, written: Mapping[str, int], stored: Collection[str]
) -> set[str]:
    """After BatchUploadBlobs verified every blob of a batch and wrote those of `written`
    (digest -> size): their rows are recorded, those found `stored` are touched, and
    the team holds them all. Those of `stored` gc took meanwhile are returned (their
    bytes must be written again; the team holds them once they are)."""
    q.mark_stored_many(s, target.org_id, written)
    lost = set(stored) - set(q.touch_stored(s, target.org_id, stored))
    q.hold(s, target.org_id, target.team_id, (set(written) | set(stored)) - lost)
    return lost


def touch_upload(s: Session, org_id: int, digest: str) -> bool:
    """An upload of a blob the organization has a row for starts: gc leaves it alone
    for its grace period. Whether it is stored (False when gc took it meanwhile)."""
    return q.touch(s, org_id, digest) == q.BlobState.STORED


def require_stored(
    s: Session, org_id: int, team_id: int, entries: Sequence[dict[str, Any]]
) -> None:
    """CreateArtifactVersion: every entry without a `ref` names a stored blob of that
    size that the version's team holds (the blobs are touched, so gc keeps them until
    the version refers to them). A blob stored for another team only gets the message
    of one never uploaded: whether another team has a file is not told."""
    for i, e in enumerate(entries):
        if not e["ref"] and not e["digest"].startswith(SHA256):
            # uploads are stored by sha256 only: no upload could ever provide this file
            raise InvalidArgument(
                f"manifest[{i}].digest", "a file without a ref needs a sha256 digest"
            )
    wanted = {e["digest"] for e in entries if not e["ref"]}
    held = q.touch_held(s, org_id, team_id, wanted)
    for i, e in enumerate(entries):
        if e["ref"]:
            continue
        size = held.get(e["digest"])
        if size is None:
            raise FailedPrecondition(
                f"manifest[{i}] ({quote(e['path'])}): no file with digest "
                f"{e['digest'][:23]}... was uploaded (upload it, or give its ref)",
                reason=BLOB_MISSING,
            )
        if size != e["size"]:
            raise InvalidArgument(
                f"manifest[{i}].size", f"the uploaded file of that digest has {size} bytes"
            )


# --- downloads -------------------------------------------------------------------------


@dataclass(frozen=True)
class FileToSend:
    version: ArtifactVersionInfo
    path: str
    hex_digest: str
    size: int


def resolve_for_download(sql: Sql, p: Principal, path: str) -> Resolution:
    return resolve_reference(sql, p, path, field="path")


def stored_files(version: ArtifactVersionInfo, wanted: Sequence[str]) -> list[FileToSend]:
    """The files named in `wanted` (all stored ones when empty), in the order asked
    (manifest order when empty); errors name `files[i]`."""
    if not wanted:
        return [_to_send(version, e) for e in version.manifest if not e["ref"]]
    by_path = {e["path"]: e for e in version.manifest}  # one lookup per name, not a scan
    return [
        _named(version, by_path.get(name), name, f"files[{i}]") for i, name in enumerate(wanted)
    ]


def file_of(version: ArtifactVersionInfo, file: str) -> FileToSend:
    """DownloadArtifactFile's `file`."""
    found = next((e for e in version.manifest if e["path"] == file), None)
    return _named(version, found, file, "file")


def _named(
    version: ArtifactVersionInfo, entry: dict[str, Any] | None, file: str, field: str
) -> FileToSend:
    """The manifest `entry` a request named `file` (None: there is none): NOT_FOUND when
    there is none, FAILED_PRECONDITION for a reference entry (its bytes live at its
    `ref`, not here). Messages start with `field` when it is not the single `file` of
    DownloadArtifactFile."""
    if not file:
        raise InvalidArgument(field, "is required")
    where = "" if field == "file" else f"{field}: "
    if entry is None:
        raise NotFound(f"{where}{version.path} has no file {quote(file)}")
    if entry["ref"]:
        raise FailedPrecondition(
            f"{where}{quote(file)} is a reference to {quote(entry['ref'])}; fetch it there",
            reason=FILE_IS_REFERENCE,
        )
    return _to_send(version, entry)


def _to_send(version: ArtifactVersionInfo, entry: dict[str, Any]) -> FileToSend:
    return FileToSend(
        version, entry["path"], entry["digest"].removeprefix(SHA256), int(entry["size"])
    )


# --- garbage ----------------------------------------------------------------------------

GC_BATCH = 500


@dataclass
class GcReport:
    blobs_removed: int = 0
    partials_removed: int = 0


def collect_garbage(db: Database, store: BlobStore, older_than: float) -> GcReport:
    """Removes blobs no version (deleted ones aside) refers to, untouched for
    `older_than` seconds, then partial uploads as old.

    Rows are deleted (touch_time checked again) and their files removed before the
    transaction commits, so an upload of the same digest meanwhile waits for it and
    then writes its file anew."""
    report = GcReport()
    cutoff = now_us() - int(older_than * 1_000_000)
    with db.read() as s:
        orgs = q.orgs_with_old_blobs(s, cutoff)
    for org_id in orgs:
        after = 0
        while True:
            with db.write() as s:
                batch = q.old_blobs(s, org_id, cutoff, after, GC_BATCH)
                if not batch:
                    break
                after = batch[-1][0]
                used = q.referenced_digests(s, org_id)
                doomed = [blob_id for blob_id, digest, _ in batch if digest not in used]
                for digest in q.delete_untouched(s, doomed, cutoff):
                    store.delete(org_id, digest.removeprefix(SHA256))
                    report.blobs_removed += 1
    report.partials_removed = store.remove_stale_partials(older_than)
    log.info(
        "gc: %d blobs and %d partial uploads removed",
        report.blobs_removed,
        report.partials_removed,
    )
    return report
