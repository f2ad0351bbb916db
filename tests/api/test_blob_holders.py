"""Proof of possession, per team: blobs are stored once per organization, but a team
uses one (FindMissingBlobs does not list it, its versions may name it) only once a
writer of one of its projects sent the bytes and the server verified them. A member
of team B who learns a file digest of team A elsewhere cannot reach A's bytes, cannot
learn whether the organization stores them, and cannot spoil them with wrong bytes.
Each upload path on each store: UploadBlob and BatchUploadBlobs (file://), presigned
StartBlobUpload/CompleteBlobUpload (s3://, moto). And the revision that recorded the
first holders: teams keep using what their versions named before it."""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import file_service_pb2 as fpb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs
from registry_server.api.app import App
from registry_server.api.settings import Settings
from registry_server.service.files import collect_garbage
from registry_server.storage import models as m
from registry_server.storage.blobs.file import FileBlobStore
from registry_server.storage.blobs.s3 import S3BlobStore
from registry_server.storage.db import Database

from ..support.content import Lab, make_lab
from ..support.errors import FAILED, INVALID, NOT_FOUND, expect_error
from ..support.files import batch, chunks, digest_of, entry, org_of, stubs_of
from ..support.s3 import moto_server
from ..support.servers import ServerThread, fresh_database
from ..support.world import Person, World, make_world

# --- servers: a file:// store and an s3:// one, over the session's database ---------------


@pytest.fixture(scope="module")
def s3_server(database_url: str, blob_store: str) -> Iterator[ServerThread]:
    """A server with an s3:// store: the session's moto (PostgreSQL run) or one of
    this module's own."""
    with contextlib.ExitStack() as stack:
        location = blob_store
        if not location.startswith("s3://"):
            location = stack.enter_context(moto_server())
        db = Database(database_url)
        stack.callback(db.dispose)
        thread = ServerThread(App(db, Settings(blob_store=location))).start()
        stack.callback(thread.stop)
        yield thread


@pytest.fixture(params=["file", "s3"])
def store_server(request: pytest.FixtureRequest, file_server: ServerThread) -> ServerThread:
    if request.param == "file":
        return file_server
    return request.getfixturevalue("s3_server")  # type: ignore[no-any-return]


# --- the scene: two teams of one organization ----------------------------------------------


@dataclass
class Scene:
    server: ServerThread
    world: World
    a: Person  # team A's owner, who logged the file
    b: Person  # a MEMBER of team B, who learned its digest elsewhere
    lab_a: Lab
    lab_b: Lab
    data: bytes
    version_a: r.ArtifactVersion

    def stubs(self, person: Person) -> Stubs:
        return stubs_of(self.server, person)


def scene(server: ServerThread, world: World, size: int = 5000) -> Scene:
    a, b, b_owner = world.person("a"), world.person("b"), world.person("b-owner")
    lab_a = make_lab(world, a)
    lab_b = make_lab(world, b_owner, {b: r.TEAM_ROLE_MEMBER})
    data = os.urandom(size)
    stubs = stubs_of(server, a)
    send(server, stubs, lab_a.parent, data)
    version_a = create(stubs, lab_a.parent, data)
    return Scene(server, world, a, b, lab_a, lab_b, data, version_a)


def create(stubs: Stubs, parent: str, data: bytes, artifact: str = "w") -> r.ArtifactVersion:
    return stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=parent, artifact_id=artifact, type="model", manifest=[entry("w.bin", data)]
        )
    )


def missing(stubs: Stubs, parent: str, *blobs: bytes) -> list[str]:
    answer = stubs.files.FindMissingBlobs(
        fpb.FindMissingBlobsRequest(
            parent=parent, blobs=[fpb.BlobRef(digest=digest_of(x), size=len(x)) for x in blobs]
        )
    )
    return [x.digest for x in answer.missing]


def download(stubs: Stubs, path: str) -> bytes:
    """w.bin of the version at `path`, from whichever store the server has."""
    from registry_client.files import fetch_url

    listing = stubs.files.GetDownloadUrls(fpb.GetDownloadUrlsRequest(path=path, files=["w.bin"]))
    if listing.streamed:
        stream = stubs.files.DownloadArtifactFile(
            fpb.DownloadArtifactFileRequest(path=path, file="w.bin")
        )
        return b"".join(message.data for message in stream)
    (url,) = listing.urls
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "w.bin"
        fetch_url(url.url, out, url, None)
        return out.read_bytes()


