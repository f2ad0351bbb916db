"""File contents at their edges, as a user, an attacker and an operator would try them:
tenant isolation of blobs and of uploads under way, every download RPC for a
RESTRICTED_VIEWER, bad input that must change nothing (a run is not recorded by a
download that fails), names of the offending fields, batch limits at and just past
the limit, interrupted uploads, deleted versions and a client download of many files."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import file_service_pb2 as fpb
from registry.v1 import resources_pb2 as r
from registry_client import Client, Stubs
from registry_server.storage.blobs.file import FileBlobStore

from ..support.content import create_registry, grant, link, make_lab, registry_path
from ..support.errors import DENIED, FAILED, INVALID, NOT_FOUND, expect_error
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
    presigned,
    stubs_of,
    upload,
    write_tree,
)
from ..support.servers import ServerThread
from ..support.world import Person, World, make_world

# an error quotes at most a short part of what it was given
MESSAGE_MAX = 600


def consumers(person: Person, version: r.ArtifactVersion) -> list[str]:
    lineage = person.stubs.artifacts.GetLineage(apb.GetLineageRequest(name=version.name))
    return list(lineage.consuming_runs)


def create(person: Person, parent: str, *entries: r.ManifestEntry) -> r.ArtifactVersion:
    return person.stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=parent, artifact_id="w", type="model", manifest=list(entries)
        )
    )


# --- tenant isolation -------------------------------------------------------------------


def test_a_blob_of_another_organization_cannot_back_a_manifest(
    world: World, server: ServerThread, root_stubs: Stubs
) -> None:
    other = make_world(server, root_stubs)
    a, b = world.person("a"), other.person("b")
    lab_a, lab_b = make_lab(world, a), make_lab(other, b)
    data = os.urandom(5000)
    version_a = log_files(a, lab_a.parent, {"w.bin": data})
    # b knows the digest and size (they are in no secret) but not the bytes
    expect_error(FAILED, create, b, lab_b.parent, entry("w.bin", data), reason="BLOB_MISSING")
    expect_error(NOT_FOUND, download, b, version_a.path, "w.bin")
    expect_error(
        NOT_FOUND,
        b.stubs.files.GetDownloadUrls,
        fpb.GetDownloadUrlsRequest(path=version_a.path),
    )
    # a's project is not b's to upload into
    expect_error(NOT_FOUND, upload, b, lab_a.parent, os.urandom(10))
    # once b uploads the bytes, b's version has them, a's copy untouched
    upload(b, lab_b.parent, data)
    version_b = create(b, lab_b.parent, entry("w.bin", data))
    assert download(b, version_b.path, "w.bin") == data
    assert download(a, version_a.path, "w.bin") == data


def test_an_upload_under_way_cannot_be_completed_by_another_organization(
    world: World, server: ServerThread, root_stubs: Stubs, tmp_path: Path
) -> None:
    from registry_client.files import put_part

    a = world.person("a")
    lab_a = make_lab(world, a)
    if not presigned(a, lab_a.parent):
        pytest.skip("presigned uploads: s3:// stores only")
    other = make_world(server, root_stubs)
    b = other.person("b")
    lab_b = make_lab(other, b)
    data = os.urandom(3000)
    source = tmp_path / "data"
    source.write_bytes(data)
    start = a.stubs.files.StartBlobUpload(
        fpb.StartBlobUploadRequest(parent=lab_a.parent, digest=digest_of(data), size=len(data))
    )
    (part,) = start.parts
    put_part(part, source)
    stolen = fpb.CompleteBlobUploadRequest(
        parent=lab_b.parent, digest=digest_of(data), size=len(data), upload_id=start.upload_id
    )
    expect_error(INVALID, b.stubs.files.CompleteBlobUpload, stolen, field="upload_id")
    assert missing(b, lab_b.parent, data) == [digest_of(data)]
    # a's upload is still whole and completes
    done = a.stubs.files.CompleteBlobUpload(
        fpb.CompleteBlobUploadRequest(
            parent=lab_a.parent, digest=digest_of(data), size=len(data), upload_id=start.upload_id
        )
    )
    assert not done.existed and missing(a, lab_a.parent, data) == []


# --- downloads: RESTRICTED_VIEWER and runs -------------------------------------------------


def test_a_restricted_viewer_gets_nothing_from_any_download_rpc(
    world: World, server: ServerThread
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(2000)
    version = log_files(owner, lab.parent, {"w.bin": data})
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    link(owner, registry, "net", version.name, ["production"])
    restricted = world.person("restricted")
    grant(world, registry, restricted.name, r.REGISTRY_ROLE_RESTRICTED_VIEWER)
    files = restricted.stubs.files
    for path in (
        registry_path(registry, "net", ":v0"),
        registry_path(registry, "net", ":production"),
        registry_path(registry, "net"),
        world.org + "/" + registry_path(registry, "net", ":v0"),
    ):
        for run_id in ("", "eval-r"):
            expect_error(
                DENIED,
                files.GetDownloadUrls,
                fpb.GetDownloadUrlsRequest(path=path, run_id=run_id),
            )
            expect_error(
                DENIED,
                files.GetDownloadUrls,
                fpb.GetDownloadUrlsRequest(path=path, files=["w.bin"], run_id=run_id),
            )
            stream = files.DownloadArtifactFile(
                fpb.DownloadArtifactFileRequest(path=path, file="w.bin", run_id=run_id)
            )
            expect_error(DENIED, list, stream)
            expect_error(
                DENIED, files.BatchDownloadArtifactFiles, fetch(path, "w.bin", run_id=run_id)
            )
    # nor through the project path, which is the team's
    expect_error(NOT_FOUND, download, restricted, version.path, "w.bin")
    assert consumers(owner, version) == []


def test_a_download_that_fails_records_no_run(world: World, server: ServerThread) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(1500)
    ref = entry("ref.bin", b"elsewhere")
    ref.ref = "s3://bucket/ref.bin"
    upload(owner, lab.parent, data)
    version = create(owner, lab.parent, entry("w.bin", data), ref)
    files = owner.stubs.files
    expect_error(
        NOT_FOUND,
        files.GetDownloadUrls,
        fpb.GetDownloadUrlsRequest(path=version.path, files=["nope"], run_id="eval-1"),
    )
    expect_error(
        FAILED,
        files.GetDownloadUrls,
        fpb.GetDownloadUrlsRequest(path=version.path, files=["ref.bin"], run_id="eval-1"),
        reason="FILE_IS_REFERENCE",
    )
    for file, offset, code in (("nope", 0, NOT_FOUND), ("w.bin", len(data) + 1, INVALID)):
        stream = files.DownloadArtifactFile(
            fpb.DownloadArtifactFileRequest(
                path=version.path, file=file, offset=offset, run_id="eval-1"
            )
        )
        expect_error(code, list, stream)
    if not presigned(owner, lab.parent):
        expect_error(
            NOT_FOUND,
            files.BatchDownloadArtifactFiles,
            fetch(version.path, "w.bin", "nope", run_id="eval-1"),
        )
    assert consumers(owner, version) == []
    assert download(owner, version.path, "w.bin", run_id="eval-1") == data
    assert consumers(owner, version) == ["eval-1"]


def test_download_errors_name_the_files_field(world: World, server: ServerThread) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    version = log_files(owner, lab.parent, {"w.bin": b"w"})
    urls = owner.stubs.files.GetDownloadUrls
    expect_error(
        INVALID,
        urls,
        fpb.GetDownloadUrlsRequest(path=version.path, files=["w.bin", ""]),
        field="files[1]",
    )
    f = expect_error(
        NOT_FOUND, urls, fpb.GetDownloadUrlsRequest(path=version.path, files=["w.bin", "nope"])
    )
    assert f.message.startswith("files[1]: ")


def test_a_url_listing_names_no_more_files_than_a_version_can_have(
    world: World, server: ServerThread
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    version = log_files(owner, lab.parent, {"w.bin": b"w"})
    limit = server.app.settings.max_files_per_version
    urls = owner.stubs.files.GetDownloadUrls
    at_limit = urls(fpb.GetDownloadUrlsRequest(path=version.path, files=["w.bin"] * limit))
    assert len(at_limit.urls) == limit
    expect_error(
        INVALID,
        urls,
        fpb.GetDownloadUrlsRequest(path=version.path, files=["w.bin"] * (limit + 1)),
        field="files",
    )


def test_a_deleted_version_gives_no_bytes_and_records_no_run(
    world: World, file_server: ServerThread
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(700)
    version = log_on(file_server, owner, lab.parent, {"w.bin": data})
    stubs = stubs_of(file_server, owner)
    stubs.artifacts.DeleteArtifactVersion(apb.DeleteArtifactVersionRequest(name=version.name))
    # refused as `use` refuses it
    use = expect_error(
        NOT_FOUND,
        stubs.artifacts.UseArtifactVersion,
        apb.UseArtifactVersionRequest(path=version.path, run_id="eval-d"),
    )
    assert "deleted" in use.message
    for run_id in ("", "eval-d"):
        stream = stubs.files.DownloadArtifactFile(
            fpb.DownloadArtifactFileRequest(path=version.path, file="w.bin", run_id=run_id)
        )
        calls = [
            (list, stream),
            (stubs.files.BatchDownloadArtifactFiles, fetch(version.path, "w.bin", run_id=run_id)),
            (
                stubs.files.GetDownloadUrls,
                fpb.GetDownloadUrlsRequest(path=version.path, run_id=run_id),
            ),
        ]
        for fn, request in calls:
            assert expect_error(NOT_FOUND, fn, request).message == use.message


# --- bad input: the field named, a short quote, nothing changed -------------------------------


def test_errors_quote_only_a_short_part_of_huge_input(world: World, server: ServerThread) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    version = log_files(owner, lab.parent, {"w.bin": b"w"})
    huge = "x" * 200_000
    files = owner.stubs.files
    upload_to_huge = (
        (files.StartBlobUpload, fpb.StartBlobUploadRequest(parent=huge, digest=digest_of(b"")))
        if presigned(owner, lab.parent)
        else (files.UploadBlob, chunks(huge, b""))
    )
    calls = [
        (*upload_to_huge, INVALID),
        (files.UploadBlob, chunks(lab.parent, b"data", digest="sha256:" + huge), INVALID),
        (
            files.FindMissingBlobs,
            fpb.FindMissingBlobsRequest(parent=huge, blobs=[fpb.BlobRef(digest=digest_of(b""))]),
            INVALID,
        ),
        (
            files.FindMissingBlobs,
            fpb.FindMissingBlobsRequest(parent=lab.parent, blobs=[fpb.BlobRef(digest=huge)]),
            INVALID,
        ),
        (files.GetDownloadUrls, fpb.GetDownloadUrlsRequest(path=huge), INVALID),
        (
            files.GetDownloadUrls,
            fpb.GetDownloadUrlsRequest(path=version.path, files=[huge]),
            NOT_FOUND,
        ),
        (
            files.GetDownloadUrls,
            fpb.GetDownloadUrlsRequest(path=version.path, run_id=huge),
            INVALID,
        ),
        (
            files.StartBlobUpload,
            fpb.StartBlobUploadRequest(parent=lab.parent, digest=huge, size=1),
            INVALID,
        ),
    ]
    for fn, request, code in calls:
        f = expect_error(code, fn, request)
        assert len(f.message) < MESSAGE_MAX, (fn, f.message[:300])
    stream = files.DownloadArtifactFile(
        fpb.DownloadArtifactFileRequest(path=version.path, file=huge)
    )
    f = expect_error(NOT_FOUND, list, stream)
    assert len(f.message) < MESSAGE_MAX


@pytest.mark.parametrize(
    ("digest", "size", "field"),
    [
        (digest_of(b"data"), -1, "size"),
        (digest_of(b"data"), 2**63 - 1, "size"),
        ("sha256:" + "0" * 63, 4, "digest"),
        ("sha256:" + "g" * 64, 4, "digest"),
        ("md5:" + "0" * 32, 4, "digest"),
        ("", 4, "digest"),
    ],
)
def test_bad_declarations_are_refused_by_every_upload_rpc(
    world: World, server: ServerThread, digest: str, size: int, field: str
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    files = owner.stubs.files
    expect_error(
        INVALID,
        files.FindMissingBlobs,
        fpb.FindMissingBlobsRequest(
            parent=lab.parent, blobs=[fpb.BlobRef(digest=digest, size=size)]
        ),
        field=f"blobs[0].{field}",
    )
    first = fpb.UploadBlobRequest(parent=lab.parent, digest=digest, size=size, data=b"data")
    expect_error(INVALID, files.UploadBlob, iter([first]), field=field)
    expect_error(
        INVALID,
        files.StartBlobUpload,
        fpb.StartBlobUploadRequest(parent=lab.parent, digest=digest, size=size),
        field=field,
    )
    expect_error(
        INVALID,
        files.CompleteBlobUpload,
        fpb.CompleteBlobUploadRequest(parent=lab.parent, digest=digest, size=size, upload_id="x"),
        field=field,
    )
    assert missing(owner, lab.parent, b"data") == [digest_of(b"data")]


def test_a_manifest_entry_that_cannot_be_stored_is_a_bad_argument(world: World) -> None:
    """An md5 digest is fine for a reference, but no upload can store a file under it."""
    owner = world.person("owner")
    lab = make_lab(world, owner)
    upload(owner, lab.parent, b"")
    md5 = r.ManifestEntry(path="w.bin", digest="md5:" + "0" * 32, size=4)
    expect_error(
        INVALID, create, owner, lab.parent, entry("a", b""), md5, field="manifest[1].digest"
    )
    md5.ref = "s3://bucket/w.bin"
    assert create(owner, lab.parent, entry("a", b""), md5).version_index == 0


def test_an_empty_file_uploads_and_downloads(world: World, server: ServerThread) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    upload(owner, lab.parent, b"")
    assert missing(owner, lab.parent, b"") == []
    version = create(owner, lab.parent, entry("empty", b""))
    assert download(owner, version.path, "empty") == b""
    if not presigned(owner, lab.parent):
        stream = owner.stubs.files.DownloadArtifactFile(
            fpb.DownloadArtifactFileRequest(path=version.path, file="empty")
        )
        (only,) = list(stream)
        assert (only.size, only.data, only.digest) == (0, b"", digest_of(b""))
        expect_error(
            INVALID, owner.stubs.files.UploadBlob, chunks(lab.parent, b"x", size=0), field="size"
        )


def test_an_upload_without_a_first_message_is_refused(world: World, server: ServerThread) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    expect_error(INVALID, owner.stubs.files.UploadBlob, iter([]), field="parent")
    no_parent = fpb.UploadBlobRequest(digest=digest_of(b"d"), size=1, data=b"d")
    expect_error(INVALID, owner.stubs.files.UploadBlob, iter([no_parent]), field="parent")
    assert missing(owner, lab.parent, b"d") == [digest_of(b"d")]


# --- interrupted uploads ----------------------------------------------------------------------


def test_an_interrupted_upload_leaves_nothing_and_can_be_sent_again(
    world: World, file_server: ServerThread
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    stubs = stubs_of(file_server, owner)
    data = os.urandom(5 << 20)
    sent_two = threading.Event()
    go_on = threading.Event()

    def cut_short() -> Iterator[fpb.UploadBlobRequest]:
        for i, message in enumerate(chunks(lab.parent, data)):
            if i == 2:
                sent_two.set()
                go_on.wait(10)  # the caller cancels meanwhile
                return
            yield message

    call = stubs.files.UploadBlob.future(cut_short())
    assert sent_two.wait(10)
    store = file_server.app.blobs
    assert isinstance(store, FileBlobStore)
    call.cancel()
    go_on.set()
    for _ in range(100):
        if not list(store.partials.iterdir()):
            break
        threading.Event().wait(0.05)
    assert not list(store.partials.iterdir())
    assert not kept(file_server, world, data)
    assert missing(owner, lab.parent, data) == [digest_of(data)]
    answer = stubs.files.UploadBlob(chunks(lab.parent, data))
    assert not answer.existed and kept(file_server, world, data)


# --- batch limits ----------------------------------------------------------------------------


def test_batches_at_the_limits_are_taken(world: World, file_server: ServerThread) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    stubs = stubs_of(file_server, owner)
    full = [os.urandom(1 << 20) for _ in range(4)]  # exactly 4 MiB
    assert [b.existed for b in stubs.files.BatchUploadBlobs(batch(lab.parent, *full)).blobs] == [
        False
    ] * 4
    many = [os.urandom(8) + str(i).encode() for i in range(1000)]  # exactly 1,000 blobs
    assert len(stubs.files.BatchUploadBlobs(batch(lab.parent, *many)).blobs) == 1000
    files = {f"big/{i}": data for i, data in enumerate(full)}
    files.update({f"small/{i}": data for i, data in enumerate(many)})
    manifest = [entry(path, data) for path, data in files.items()]
    version = create(owner, lab.parent, *manifest)
    got = stubs.files.BatchDownloadArtifactFiles(
        fetch(version.path, *[f"big/{i}" for i in range(4)])
    )
    assert [f.data for f in got.files] == full
    small = [f"small/{i}" for i in range(1000)]
    got = stubs.files.BatchDownloadArtifactFiles(fetch(version.path, *small))
    assert [f.data for f in got.files] == many
    expect_error(
        INVALID,
        stubs.files.BatchDownloadArtifactFiles,
        fetch(version.path, *small, "small/0"),
        field="files",
    )


# --- the client ------------------------------------------------------------------------------


def test_the_client_downloads_a_version_of_many_files(
    world: World, file_server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry_client import files as client_files

    owner = world.person("owner")
    lab = make_lab(world, owner)
    src = tmp_path / "src"
    files = {f"d{i % 7}/{i}.txt": f"file {i}".encode() for i in range(2500)}
    write_tree(src, files)
    sizes: list[int] = []
    real = client_files.download_batch

    def counted(stubs: Stubs, path: str, targets: list[object], *args: object) -> list[int]:
        sizes.append(len(targets))
        return real(stubs, path, targets, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(client_files, "download_batch", counted)
    dest = tmp_path / "dest"
    with Client(file_server.target, owner.key) as client:
        version = client.log_artifact(f"{lab.team}/{lab.project}", "many", "model", src)
        got = client.download(version.path, dest, run_id="eval-many")
    assert (got.files, got.bytes) == (len(files), sum(map(len, files.values())))
    assert sum(sizes) == len(files) and max(sizes) <= 1000
    assert all((dest / p).read_bytes() == data for p, data in files.items())
    assert consumers(owner, version) == ["eval-many"]


def test_a_manifest_with_a_file_where_another_needs_a_directory_is_refused(
    world: World,
) -> None:
    """`a` and `a/b` could not both be written out as files: refused, in either order,
    naming the entry inside the other, and nothing is created."""
    owner = world.person("owner")
    lab = make_lab(world, owner)
    upload(owner, lab.parent, b"a")
    upload(owner, lab.parent, b"b")
    expect_error(
        INVALID, create, owner, lab.parent, entry("a", b"a"), entry("a/b", b"b"),
        field="manifest[1].path",
    )  # fmt: skip
    expect_error(
        INVALID, create, owner, lab.parent, entry("a/b", b"b"), entry("a", b"a"),
        field="manifest[0].path",
    )  # fmt: skip
    # the first version made is index 0: the refused ones left nothing
    assert create(owner, lab.parent, entry("a/b", b"b"), entry("ab", b"a")).version_index == 0


def test_manifest_errors_name_the_entry_by_its_place_in_the_request(world: World) -> None:
    """Entries are stored sorted by path, but an error names the request's index."""
    owner = world.person("owner")
    lab = make_lab(world, owner)
    upload(owner, lab.parent, b"zz")
    upload(owner, lab.parent, b"a")
    wrong_size = r.ManifestEntry(path="z", digest=digest_of(b"zz"), size=1)
    expect_error(
        INVALID, create, owner, lab.parent, wrong_size, entry("a", b"a"), field="manifest[0].size"
    )
    never_uploaded = entry("y", b"never uploaded")
    err = expect_error(FAILED, create, owner, lab.parent, never_uploaded, entry("a", b"a"))
    assert "manifest[0]" in err.message


def test_the_client_finishes_a_download_whose_partial_file_is_whole(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    """A download killed between its last byte and the rename leaves NAME.partial whole:
    the next one keeps it (from an s3:// store it asked for the range past the end). A
    large file: a small one is fetched whole again, in a batch."""
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom((1 << 20) + 5)
    version = log_files(owner, lab.parent, {"w.bin": data})
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "w.bin.partial").write_bytes(data)
    with Client(server.target, owner.key) as client:
        got = client.download(version.path, dest)
    assert (got.files, got.bytes) == (1, 0)
    assert (dest / "w.bin").read_bytes() == data and not (dest / "w.bin.partial").exists()
