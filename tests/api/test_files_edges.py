"""File contents at their edges, as a user, an attacker and an operator would try them:
tenant isolation of blobs and of uploads under way, every download RPC for a
RESTRICTED_VIEWER, bad input that must change nothing (a run is not recorded by a
download that fails), names of the offending fields, batch limits at and just past
the limit, interrupted uploads, deleted versions and a client download of many files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import file_service_pb2 as fpb
from registry.v1 import resources_pb2 as r
from registry_client import Client

from ..support.content import make_lab
from ..support.errors import FAILED, INVALID, NOT_FOUND, expect_error
from ..support.files import download, entry, fetch, log_files, presigned, upload
from ..support.servers import ServerThread
from ..support.world import Person, World


def consumers(person: Person, version: r.ArtifactVersion) -> list[str]:
    lineage = person.stubs.artifacts.GetLineage(apb.GetLineageRequest(name=version.name))
    return list(lineage.consuming_runs)


def create(person: Person, parent: str, *entries: r.ManifestEntry) -> r.ArtifactVersion:
    return person.stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=parent, artifact_id="w", type="model", manifest=list(entries)
        )
    )


# --- downloads: RESTRICTED_VIEWER and runs -------------------------------------------------


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


# --- bad input: the field named, a short quote, nothing changed -------------------------------


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


# --- the client ------------------------------------------------------------------------------


def test_the_client_refuses_a_manifest_with_a_file_where_another_needs_a_directory(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    from registry_client.errors import InvalidArgumentError

    owner = world.person("owner")
    lab = make_lab(world, owner)
    upload(owner, lab.parent, b"a")
    upload(owner, lab.parent, b"b")
    version = create(owner, lab.parent, entry("a", b"a"), entry("a/b", b"b"))
    dest = tmp_path / "dest"
    with Client(server.target, owner.key) as client, pytest.raises(InvalidArgumentError):
        client.download(version.path, dest)
    assert not dest.exists() or not any(dest.iterdir())
