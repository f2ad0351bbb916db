"""File contents at their edges, as a user, an attacker and an operator would try them:
tenant isolation of blobs and of uploads under way, every download RPC for a
RESTRICTED_VIEWER, bad input that must change nothing (a run is not recorded by a
download that fails), names of the offending fields, batch limits at and just past
the limit, interrupted uploads, deleted versions and a client download of many files."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import resources_pb2 as r
from registry_client import Client

from ..support.content import make_lab
from ..support.errors import INVALID, expect_error
from ..support.files import entry, upload
from ..support.servers import ServerThread
from ..support.world import Person, World


def create(person: Person, parent: str, *entries: r.ManifestEntry) -> r.ArtifactVersion:
    return person.stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=parent, artifact_id="w", type="model", manifest=list(entries)
        )
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