# --- the upload paths ------------------------------------------------------------------------


def stream(stubs: Stubs, parent: str, data: bytes, digest: str, size: int) -> fpb.Blob:
    return stubs.files.UploadBlob(chunks(parent, data, digest=digest, size=size))


def batched(stubs: Stubs, parent: str, data: bytes, digest: str, size: int) -> fpb.Blob:
    request = batch(parent, data)
    request.blobs[0].digest, request.blobs[0].size = digest, size
    (blob,) = stubs.files.BatchUploadBlobs(request).blobs
    return blob


def presigned(stubs: Stubs, parent: str, data: bytes, digest: str, size: int) -> fpb.Blob:
    """StartBlobUpload, the PUT of `data` to its URL, CompleteBlobUpload."""
    start = stubs.files.StartBlobUpload(
        fpb.StartBlobUploadRequest(parent=parent, digest=digest, size=size)
    )
    assert not start.existed and start.parts  # a team that does not hold it sends it
    (part,) = start.parts
    headers = {**part.headers, "Content-Type": "application/octet-stream"}
    put = urllib.request.Request(part.url, data=data, method="PUT", headers=headers)
    with contextlib.suppress(urllib.error.HTTPError):  # a store may refuse wrong bytes
        urllib.request.urlopen(put, timeout=30).close()
    return stubs.files.CompleteBlobUpload(
        fpb.CompleteBlobUploadRequest(
            parent=parent, digest=digest, size=size, upload_id=start.upload_id
        )
    )


Upload = Callable[[Stubs, str, bytes, str, int], fpb.Blob]


def paths_of(server: ServerThread) -> list[Upload]:
    return [presigned] if server.app.blobs.presigns else [stream, batched]


def send(server: ServerThread, stubs: Stubs, parent: str, data: bytes) -> fpb.Blob:
    """Uploads `data` through the store's first upload path."""
    return paths_of(server)[0](stubs, parent, data, digest_of(data), len(data))


# --- what the store holds -------------------------------------------------------------------


def blob_rows(server: ServerThread, data: bytes) -> int:
    with server.app.db.read() as s:
        return int(
            s.execute(
                select(func.count()).select_from(m.Blob).where(m.Blob.digest == digest_of(data))
            ).scalar_one()
        )


def stored_copy(s: Scene) -> tuple[object, ...]:
    """What identifies the stored copy of the scene's file: it must never change."""
    store = s.server.app.blobs
    hex_digest = digest_of(s.data).removeprefix("sha256:")
    org_id = org_of(s.server, s.world)
    if isinstance(store, FileBlobStore):
        info = store.path(org_id, hex_digest).stat()
        return (info.st_ino, info.st_mtime_ns, info.st_size)
    assert isinstance(store, S3BlobStore)
    head = store.client.head_object(Bucket=store.bucket, Key=store.key(org_id, hex_digest))
    return (head["ETag"], head["LastModified"], head["ContentLength"])


def copies(s: Scene) -> int:
    """How many objects of the store are named by the file's digest."""
    store = s.server.app.blobs
    hex_digest = digest_of(s.data).removeprefix("sha256:")
    if isinstance(store, FileBlobStore):
        return sum(1 for _ in store.root.rglob(hex_digest))
    assert isinstance(store, S3BlobStore)
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "/")
    return sum(1 for obj in listed.get("Contents", []) if obj["Key"].endswith(hex_digest))


def leftovers(server: ServerThread) -> list[str]:
    """Partial uploads (file://) or staging objects (s3://) still in the store."""
    store = server.app.blobs
    if isinstance(store, FileBlobStore):
        return [p.name for p in store.partials.iterdir()]
    assert isinstance(store, S3BlobStore)
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store._key("uploads") + "/")
    return [obj["Key"] for obj in listed.get("Contents", [])]


# --- another team's digest ------------------------------------------------------------------


