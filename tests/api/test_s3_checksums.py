"""Who checks the sha256 of an upload to an s3:// store (`--s3-checksums`): the server
reads the object back unless the store verifies the signed x-amz-checksum-sha256
itself. moto stores the declared checksum without verifying it, so `auto` must read
back there; `verified` forced on moto shows what the server then skips. The stores are
moto's (the PostgreSQL run, or REGISTRY_TEST_BLOB_STORE=s3)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import file_service_pb2 as fpb
from registry_client import Stubs, open_channel
from registry_client.files import put_part, upload_file
from registry_server.api.app import App
from registry_server.api.settings import RunnerMode, Settings
from registry_server.cli import app as server_cli
from registry_server.storage.blobs.s3 import MAX_PARTS, MULTIPART_THRESHOLD, SINGLE_PUT_LIMIT
from registry_server.storage.db import Database

from ..support.content import make_lab
from ..support.errors import expect_error
from ..support.files import digest_of, download, entry, missing
from ..support.processes import Proc, free_port
from ..support.servers import ServerThread
from ..support.world import World

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def s3_location(blob_store: str) -> str:
    if not blob_store.startswith("s3://"):
        pytest.skip("s3:// stores: the PostgreSQL run, or REGISTRY_TEST_BLOB_STORE=s3")
    return blob_store


@contextlib.contextmanager
def s3_server(
    database_url: str, location: str, checksums: str
) -> Iterator[tuple[ServerThread, list[str]]]:
    """A server on the suite's database and moto store with `--s3-checksums checksums`,
    and the keys its store reads (GetObject) under the staging prefix."""
    db = Database(database_url)
    app = App(
        db,
        Settings(
            replica_id=f"s3-{checksums}",
            migration_runner=RunnerMode.thread,
            blob_store=location,
            s3_checksums=checksums,  # type: ignore[arg-type]
        ),
    )
    store = app.blobs
    reads: list[str] = []

    def count(params: dict[str, str], **_: object) -> None:
        if params["Key"].startswith(store.prefix + "/uploads/"):
            reads.append(params["Key"])

    store.client.meta.events.register("before-parameter-build.s3.GetObject", count)
    server = ServerThread(app).start()
    try:
        yield server, reads
    finally:
        server.stop()
        db.dispose()


def start_upload(stubs: Stubs, parent: str, data: bytes) -> fpb.StartBlobUploadResponse:
    return stubs.files.StartBlobUpload(
        fpb.StartBlobUploadRequest(parent=parent, digest=digest_of(data), size=len(data))
    )


def stored_checksum(server: ServerThread, upload_id: str) -> str:
    """The sha256 the store reports of the staging object of `upload_id`."""
    store = server.app.blobs
    listing = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "/uploads/")
    (key,) = [o["Key"] for o in listing["Contents"] if o["Key"].endswith("/" + upload_id)]
    head = store.client.head_object(Bucket=store.bucket, Key=key, ChecksumMode="ENABLED")
    return str(head.get("ChecksumSHA256", ""))


def refused_as_other_bytes(stubs: Stubs, parent: str, data: bytes, upload_id: str) -> None:
    """CompleteBlobUpload of `data`'s digest answers that the stored bytes are others."""
    expect_error(
        INVALID,
        stubs.files.CompleteBlobUpload,
        fpb.CompleteBlobUploadRequest(
            parent=parent, digest=digest_of(data), size=len(data), upload_id=upload_id
        ),
        field="digest",
    )


def test_auto_reads_back_on_moto_and_refuses_other_bytes_under_the_signed_checksum(
    world: World, database_url: str, s3_location: str, tmp_path: Path
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data, other = os.urandom(1 << 20), os.urandom(1 << 20)
    with s3_server(database_url, s3_location, "auto") as (server, reads):
        assert not server.app.blobs.store_verifies  # the probe's wrong checksum was taken
        stubs = Stubs.on(open_channel(server.target, owner.key))
        start = start_upload(stubs, lab.parent, data)
        (part,) = start.parts
        assert part.headers["x-amz-checksum-sha256"]  # signed in, sent unchanged
        # a header of the client's own (moto checks no signature): moto then keeps the
        # declared checksum, unverified
        part.headers["x-amz-sdk-checksum-algorithm"] = "SHA256"
        (tmp_path / "other").write_bytes(other)
        put_part(part, tmp_path / "other")
        assert stored_checksum(server, start.upload_id) == part.headers["x-amz-checksum-sha256"]
        refused_as_other_bytes(stubs, lab.parent, data, start.upload_id)
        assert len(reads) == 1
        assert missing(owner, lab.parent, data) == [digest_of(data)]


@pytest.mark.parametrize("checksums, reads_back", [("read-back", True), ("verified", False)])
def test_completing_an_upload_reads_it_back_unless_the_store_is_trusted(
    world: World,
    database_url: str,
    s3_location: str,
    tmp_path: Path,
    checksums: str,
    reads_back: bool,
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(3 * (1 << 20) + 7)
    source = tmp_path / "data"
    source.write_bytes(data)
    with s3_server(database_url, s3_location, checksums) as (server, reads):
        stubs = Stubs.on(open_channel(server.target, owner.key))
        upload_file(stubs, lab.parent, entry("w.bin", data), source, presigned=True)
        assert len(reads) == (1 if reads_back else 0), reads
    assert missing(owner, lab.parent, data) == []
    version = owner.stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=lab.parent, artifact_id="w", type="model", manifest=[entry("w.bin", data)]
        )
    )
    assert download(owner, version.path, "w.bin") == data


