"""File contents: upload, dedupe, the manifest check, permissioned download (each
registry role, legacy paths before and after a migration), resume, bad input, a full
store, and garbage collection that never takes a blob a version uses."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import file_service_pb2 as fpb
from registry.v1 import resources_pb2 as r
from registry_client import Client, Stubs, open_channel
from registry_client.errors import InvalidArgumentError, RegistryError
from registry_client.files import put_part, safe_destination
from registry_server.api.app import App
from registry_server.api.settings import Settings
from registry_server.service.files import collect_garbage
from registry_server.storage import models as m
from registry_server.storage.blobs.file import FileBlobStore, FileWriter
from registry_server.storage.db import Database

from ..support.content import create_registry, grant, link, make_lab, registry_path
from ..support.errors import expect_error
from ..support.files import (
    batch,
    chunks,
    digest_of,
    download,
    entry,
    fetch,
    kept,
    log_files,
    log_on,
    missing,
    org_of,
    presigned,
    stubs_of,
    upload,
    write_tree,
)
from ..support.legacy_teams import legacy_team
from ..support.migrations import start, watch
from ..support.servers import ServerThread
from ..support.world import Person, World

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
FAILED = grpc.StatusCode.FAILED_PRECONDITION
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def stored_rows(server: ServerThread, digest: str) -> list[tuple[int, int]]:
    with server.app.db.read() as s:
        return [
            (row.state, row.size)
            for row in s.execute(select(m.Blob).where(m.Blob.digest == digest)).scalars()
        ]


def partial_files(server: ServerThread) -> list[Path]:
    """Uploads under way or abandoned, in a file:// store."""
    store = server.app.blobs
    return list(store.partials.iterdir()) if isinstance(store, FileBlobStore) else []


def file_store_only(server: ServerThread) -> None:
    if not isinstance(server.app.blobs, FileBlobStore):
        pytest.skip("streams bytes through the server: the file:// store only")


def client_of(server: ServerThread, person: Person) -> Client:
    return Client(server.target, person.key)


# --- round trip and dedupe -----------------------------------------------------------