def test_another_team_can_neither_name_nor_fetch_nor_detect_a_blob_it_never_sent(
    store_server: ServerThread, world: World
) -> None:
    s = scene(store_server, world)
    a, b = s.stubs(s.a), s.stubs(s.b)
    never = os.urandom(len(s.data))  # a file nobody uploaded, of the same size
    # FindMissingBlobs: the same answer as for a file the organization lacks
    assert missing(a, s.lab_a.parent, s.data) == []
    assert missing(b, s.lab_b.parent, s.data, never) == [digest_of(s.data), digest_of(never)]
    # CreateArtifactVersion: BLOB_MISSING, with the message of a file never uploaded
    taken = expect_error(FAILED, create, b, s.lab_b.parent, s.data, reason="BLOB_MISSING")
    absent = expect_error(FAILED, create, b, s.lab_b.parent, never, reason="BLOB_MISSING")
    assert taken.message.replace(digest_of(s.data)[:23], "D") == absent.message.replace(
        digest_of(never)[:23], "D"
    )
    # no download of team A's version, whatever the call
    version = s.version_a.name
    expect_error(NOT_FOUND, b.files.GetDownloadUrls, fpb.GetDownloadUrlsRequest(path=version))
    expect_error(
        NOT_FOUND,
        lambda: list(
            b.files.DownloadArtifactFile(
                fpb.DownloadArtifactFileRequest(path=version, file="w.bin")
            )
        ),
    )
    expect_error(
        NOT_FOUND,
        b.files.BatchDownloadArtifactFiles,
        fpb.BatchDownloadArtifactFilesRequest(path=version, files=["w.bin"]),
    )
    # what the team failed to do touched nothing: one row, one copy
    assert blob_rows(s.server, s.data) == 1 and copies(s) == 1


def test_a_team_that_sends_the_bytes_uses_the_blob_and_the_store_keeps_one_copy(
    store_server: ServerThread, world: World
) -> None:
    for upload in paths_of(store_server):
        s = scene(store_server, world)
        a, b = s.stubs(s.a), s.stubs(s.b)
        before = stored_copy(s)
        sent = upload(b, s.lab_b.parent, s.data, digest_of(s.data), len(s.data))
        # `existed`: the organization stored these bytes already (they were not kept again)
        assert (sent.digest, sent.size, sent.existed) == (digest_of(s.data), len(s.data), True)
        assert missing(b, s.lab_b.parent, s.data) == []
        version_b = create(b, s.lab_b.parent, s.data)
        assert download(b, version_b.name) == s.data
        assert download(a, s.version_a.name) == s.data
        assert stored_copy(s) == before, f"{upload.__name__} wrote over the stored copy"
        assert blob_rows(s.server, s.data) == 1 and copies(s) == 1
        assert not leftovers(s.server)
        # held now: a second upload sends nothing
        if upload is stream:
            first_only = fpb.UploadBlobRequest(
                parent=s.lab_b.parent, digest=digest_of(s.data), size=len(s.data)
            )
            assert b.files.UploadBlob(iter([first_only])).existed
        if upload is presigned:
            again = b.files.StartBlobUpload(
                fpb.StartBlobUploadRequest(
                    parent=s.lab_b.parent, digest=digest_of(s.data), size=len(s.data)
                )
            )
            assert again.existed and not again.parts


def test_wrong_bytes_under_another_teams_digest_fail_and_change_nothing(
    store_server: ServerThread, world: World
) -> None:
    s = scene(store_server, world)
    a, b = s.stubs(s.a), s.stubs(s.b)
    before = stored_copy(s)
    wrong = os.urandom(len(s.data))
    shorter = s.data[:-1]
    for upload in paths_of(store_server):
        for data in (wrong, shorter):
            f = expect_error(
                INVALID, upload, b, s.lab_b.parent, data, digest_of(s.data), len(s.data)
            )
            assert any(x.endswith(("digest", "size", "upload_id")) for x in f.fields), f
            assert len(f.message) < 600
    assert missing(b, s.lab_b.parent, s.data) == [digest_of(s.data)]
    expect_error(FAILED, create, b, s.lab_b.parent, s.data, reason="BLOB_MISSING")
    assert download(a, s.version_a.name) == s.data
    assert stored_copy(s) == before
    assert blob_rows(s.server, s.data) == 1 and copies(s) == 1
    assert not leftovers(s.server)


def test_a_project_of_the_same_team_uses_the_blob_without_sending_it(
    store_server: ServerThread, world: World
) -> None:
    s = scene(store_server, world)
    a = s.stubs(s.a)
    sibling = f"teams/{s.lab_a.team}/projects/sibling"
    a.artifacts.CreateProject(
        apb.CreateProjectRequest(parent=f"teams/{s.lab_a.team}", project_id="sibling")
    )
    assert missing(a, sibling, s.data) == []
    assert download(a, create(a, sibling, s.data).name) == s.data


