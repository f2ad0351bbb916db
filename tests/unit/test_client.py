"""registry_client's local parts: manifests from a directory, and short names
expanded to resource names. Through the server: tests/api/test_client.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from registry_client import InvalidArgumentError, manifest_from_directory
from registry_client import names as client_names


def test_manifest_from_directory_hashes_every_file(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_bytes(b"zzz")
    (tmp_path / "a.txt").write_bytes(b"hello")
    entries = manifest_from_directory(tmp_path)
    assert [e.path for e in entries] == ["a.txt", "b/z.txt"]
    assert entries[0].digest == "sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert entries[0].size == 5
    assert [e.ref for e in entries] == ["", ""]  # content only: the same files, the same digest
    prefixed = manifest_from_directory(tmp_path, ref_prefix="s3://bucket/models/")
    assert [e.ref for e in prefixed] == ["s3://bucket/models/a.txt", "s3://bucket/models/b/z.txt"]
    local = manifest_from_directory(tmp_path, local_refs=True)
    assert local[0].ref == (tmp_path / "a.txt").resolve().as_uri()
    with pytest.raises(InvalidArgumentError):
        manifest_from_directory(tmp_path / "missing")


def test_short_names_expand_to_resource_names() -> None:
    def org() -> str:
        return "acme"

    assert client_names.expand_path("model/resnet:v1") == "wandb-registry-model/resnet:v1"
    assert client_names.expand_path("t/p/a:latest") == "t/p/a:latest"
    assert client_names.registry_name("model", org) == "organizations/acme/registries/model"
    assert client_names.registry_name("o/wandb-registry-x", org) == "organizations/o/registries/x"
    assert (
        client_names.collection_ref("wandb-registry-model/resnet", org).name
        == "organizations/acme/registries/model/collections/resnet"
    )
    ref = client_names.collection_version_ref("o/wandb-registry-m/c:v7", org, "name")
    assert ref.name == "organizations/o/registries/m/collections/c/versions/7"
    assert client_names.collection_version_ref("m/c:prod", org, "name").path == (
        "wandb-registry-m/c:prod"
    )
    assert client_names.collection_version_ref("t/model-registry/m:v1", org, "n").path == (
        "t/model-registry/m:v1"
    )
    assert client_names.member_name("bob") == "users/bob"
    for bad in ("", "a//b", "organizations/acme/registries"):
        with pytest.raises(InvalidArgumentError):
            client_names.registry_name(bad, org)