def test_a_directory_round_trips_with_nested_paths_and_empty_files(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    src = tmp_path / "src"
    files = {
        "model.pt": os.urandom(3 * (1 << 20) + 17),  # several chunks, not a multiple
        "config/nested/deep.json": b'{"a": 1}',
        "empty.txt": b"",
        "config/empty": b"",
        "same-bytes-twice/a.bin": b"twice",
        "same-bytes-twice/b.bin": b"twice",
    }
    write_tree(src, files)
    with client_of(server, owner) as client:
        version = client.log_artifact(f"{lab.team}/{lab.project}", "net", "model", src)
        assert sorted(e.path for e in version.manifest) == sorted(files)
        assert all(not e.ref for e in version.manifest)
        dest = tmp_path / "dest"
        got = client.download(version.path, dest)
    assert got.files == len(files)
    assert got.bytes == sum(len(d) for d in files.values())
    for path, data in files.items():
        assert (dest / path).read_bytes() == data
    assert not list(dest.rglob("*.partial"))


def test_a_second_log_of_the_same_files_uploads_nothing(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    other_lab = make_lab(world, owner)  # another team of the organization
    big = os.urandom(100_000)
    (tmp_path / "w.bin").write_bytes(big)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.json").write_bytes(b"{}")
    with client_of(server, owner) as client:
        first = client.upload(f"{lab.team}/{lab.project}", tmp_path)
        assert (first.files, first.bytes) == (2, 100_002)
        again = client.upload(f"{lab.team}/{lab.project}", tmp_path)
        assert (again.files, again.bytes, again.skipped) == (0, 0, 2)
        # another team proves it has the files by sending them once; they stay stored once
        elsewhere = client.upload(f"{other_lab.team}/{other_lab.project}", tmp_path)
        assert (elsewhere.files, elsewhere.bytes) == (2, 100_002)
        elsewhere_again = client.upload(f"{other_lab.team}/{other_lab.project}", tmp_path)
        assert (elsewhere_again.files, elsewhere_again.bytes) == (0, 0)
        v0 = client.log_artifact(f"{lab.team}/{lab.project}", "a", "model", tmp_path)
        v1 = client.log_artifact(f"{other_lab.team}/{other_lab.project}", "b", "model", tmp_path)
    assert v0.digest == v1.digest
    assert stored_rows(server, digest_of(big)) == [(2, len(big))]


def test_another_organization_does_not_see_or_share_blobs(
    world: World, server: ServerThread, root_stubs: object
) -> None:
    from ..support.world import make_world

    other = make_world(server, root_stubs)  # type: ignore[arg-type]
    a, b = world.person("a"), other.person("b")
    lab_a, lab_b = make_lab(world, a), make_lab(other, b)
    data = os.urandom(1000)
    upload(a, lab_a.parent, data)
    assert missing(a, lab_a.parent, data) == []
    assert missing(b, lab_b.parent, data) == [digest_of(data)]


# --- the manifest check ------------------------------------------------------------------


def test_a_version_needs_its_files_uploaded_unless_they_are_references(
    world: World, server: ServerThread
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(64)

    def create(*entries: r.ManifestEntry) -> r.ArtifactVersion:
        return owner.stubs.artifacts.CreateArtifactVersion(
            apb.CreateArtifactVersionRequest(
                parent=lab.parent, artifact_id="w", type="model", manifest=list(entries)
            )
        )

    expect_error(FAILED, create, entry("w.bin", data), reason="BLOB_MISSING")
    ref = entry("w.bin", data)
    ref.ref = "s3://elsewhere/w.bin"
    assert create(ref).version_index == 0  # a reference artifact: nothing to upload
    upload(owner, lab.parent, data)
    wrong_size = entry("w.bin", data)
    wrong_size.size = 63
    expect_error(INVALID, create, wrong_size, field="manifest[0].size")
    assert create(entry("w.bin", data)).version_index == 1


@pytest.mark.parametrize(
    "path", ["../escape", "a/../../b", "/etc/passwd", "a\x00b", "", "a//b", "./a"]
)
def test_manifest_paths_that_escape_are_refused(world: World, path: str) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = b"x"
    upload(owner, lab.parent, data)
    bad = entry(path, data)
    expect_error(
        INVALID,
        owner.stubs.artifacts.CreateArtifactVersion,
        apb.CreateArtifactVersionRequest(
            parent=lab.parent, artifact_id="w", type="model", manifest=[entry("ok", data), bad]
        ),
        field="manifest[1].path",
    )


def test_the_client_never_writes_outside_the_destination(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(tmp_path)
    assert safe_destination(dest, "a/b.txt") == dest.resolve() / "a" / "b.txt"
    for path in ["../x", "/abs", "a/../../x", "a\x00", "", "link/x", "a\\..\\x"]:
        with pytest.raises(InvalidArgumentError):
            safe_destination(dest, path)


# --- bad uploads ------------------------------------------------------------------------


def test_a_digest_or_size_mismatch_is_refused_and_nothing_is_kept(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(2 * (1 << 20) + 5)
    other = digest_of(b"something else")
    declared = [(other, len(data), "digest"), (digest_of(data), len(data) - 1, "size")]
    if isinstance(server.app.blobs, FileBlobStore):
        declared.append((digest_of(data), len(data) + 1, "size"))
        for digest, size, field in declared:
            expect_error(
                INVALID,
                owner.stubs.files.UploadBlob,
                chunks(lab.parent, data, digest=digest, size=size),
                field=field,
            )
    else:  # the bytes go to the object store; the server checks them before keeping them
        source = tmp_path / "data"
        source.write_bytes(data)
        for digest, size, field in declared:
            start = owner.stubs.files.StartBlobUpload(
                fpb.StartBlobUploadRequest(parent=lab.parent, digest=digest, size=size)
            )
            (part,) = start.parts
            part.headers.clear()  # a client sending other bytes than it declared
            part.size = len(data)
            put_part(part, source)
            expect_error(
                INVALID,
                owner.stubs.files.CompleteBlobUpload,
                fpb.CompleteBlobUploadRequest(
                    parent=lab.parent, digest=digest, size=size, upload_id=start.upload_id
                ),
                field=field,
            )
    expect_error(
        INVALID, owner.stubs.files.UploadBlob, chunks(lab.parent, data, digest="md5:" + "0" * 32)
    )
    assert not kept(server, world, data) and not kept(server, world, b"something else")
    assert not partial_files(server)
    assert missing(owner, lab.parent, data) == [digest_of(data)]
    assert all(state != 2 for state, _ in stored_rows(server, other))
    assert all(state != 2 for state, _ in stored_rows(server, digest_of(data)))


def test_uploading_needs_the_right_to_log_in_the_project(world: World) -> None:
    owner, viewer, stranger = world.person("owner"), world.person("viewer"), world.person("x")
    lab = make_lab(world, owner, {viewer: r.TEAM_ROLE_VIEWER})
    expect_error(DENIED, upload, viewer, lab.parent, b"data")
    expect_error(NOT_FOUND, upload, stranger, lab.parent, b"data")
    expect_error(DENIED, missing, viewer, lab.parent, b"data")
    expect_error(NOT_FOUND, missing, stranger, lab.parent, b"data")
    expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        Client(world.target, "rk_not-a-key").stubs.files.UploadBlob,
        chunks(lab.parent, b"data"),
    )


def test_a_full_store_answers_resource_exhausted_and_reads_go_on(
    world: World, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_store_only(server)
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(5000)
    version = log_files(owner, lab.parent, {"kept.bin": data})
    opened = FileWriter._opened

    class NoRoom:
        """A partial file on a full disk: every write fails with ENOSPC."""

        def __init__(self, real: object) -> None:
            self.real = real

        def write(self, chunk: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            self.real.close()  # type: ignore[attr-defined]

    def on_full_disk(self: FileWriter) -> object:
        file = opened(self)
        if not isinstance(file, NoRoom):
            self._file = NoRoom(file)  # type: ignore[assignment]
        return self._file

    monkeypatch.setattr(FileWriter, "_opened", on_full_disk)
    try:
        f = expect_error(EXHAUSTED, upload, owner, lab.parent, os.urandom(100))
    finally:
        monkeypatch.undo()
    assert "no room" in f.message
    assert not partial_files(server)
    assert download(owner, version.path, "kept.bin") == data


# --- downloads: permissions ----------------------------------------------------------------

ROLES = {
    "restricted_viewer": r.REGISTRY_ROLE_RESTRICTED_VIEWER,
    "viewer": r.REGISTRY_ROLE_VIEWER,
    "member": r.REGISTRY_ROLE_MEMBER,
    "admin": r.REGISTRY_ROLE_ADMIN,
}


def test_download_is_gated_like_use_for_each_registry_role(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(10_000)
    version = log_files(owner, lab.parent, {"w.bin": data})
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    link(owner, registry, "net", version.name)
    path = registry_path(registry, "net", ":v0")
    people = {role: world.person(role) for role in ROLES}
    for role, value in ROLES.items():
        grant(world, registry, people[role].name, value)
    outsider = world.person("outsider")  # no grant in a RESTRICTED registry
    for role in ("viewer", "member", "admin"):
        assert download(people[role], path, "w.bin") == data, role
        assert download(people[role], world.org + "/" + path, "w.bin") == data, role
    expect_error(DENIED, download, people["restricted_viewer"], path, "w.bin")
    expect_error(
        DENIED,
        people["restricted_viewer"].stubs.files.GetDownloadUrls,
        fpb.GetDownloadUrlsRequest(path=path),
    )
    expect_error(NOT_FOUND, download, outsider, path, "w.bin")
    # the client takes the short form `use` takes: REGISTRY/COLLECTION:VERSION
    with client_of(server, people["viewer"]) as client:
        assert client.download(path.removeprefix("wandb-registry-"), tmp_path).files == 1
    assert (tmp_path / "w.bin").read_bytes() == data
    # the project path: team members (any role) and org admins, no one else
    assert download(owner, version.path, "w.bin") == data
    assert download(world.admin, version.path, "w.bin") == data
    expect_error(NOT_FOUND, download, people["viewer"], version.path, "w.bin")
    expect_error(NOT_FOUND, download, owner, version.path, "nope.bin")


def test_a_download_with_a_run_records_usage_and_resumes_from_an_offset(
    world: World, server: ServerThread
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(3 * (1 << 20) + 1)
    version = log_files(owner, lab.parent, {"w.bin": data})
    assert download(owner, version.path, "w.bin", offset=(1 << 20) + 7) == data[(1 << 20) + 7 :]
    assert download(owner, version.path, "w.bin", offset=len(data)) == b""
    if isinstance(server.app.blobs, FileBlobStore):  # offsets the server checks itself
        expect_error(INVALID, download, owner, version.path, "w.bin", len(data) + 1)
        expect_error(INVALID, download, owner, version.path, "w.bin", -1)
    assert download(owner, version.path, "w.bin", run_id="eval-7") == data
    lineage = owner.stubs.artifacts.GetLineage(apb.GetLineageRequest(name=version.name))
    assert list(lineage.consuming_runs) == ["eval-7"]


def test_a_reference_entry_is_not_served(world: World) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    ref = entry("w.bin", b"elsewhere")
    ref.ref = "s3://bucket/w.bin"
    version = owner.stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=lab.parent, artifact_id="w", type="model", manifest=[ref]
        )
    )
    expect_error(FAILED, download, owner, version.path, "w.bin", reason="FILE_IS_REFERENCE")
    listing = owner.stubs.files.GetDownloadUrls(fpb.GetDownloadUrlsRequest(path=version.path))
    assert list(listing.urls) == []


def test_legacy_paths_give_the_same_bytes_before_and_after_a_migration(
    world: World, server: ServerThread
) -> None:
    owner, member = world.person("owner"), world.person("member")
    team = legacy_team(world, "ml", owner, {member: r.TEAM_ROLE_MEMBER})
    owner.stubs.artifacts.CreateProject(
        apb.CreateProjectRequest(parent=team.name, project_id="train")
    )
    data = os.urandom(50_000)
    version = log_files(owner, f"{team.name}/projects/train", {"m.pt": data})
    team.versions.append(version.name)
    team.model("resnet")
    team.link("resnet", 0, "production")
    legacy = f"{team.id}/model-registry/resnet:production"
    before = {p.name: download(p, legacy, "m.pt") for p in (owner, member)}
    migration = start(world.admin, world, team)
    assert watch(world.admin, migration.name)[-1].state == r.MIGRATION_STATE_SUCCEEDED
    resolved = owner.stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=legacy))
    assert resolved.redirected
    for p in (owner, member):
        assert before[p.name] == data
        assert download(p, legacy, "m.pt") == data
        assert download(p, resolved.canonical_path, "m.pt") == data
    stranger = world.person("stranger")
    expect_error(NOT_FOUND, download, stranger, legacy, "m.pt")


# --- garbage ---------------------------------------------------------------------------


def test_gc_keeps_what_versions_use_and_what_was_touched_within_the_grace(
    world: World, server: ServerThread
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    shared, only_v0, loose, fresh = (os.urandom(300 + i) for i in range(4))
    v0 = log_files(owner, lab.parent, {"shared": shared, "only": only_v0})
    v1 = log_files(owner, lab.parent, {"shared": shared})
    upload(owner, lab.parent, loose)  # referenced by nothing
    owner.stubs.artifacts.DeleteArtifactVersion(apb.DeleteArtifactVersionRequest(name=v0.name))
    store = server.app.blobs
    # everything was touched just now: a grace period of an hour keeps it all
    collect_garbage(server.app.db, store, older_than=3600)
    assert missing(owner, lab.parent, shared, only_v0, loose) == []
    upload(owner, lab.parent, fresh)
    # no grace: what no live version uses goes, what v1 uses stays
    report = collect_garbage(server.app.db, store, older_than=0)
    assert report.blobs_removed >= 3
    assert missing(owner, lab.parent, shared, only_v0, loose, fresh) == [
        digest_of(only_v0),
        digest_of(loose),
        digest_of(fresh),
    ]
    assert download(owner, v1.path, "shared") == shared
    assert kept(server, world, shared)
    assert not kept(server, world, loose) and not kept(server, world, only_v0)
    # uploading it again brings it back
    upload(owner, lab.parent, loose)
    assert missing(owner, lab.parent, loose) == []


def test_the_client_resumes_a_partial_download_and_drops_a_wrong_one(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(2 * (1 << 20) + 3)
    version = log_files(owner, lab.parent, {"w.bin": data})
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "w.bin.partial").write_bytes(data[:1_000_000])
    with client_of(server, owner) as client:
        got = client.download(version.path, dest)
        assert (got.files, got.bytes) == (1, len(data) - 1_000_000)
        assert (dest / "w.bin").read_bytes() == data
        again = client.download(version.path, dest)
        assert (again.files, again.skipped) == (0, 1)
        other = tmp_path / "other"
        other.mkdir()
        (other / "w.bin.partial").write_bytes(b"not the start of the file")
        with pytest.raises(RegistryError):
            client.download(version.path, other)
        assert not (other / "w.bin.partial").exists() and not (other / "w.bin").exists()
        assert client.download(version.path, other).bytes == len(data)
    assert (other / "w.bin").read_bytes() == data


def test_limits_on_file_size_and_files_per_version(
    world: World, database_url: str, blob_store: str
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    db = Database(database_url)
    settings = Settings(max_file_size=10, max_files_per_version=2, blob_store=blob_store)
    limited = ServerThread(App(db, settings)).start()
    try:
        stubs = Stubs.on(open_channel(limited.target, owner.key))
        expect_error(INVALID, stubs.files.UploadBlob, chunks(lab.parent, b"x" * 11), field="size")
        expect_error(
            INVALID,
            stubs.files.FindMissingBlobs,
            fpb.FindMissingBlobsRequest(
                parent=lab.parent, blobs=[fpb.BlobRef(digest=digest_of(b"x"), size=11)]
            ),
            field="blobs[0].size",
        )
        refs = [entry(f"f{i}", b"x") for i in range(3)]
        for e in refs:
            e.ref = "s3://elsewhere/" + e.path
        expect_error(
            INVALID,
            stubs.artifacts.CreateArtifactVersion,
            apb.CreateArtifactVersionRequest(
                parent=lab.parent, artifact_id="w", type="model", manifest=refs
            ),
            field="manifest",
        )
    finally:
        limited.stop()
        db.dispose()


def test_uploading_stored_bytes_again_sends_nothing_more(world: World) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(3 * (1 << 20))
    upload(owner, lab.parent, data)
    if not presigned(owner, lab.parent):
        again = owner.stubs.files.UploadBlob(chunks(lab.parent, data))
        assert again.existed
    else:
        start = owner.stubs.files.StartBlobUpload(
            fpb.StartBlobUploadRequest(parent=lab.parent, digest=digest_of(data), size=len(data))
        )
        assert start.existed and not start.parts


# --- batches of small files (file:// stores) ---------------------------------------------


def test_a_batch_keeps_small_files_and_does_not_rewrite_stored_ones(
    world: World, file_server: ServerThread, tmp_path: Path
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    stubs = stubs_of(file_server, owner)
    a, b, c = os.urandom(1000), os.urandom(70_000), b""
    first = stubs.files.BatchUploadBlobs(batch(lab.parent, a, b, a, c))
    assert [(x.digest, x.size, x.existed) for x in first.blobs] == [
        (digest_of(a), len(a), False),
        (digest_of(b), len(b), False),
        (digest_of(a), len(a), False),
        (digest_of(c), 0, False),
    ]
    assert all(kept(file_server, world, x) for x in (a, b, c))
    assert stored_rows(file_server, digest_of(a)) == [(2, len(a))]
    store = file_server.app.blobs
    assert isinstance(store, FileBlobStore)
    path_of_a = store.path(org_of(file_server, world), digest_of(a).removeprefix("sha256:"))
    before = path_of_a.stat()
    d = os.urandom(10)
    again = stubs.files.BatchUploadBlobs(batch(lab.parent, a, d))
    assert [x.existed for x in again.blobs] == [True, False]
    after = path_of_a.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert missing(owner, lab.parent, a, b, c, d) == [] and not partial_files(file_server)
    # the client sends small files in batches, large ones streamed; both come back
    src = tmp_path / "src"
    files = {f"small/{i}.bin": os.urandom(5000 + i) for i in range(40)}
    files["large.bin"] = os.urandom(3 << 20)
    write_tree(src, files)
    with Client(file_server.target, owner.key) as client:
        version = client.log_artifact(f"{lab.team}/{lab.project}", "many", "model", src)
        got = client.download(version.path, tmp_path / "dest")
    assert (got.files, got.bytes) == (len(files), sum(map(len, files.values())))
    assert all((tmp_path / "dest" / p).read_bytes() == data for p, data in files.items())


def test_a_batch_with_one_wrong_blob_keeps_nothing(world: World, file_server: ServerThread) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    stubs = stubs_of(file_server, owner)
    good, bad = os.urandom(3000), os.urandom(3000)
    wrong_digest = batch(lab.parent, good, bad)
    wrong_digest.blobs[1].digest = digest_of(b"something else")
    expect_error(INVALID, stubs.files.BatchUploadBlobs, wrong_digest, field="blobs[1].digest")
    wrong_size = batch(lab.parent, good, bad)
    wrong_size.blobs[0].size = 2999
    expect_error(INVALID, stubs.files.BatchUploadBlobs, wrong_size, field="blobs[0].size")
    md5 = batch(lab.parent, good)
    md5.blobs[0].digest = "md5:" + "0" * 32
    expect_error(INVALID, stubs.files.BatchUploadBlobs, md5, field="blobs[0].digest")
    for data in (good, bad, b"something else"):
        assert not kept(file_server, world, data)
        assert stored_rows(file_server, digest_of(data)) == []
    assert not partial_files(file_server)
    assert missing(owner, lab.parent, good, bad) == [digest_of(good), digest_of(bad)]


def test_an_over_size_batch_is_refused(world: World, file_server: ServerThread) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    stubs = stubs_of(file_server, owner)
    blobs = [os.urandom(1 << 20) for _ in range(4)] + [b"x"]  # one byte over 4 MiB
    f = expect_error(INVALID, stubs.files.BatchUploadBlobs, batch(lab.parent, *blobs))
    assert f.fields == ["blobs"] and "UploadBlob" in f.message
    many = [str(i).encode() for i in range(1001)]
    expect_error(INVALID, stubs.files.BatchUploadBlobs, batch(lab.parent, *many), field="blobs")
    assert not any(kept(file_server, world, b) for b in blobs + many[:3])
    assert not partial_files(file_server)


def test_a_batch_needs_the_right_to_log_in_the_project(
    world: World, file_server: ServerThread
) -> None:
    owner, viewer, stranger = world.person("owner"), world.person("viewer"), world.person("x")
    lab = make_lab(world, owner, {viewer: r.TEAM_ROLE_VIEWER})
    data = os.urandom(100)
    request = batch(lab.parent, data)
    expect_error(DENIED, stubs_of(file_server, viewer).files.BatchUploadBlobs, request)
    expect_error(NOT_FOUND, stubs_of(file_server, stranger).files.BatchUploadBlobs, request)
    assert not kept(file_server, world, data) and stored_rows(file_server, digest_of(data)) == []


def test_a_presigning_store_refuses_batches(world: World, server: ServerThread) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    if not presigned(owner, lab.parent):
        pytest.skip("the session server streams bytes (file:// store)")
    f = expect_error(FAILED, owner.stubs.files.BatchUploadBlobs, batch(lab.parent, b"x"))
    assert f.reason == "BLOB_STORE_TRANSFER"


def test_a_batch_writes_again_what_gc_took_after_it_was_found(
    world: World, file_server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry_server.service import files as service

    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(2000)
    found = service.batch_target

    def gc_took_it(*args: object) -> tuple[int, set[str]]:
        org_id, stored = found(*args)  # type: ignore[arg-type]
        return org_id, stored | {digest_of(data)}  # found stored, then removed by gc

    monkeypatch.setattr(service, "batch_target", gc_took_it)
    answer = stubs_of(file_server, owner).files.BatchUploadBlobs(batch(lab.parent, data))
    assert [x.existed for x in answer.blobs] == [False]
    assert kept(file_server, world, data) and stored_rows(file_server, digest_of(data)) == [
        (2, len(data))
    ]


# --- batches of small files downloaded (file:// stores) -------------------------------------


def test_a_batch_download_gives_the_files_in_request_order_and_records_the_run(
    world: World, file_server: ServerThread
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    files = {"a.bin": os.urandom(1000), "b/c.bin": os.urandom(70_000), "empty": b""}
    version = log_on(file_server, owner, lab.parent, files)
    stubs = stubs_of(file_server, owner)
    got = stubs.files.BatchDownloadArtifactFiles(
        fetch(version.path, "b/c.bin", "a.bin", "empty", "a.bin", run_id="eval-9")
    )
    assert got.artifact_version == version.name
    assert [(f.file, f.digest, f.size, f.data) for f in got.files] == [
        (p, digest_of(files[p]), len(files[p]), files[p])
        for p in ("b/c.bin", "a.bin", "empty", "a.bin")
    ]
    lineage = stubs.artifacts.GetLineage(apb.GetLineageRequest(name=version.name))
    assert list(lineage.consuming_runs) == ["eval-9"]


def test_the_client_downloads_small_files_in_batches_and_large_ones_streamed(
    world: World, file_server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry_client import files as client_files

    owner = world.person("owner")
    lab = make_lab(world, owner)
    src = tmp_path / "src"
    files = {f"small/{i}.bin": os.urandom(3000 + i) for i in range(300)}
    files["large.bin"] = os.urandom(3 << 20)
    files["nearly.bin"] = os.urandom((1 << 20) - 1)
    write_tree(src, files)
    streamed: list[str] = []
    one = client_files._download_one

    def counted(stubs: Stubs, path: str, entry: fpb.DownloadUrl, *args: object) -> int:
        streamed.append(entry.file)
        return one(stubs, path, entry, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(client_files, "_download_one", counted)
    dest = tmp_path / "dest"
    with Client(file_server.target, owner.key) as client:
        version = client.log_artifact(f"{lab.team}/{lab.project}", "many", "model", src)
        got = client.download(version.path, dest)
        assert streamed == ["large.bin"]
        assert (got.files, got.bytes) == (len(files), sum(map(len, files.values())))
        assert all((dest / p).read_bytes() == data for p, data in files.items())
        assert not list(dest.rglob("*.partial"))
        (dest / "small/7.bin").write_bytes(b"changed")  # fetched again, the rest kept
        again = client.download(version.path, dest)
    assert (again.files, again.skipped) == (1, len(files) - 1)
    assert (dest / "small/7.bin").read_bytes() == files["small/7.bin"]


def test_the_client_downloads_one_at_a_time_from_a_server_without_batches(
    world: World, file_server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.v1 import file_service_pb2_grpc

    owner = world.person("owner")
    lab = make_lab(world, owner)
    files = {f"{i}.bin": os.urandom(100 + i) for i in range(5)}
    version = log_on(file_server, owner, lab.parent, files)
    init = file_service_pb2_grpc.FileServiceStub.__init__

    def older(self: file_service_pb2_grpc.FileServiceStub, channel: grpc.Channel) -> None:
        init(self, channel)  # type: ignore[no-untyped-call]
        self.BatchDownloadArtifactFiles = channel.unary_unary(  # a method the server lacks
            "/registry.v1.FileService/NoSuchMethod",
            request_serializer=fpb.BatchDownloadArtifactFilesRequest.SerializeToString,
            response_deserializer=fpb.BatchDownloadArtifactFilesResponse.FromString,
        )

    monkeypatch.setattr(file_service_pb2_grpc.FileServiceStub, "__init__", older)
    with Client(file_server.target, owner.key) as client:
        got = client.download(version.path, tmp_path / "dest")
    assert got.files == len(files)
    assert all((tmp_path / "dest" / p).read_bytes() == d for p, d in files.items())


def test_a_batch_download_is_gated_like_a_single_one(
    world: World, file_server: ServerThread
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(500)
    version = log_on(file_server, owner, lab.parent, {"w.bin": data})
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    link(owner, registry, "net", version.name)
    path = registry_path(registry, "net", ":v0")
    viewer, restricted = world.person("viewer"), world.person("restricted")
    grant(world, registry, viewer.name, r.REGISTRY_ROLE_VIEWER)
    grant(world, registry, restricted.name, r.REGISTRY_ROLE_RESTRICTED_VIEWER)
    outsider = world.person("outsider")
    got = stubs_of(file_server, viewer).files.BatchDownloadArtifactFiles(fetch(path, "w.bin"))
    assert [f.data for f in got.files] == [data]
    request = fetch(path, "w.bin", run_id="eval-1")
    for person, code in ((restricted, DENIED), (outsider, NOT_FOUND)):
        single = expect_error(code, download, person, path, "w.bin")
        f = expect_error(
            code, stubs_of(file_server, person).files.BatchDownloadArtifactFiles, request
        )
        assert f.message == single.message
    lineage = owner.stubs.artifacts.GetLineage(apb.GetLineageRequest(name=version.name))
    assert list(lineage.consuming_runs) == []


def test_an_over_size_or_bad_batch_download_is_refused(
    world: World, file_server: ServerThread
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    files = {f"{i}.bin": os.urandom(1 << 20) for i in range(4)}
    files["x"] = b"x"  # one byte over 4 MiB
    version = log_on(file_server, owner, lab.parent, files, **{"ref.bin": "s3://bucket/ref.bin"})
    call = stubs_of(file_server, owner).files.BatchDownloadArtifactFiles
    f = expect_error(INVALID, call, fetch(version.path, *files), field="files")
    assert "DownloadArtifactFile" in f.message
    assert [x.size for x in call(fetch(version.path, *list(files)[1:])).files] == [1 << 20] * 3 + [
        1
    ]
    expect_error(INVALID, call, fetch(version.path, *["x"] * 1001), field="files")
    expect_error(INVALID, call, fetch(version.path), field="files")
    f = expect_error(FAILED, call, fetch(version.path, "x", "ref.bin"), reason="FILE_IS_REFERENCE")
    assert f.message.startswith("files[1]: ")
    f = expect_error(NOT_FOUND, call, fetch(version.path, "x", "x", "nope"))
    assert f.message.startswith("files[2]: ")


def test_a_presigning_store_refuses_batch_downloads(world: World, server: ServerThread) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    if not presigned(owner, lab.parent):
        pytest.skip("the session server streams bytes (file:// store)")
    version = log_files(owner, lab.parent, {"w.bin": b"w"})
    f = expect_error(
        FAILED, owner.stubs.files.BatchDownloadArtifactFiles, fetch(version.path, "w.bin")
    )
    assert f.reason == "BLOB_STORE_TRANSFER"