def test_gc_takes_the_holders_of_a_blob_it_collects(
    file_server: ServerThread, world: World
) -> None:
    """A blob no version uses goes with who held it; uploaded again, it is held anew."""
    data = os.urandom(700)
    a = world.person("a")
    lab = make_lab(world, a)
    stubs = stubs_of(file_server, a)
    send(file_server, stubs, lab.parent, data)
    digest = digest_of(data)

    def holders() -> int:
        with file_server.app.db.read() as session:
            return int(
                session.execute(
                    select(func.count())
                    .select_from(m.TeamBlob)
                    .join(m.Blob, m.Blob.id == m.TeamBlob.blob_id)
                    .where(m.Blob.digest == digest)
                ).scalar_one()
            )

    assert holders() == 1
    with file_server.app.db.write() as session:  # untouched for long
        session.execute(
            m.Blob.__table__.update().where(m.Blob.digest == digest).values(touch_time=0)
        )
    collect_garbage(file_server.app.db, file_server.app.blobs, older_than=3600)
    assert blob_rows(file_server, data) == 0 and holders() == 0
    with file_server.app.db.read() as session:
        orphans = session.execute(
            select(func.count())
            .select_from(m.TeamBlob)
            .outerjoin(m.Blob, m.Blob.id == m.TeamBlob.blob_id)
            .where(m.Blob.id.is_(None))
        ).scalar_one()
    assert orphans == 0
    assert missing(stubs, lab.parent, data) == [digest]
    send(file_server, stubs, lab.parent, data)
    assert holders() == 1 and missing(stubs, lab.parent, data) == []


# --- the revision that recorded the first holders ------------------------------------------


def test_teams_keep_using_what_their_versions_named_before_holders_were_recorded(
    tmp_path: Path,
) -> None:
    """A database whose versions were logged before revision 0009 (the holders dropped
    by a downgrade to 0008, then recorded by the upgrade): each team holds the blobs its
    versions name, reference entries aside, and nothing more."""
    from alembic import command
    from typer.testing import CliRunner

    from registry_client import open_channel
    from registry_server.cli import app as cli
    from registry_server.storage.migrate import alembic_config, upgrade

    @contextlib.contextmanager
    def serving(url: str) -> Iterator[ServerThread]:
        db = Database(url)
        thread = ServerThread(App(db, Settings(blob_store=(tmp_path / "blobs").as_uri())))
        thread.start()
        try:
            yield thread
        finally:
            thread.stop()
            db.dispose()

    with fresh_database(label="holders") as url:
        boot = CliRunner().invoke(
            cli, ["bootstrap", "--organization", "root", "--admin", "root", "--database-url", url]
        )
        assert boot.exit_code == 0, boot.output
        root_key = boot.stdout.strip().splitlines()[-1]
        with serving(url) as server:
            world = make_world(server, Stubs.on(open_channel(server.target, root_key)))
            s = scene(server, world)
            a = s.stubs(s.a)
            uploaded_only = os.urandom(300)  # sent, never named by a version
            send(server, a, s.lab_a.parent, uploaded_only)
            elsewhere = os.urandom(400)  # a reference entry's digest that is stored
            send(server, a, s.lab_a.parent, elsewhere)
            by_ref = entry("ref.bin", elsewhere)
            by_ref.ref = "s3://bucket/ref.bin"
            b_owner = world.person("b-owner")
            lab_b = make_lab(world, b_owner)
            b_owner.stubs.artifacts.CreateArtifactVersion(
                apb.CreateArtifactVersionRequest(
                    parent=lab_b.parent, artifact_id="r", type="model", manifest=[by_ref]
                )
            )
        command.downgrade(alembic_config(url), "0008")
        upgrade(url)
        with serving(url) as server:
            a, b = stubs_of(server, s.a), stubs_of(server, b_owner)
            # team A holds what its version names, logs it again and downloads it
            assert missing(a, s.lab_a.parent, s.data) == []
            assert download(a, create(a, s.lab_a.parent, s.data, "again").name) == s.data
            assert download(a, s.version_a.name) == s.data
            # an upload no version named was not recorded: sent again, it is held again
            assert missing(a, s.lab_a.parent, uploaded_only) == [digest_of(uploaded_only)]
            assert send(server, a, s.lab_a.parent, uploaded_only).existed
            assert missing(a, s.lab_a.parent, uploaded_only) == []
            # a reference entry gives no hold; another team holds nothing of team A's
            assert missing(b, lab_b.parent, elsewhere, s.data) == [
                digest_of(elsewhere),
                digest_of(s.data),
            ]
            expect_error(FAILED, create, b, lab_b.parent, s.data, reason="BLOB_MISSING")