def test_a_trusted_store_is_not_trusted_for_bytes_sent_without_the_checksum(
    world: World, database_url: str, s3_location: str, tmp_path: Path
) -> None:
    """A PUT without the signed checksum (moto does not check signatures) leaves no
    checksum in the store: the server reads the object back even in `verified`."""
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data, other = os.urandom(1 << 20), os.urandom(1 << 20)
    (tmp_path / "other").write_bytes(other)
    with s3_server(database_url, s3_location, "verified") as (server, reads):
        stubs = Stubs.on(open_channel(server.target, owner.key))
        start = start_upload(stubs, lab.parent, data)
        (part,) = start.parts
        part.headers.clear()
        put_part(part, tmp_path / "other")
        refused_as_other_bytes(stubs, lab.parent, data, start.upload_id)
        assert len(reads) == 1
    assert missing(owner, lab.parent, data) == [digest_of(data)]


@pytest.mark.parametrize(
    "checksums, size, parts",
    [
        ("read-back", MULTIPART_THRESHOLD, 1),
        ("read-back", MULTIPART_THRESHOLD + 1, 5),
        ("verified", SINGLE_PUT_LIMIT, 1),
        ("verified", SINGLE_PUT_LIMIT + 1, SINGLE_PUT_LIMIT // (64 << 20) + 1),
        ("verified", 1 << 40, 1998),  # the default --max-file-size: parts of 525 MiB
    ],
)
def test_one_put_up_to_5_gib_when_the_store_verifies_else_up_to_256_mib(
    world: World, database_url: str, s3_location: str, checksums: str, size: int, parts: int
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    digest = digest_of(os.urandom(8))
    with s3_server(database_url, s3_location, checksums) as (server, _):
        stubs = Stubs.on(open_channel(server.target, owner.key))
        start = stubs.files.StartBlobUpload(
            fpb.StartBlobUploadRequest(parent=lab.parent, digest=digest, size=size)
        )
        assert len(start.parts) == parts <= MAX_PARTS
        assert sum(p.size for p in start.parts) == size
        assert bool(start.parts[0].headers) == (parts == 1)
        named = "x-amz-sdk-checksum-algorithm" in start.parts[0].headers
        assert named == (parts == 1 and checksums == "verified")
        server.app.blobs.remove_stale_partials(older_than=0)


def test_serve_says_at_start_which_checksums_it_trusts(database_url: str, s3_location: str) -> None:
    """`registry-server serve` probes the store before it listens (moto takes the wrong
    checksum) and logs the outcome; `verified` logs its warning instead."""
    for args, said in [
        ([], "took a PUT under a wrong x-amz-checksum-sha256; the server reads every upload"),
        (["--s3-checksums", "verified"], "a member can store bytes under a digest"),
    ]:
        server = Proc(
            ["--database-url", database_url, "--blob-store", s3_location,
             "--migration-runner", "off", *args],
            free_port(),
        )  # fmt: skip
        try:
            server.wait_healthy()
        finally:
            log = server.stop()
        assert said in log, log


def test_a_bad_s3_checksums_value_is_refused_with_the_choices(database_url: str) -> None:
    for args, env in [
        (["--s3-checksums", "trust-me"], {}),
        ([], {"REGISTRY_S3_CHECKSUMS": "trust-me"}),
    ]:
        result = CliRunner().invoke(
            server_cli, ["serve", "--database-url", database_url, *args], env=env
        )
        assert result.exit_code == 2, result.output
        assert "--s3-checksums" in result.output
        assert "'auto', 'verified', 'read-back'" in result.output
    db = Database(database_url)
    try:
        settings = Settings(s3_checksums="trust-me")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="--s3-checksums must be one of auto, verified"):
            assert App(db, settings).blobs is None
    finally:
        db.dispose()
