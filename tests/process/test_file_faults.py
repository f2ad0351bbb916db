"""A client or a server killed in the middle of an upload: no version, no blob anyone
can see, no partial file left behind once the upload is aborted or gc-blobs ran; and
gc-blobs as a command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import file_service_pb2 as fpb
from registry_client import Client, Stubs, open_channel
from registry_client.files import put_part
from registry_server.cli import app as server_cli
from registry_server.storage.blobs.file import FileBlobStore
from registry_server.storage.blobs.s3 import S3BlobStore

from ..support.content import make_lab
from ..support.errors import expect_error
from ..support.files import digest_of, entry, missing
from ..support.processes import Proc, bootstrap, free_port, run_cli
from ..support.servers import ServerThread
from ..support.world import Person, World

# Sends the first MiB of a 64 MiB file, says so on stdout, then waits to be killed.
UPLOADER = """
import os, sys, time
from registry.v1 import file_service_pb2 as fpb
from registry_client import Stubs, open_channel

target, key, parent, digest = sys.argv[1:5]
stubs = Stubs.on(open_channel(target, key))

def messages():
    yield fpb.UploadBlobRequest(parent=parent, digest=digest, size=64 << 20, data=b"x" * (1 << 20))
    print("sent", flush=True)
    time.sleep(600)

stubs.files.UploadBlob(messages())
"""


def assert_not_loggable(owner: Person, parent: str, data: bytes) -> None:
    """The bytes are not stored: a version naming them is refused."""
    assert missing(owner, parent, data) == [digest_of(data)]
    expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        owner.stubs.artifacts.CreateArtifactVersion,
        apb.CreateArtifactVersionRequest(
            parent=parent, artifact_id="w", type="model", manifest=[entry("w.bin", data)]
        ),
        reason="BLOB_MISSING",
    )


def wait_until(check: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def test_a_client_killed_mid_upload_leaves_no_version_and_no_visible_blob(
    world: World, server: ServerThread
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = b"x" * (64 << 20)
    digest = entry("w.bin", data).digest
    store = server.app.blobs
    if not isinstance(store, FileBlobStore):
        pytest.skip("streams through the server: file:// only (see the presigned test below)")
    before = set(store.partials.iterdir())
    child = subprocess.Popen(
        [sys.executable, "-c", UPLOADER, server.target, owner.key, lab.parent, digest],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "sent"
        wait_until(lambda: set(store.partials.iterdir()) - before, "the upload is under way")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    wait_until(lambda: set(store.partials.iterdir()) <= before, "the partial file is gone")
    assert missing(owner, lab.parent, data) == [digest]
    assert digest.removeprefix("sha256:") not in {p.name for p in store.root.rglob("*")}
    assert_not_loggable(owner, lab.parent, data)


def test_a_presigned_upload_never_completed_is_invisible_and_gc_removes_it(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    store = server.app.blobs
    if not isinstance(store, S3BlobStore):
        pytest.skip("presigned uploads: s3:// only")
    owner = world.person("owner")
    lab = make_lab(world, owner)
    data = os.urandom(10_000)
    source = tmp_path / "data"
    source.write_bytes(data)
    start = owner.stubs.files.StartBlobUpload(
        fpb.StartBlobUploadRequest(parent=lab.parent, digest=digest_of(data), size=len(data))
    )
    for part in start.parts:
        put_part(part, source)  # the bytes are in the store; the client dies before Complete
    staging = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "/uploads/")
    assert staging.get("KeyCount", 0) >= 1
    assert missing(owner, lab.parent, data) == [digest_of(data)]
    assert_not_loggable(owner, lab.parent, data)
    assert store.remove_stale_partials(older_than=0) >= 1
    left = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "/uploads/")
    assert left.get("KeyCount", 0) == 0


def test_gc_blobs_removes_partial_uploads_a_killed_server_left(
    server: ServerThread, database_url: str, tmp_path: Path
) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    stale = store.partials / "left-by-a-killed-server"
    stale.write_bytes(b"half a file")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    recent = store.partials / "an-upload-under-way"
    recent.write_bytes(b"still coming")
    result = CliRunner().invoke(
        server_cli,
        ["gc-blobs", "--older-than", "1h", "--database-url", database_url,
         "--blob-store", store.location],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not stale.exists() and recent.exists()
    bad = CliRunner().invoke(
        server_cli, ["gc-blobs", "--older-than", "soon", "--database-url", database_url]
    )
    assert bad.exit_code == 2


def test_a_server_killed_mid_upload_leaves_no_visible_blob(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    key = bootstrap(url)
    store = FileBlobStore(tmp_path / "blobs")
    args = ["--database-url", url, "--blob-store", store.location]
    port = free_port()
    server = Proc(args, port)
    server.wait_healthy()
    target = f"127.0.0.1:{port}"
    with Client(target, key) as client:
        client.create_team("lab")
        client.create_project("lab", "train")
    parent = "teams/lab/projects/train"
    data = b"y" * (8 << 20)
    sent, release = threading.Event(), threading.Event()

    def messages() -> Iterator[fpb.UploadBlobRequest]:
        yield fpb.UploadBlobRequest(
            parent=parent, digest=digest_of(data), size=len(data), data=data[: 1 << 20]
        )
        sent.set()
        release.wait(60)

    stubs = Stubs.on(open_channel(target, key))
    failures: list[BaseException] = []

    def upload() -> None:
        try:
            stubs.files.UploadBlob(messages(), timeout=60)
        except grpc.RpcError as err:
            failures.append(err)

    uploader = threading.Thread(target=upload)
    uploader.start()
    try:
        assert sent.wait(30)
        wait_until(lambda: any(store.partials.iterdir()), "the upload is under way")
        server.kill()
    finally:
        release.set()
        uploader.join(30)
    assert failures, "the upload cannot have succeeded"
    restarted = Proc(args, port)
    try:
        restarted.wait_healthy()
        with Client(target, key) as client:
            stubs = client.stubs
            answer = stubs.files.FindMissingBlobs(
                fpb.FindMissingBlobsRequest(
                    parent=parent, blobs=[fpb.BlobRef(digest=digest_of(data), size=len(data))]
                )
            )
            assert [b.digest for b in answer.missing] == [digest_of(data)]
        assert digest_of(data).removeprefix("sha256:") not in {
            p.name for p in store.root.rglob("*")
        }
        assert any(store.partials.iterdir())  # left behind, under no blob's name
        gc = run_cli("gc-blobs", "--older-than", "0s", "--database-url", url,
                     "--blob-store", store.location)  # fmt: skip
        assert gc.returncode == 0, gc.stderr
        assert not any(store.partials.iterdir())
    finally:
        restarted.stop()
