"""Identical content logged again (API.md, ArtifactService) through the real server: the
existing version is returned, marked `reused`, and nothing that was asked for is
dropped: aliases move to it (with their event), tags are added, metadata keys are set
over its own, a description replaces its own, and the run is recorded (as the producing
run when it has none, else as a run that logged it again). A retry with the same
request_id answers the first reply and changes nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf import struct_pb2

from registry.v1 import artifact_service_pb2 as pb
from registry.v1 import resources_pb2 as r

from ..support.content import files
from ..support.errors import INVALID, expect_error
from ..support.rows import events_of
from ..support.servers import ServerThread
from ..support.world import World, unique


@dataclass
class Artifact:
    world: World
    server: ServerThread
    project: str  # teams/{team}/projects/{p}
    name: str

    @property
    def path(self) -> str:
        _, team, _, project = self.project.split("/")
        return f"{team}/{project}/{self.name}"

    def log(
        self,
        content: str,
        *,
        aliases: tuple[str, ...] = (),
        tags: tuple[str, ...] = (),
        metadata: dict[str, Any] | None = None,
        description: str = "",
        run_id: str = "",
        request_id: str = "",
    ) -> r.ArtifactVersion:
        md = struct_pb2.Struct()
        md.update(metadata or {})
        return self.world.admin.stubs.artifacts.CreateArtifactVersion(
            pb.CreateArtifactVersionRequest(
                parent=self.project,
                artifact_id=self.name,
                type="model",
                manifest=files("model.pt", "config.json", salt=content),
                metadata=md,
                description=description,
                aliases=list(aliases),
                tags=list(tags),
                run_id=run_id,
                request_id=request_id,
            )
        )

    def get(self, version: r.ArtifactVersion) -> r.ArtifactVersion:
        return self.world.admin.stubs.artifacts.GetArtifactVersion(
            pb.GetArtifactVersionRequest(name=version.name)
        )

    def resolve(self, version: str) -> r.ArtifactVersion:
        return self.world.admin.stubs.artifacts.ResolvePath(
            pb.ResolvePathRequest(path=f"{self.path}:{version}")
        ).artifact_version

    def lineage(self, version: r.ArtifactVersion) -> pb.Lineage:
        return self.world.admin.stubs.artifacts.GetLineage(pb.GetLineageRequest(name=version.name))

    def updates(self, version: r.ArtifactVersion) -> list[dict[str, Any]]:
        """Details of the ARTIFACT_VERSION_UPDATED events of `version`."""
        return [
            e.details
            for e in events_of(self.server, self.world.org, "ARTIFACT_VERSION_UPDATED")
            if e.resource == version.name
        ]


@pytest.fixture
def artifact(world: World, server: ServerThread) -> Artifact:
    team = world.team("relog")
    project = world.admin.stubs.artifacts.CreateProject(
        pb.CreateProjectRequest(parent=f"teams/{team}", project_id=unique("proj"))
    ).name
    return Artifact(world, server, project, "resnet")


def test_relogging_identical_content_applies_aliases_and_tags(artifact: Artifact) -> None:
    v0 = artifact.log("a", aliases=("candidate",), tags=("cnn",))
    v1 = artifact.log("b", aliases=("best",))
    assert artifact.resolve("best").name == v1.name

    again = artifact.log("a", aliases=("best", "reviewed"), tags=("cnn", "resnet50"))
    assert again.name == v0.name and again.reused
    assert list(again.aliases) == ["best", "candidate", "reviewed"]  # `latest` stays on v1
    assert list(again.tags) == ["cnn", "resnet50"]
    # the alias moved: `...:best` names v0 now, v1 no longer holds it
    assert artifact.resolve("best").name == v0.name
    assert artifact.resolve("reviewed").name == v0.name
    assert list(artifact.get(v1).aliases) == ["latest"]
    assert artifact.resolve("latest").name == v1.name
    # with its event: who moved what from where
    (update,) = artifact.updates(v0)
    assert update["relogged"] is True
    assert update["fields"] == ["aliases", "tags"]
    assert update["aliases_added"] == ["best", "reviewed"]
    assert update["moved_from"] == {"best": 1}
    assert update["tags_before"] == ["cnn"]
    assert artifact.get(v0).etag != v0.etag


def test_relogging_records_the_run(artifact: Artifact) -> None:
    v0 = artifact.log("a")
    assert v0.producing_run == ""
    # a version without a producing run takes the first run that logs it
    first = artifact.log("a", run_id="train-1")
    assert first.reused and first.producing_run == "train-1"
    # later runs are recorded as having logged it again, in order; the producing run stays
    artifact.log("a", run_id="train-2")
    artifact.log("a", run_id="train-3")
    again = artifact.log("a", run_id="train-2")
    assert again.producing_run == "train-1"
    lineage = artifact.lineage(v0)
    assert lineage.producing_run == "train-1"
    assert list(lineage.logging_runs) == ["train-2", "train-3"]
    assert list(lineage.consuming_runs) == []  # logging it is not using it
    updates = artifact.updates(v0)
    assert [u["fields"] for u in updates] == [["producing_run"], ["logging_runs"], ["logging_runs"]]
    assert [u["run_id"] for u in updates] == ["train-1", "train-2", "train-3"]
    # a new version's lineage lists none
    v1 = artifact.log("b", run_id="train-4")
    assert list(artifact.lineage(v1).logging_runs) == [] and v1.producing_run == "train-4"


def test_reply_says_version_was_reused(artifact: Artifact) -> None:
    v0 = artifact.log("a")
    assert not v0.reused
    assert not artifact.log("b").reused
    assert artifact.log("a").reused
    # only CreateArtifactVersion's reply says it
    assert not artifact.get(v0).reused
    assert not artifact.resolve("v0").reused


def test_relogging_merges_metadata_and_replaces_the_description(artifact: Artifact) -> None:
    v0 = artifact.log("a", metadata={"acc": 0.5, "epochs": 3}, description="first")
    again = artifact.log("a", metadata={"acc": 0.6, "lr": 0.1})
    assert again.reused
    assert dict(again.metadata) == {"acc": 0.6, "epochs": 3, "lr": 0.1}
    assert again.description == "first"  # an empty description asks for nothing
    described = artifact.log("a", description="second")
    assert described.description == "second"
    assert dict(artifact.get(v0).metadata) == {"acc": 0.6, "epochs": 3, "lr": 0.1}
    updates = artifact.updates(v0)
    assert [u["fields"] for u in updates] == [["metadata"], ["description"]]
    assert updates[0]["metadata_keys"] == ["acc", "lr"]


def test_relogging_beyond_the_limits_is_refused_and_changes_nothing(artifact: Artifact) -> None:
    v0 = artifact.log("a", metadata={f"k{i}": i for i in range(60)}, tags=("t0",))
    before = artifact.get(v0)
    expect_error(
        INVALID,
        lambda: artifact.log(
            "a", metadata={f"n{i}": i for i in range(41)}, aliases=("best",)
        ),  # 101 keys merged
        field="metadata",
    )
    expect_error(
        INVALID, lambda: artifact.log("a", tags=tuple(f"u{i}" for i in range(100))), field="tags"
    )
    expect_error(INVALID, lambda: artifact.log("a", aliases=("latest",)), field="aliases[0]")
    assert artifact.get(v0) == before
    assert artifact.updates(v0) == []


def test_relogging_with_nothing_new_changes_nothing(artifact: Artifact) -> None:
    v0 = artifact.log("a", aliases=("best",), tags=("cnn",), metadata={"acc": 1}, run_id="r")
    again = artifact.log("a", aliases=("best",), tags=("cnn",), metadata={"acc": 1}, run_id="r")
    assert again.reused and again.etag == v0.etag
    assert artifact.updates(v0) == []


def test_relogging_retried_with_its_request_id_changes_nothing_more(artifact: Artifact) -> None:
    v0 = artifact.log("a", run_id="train-1")
    v1 = artifact.log("b", aliases=("best",))
    request_id = unique("rid")
    first = artifact.log("a", aliases=("best",), run_id="train-2", request_id=request_id)
    assert first.reused and "best" in first.aliases
    # meanwhile the alias moves back to v1
    artifact.log("b", aliases=("best",))
    assert artifact.resolve("best").name == v1.name
    events = len(artifact.updates(v0))
    retried = artifact.log("a", aliases=("best",), run_id="train-2", request_id=request_id)
    assert retried == first  # the first reply, reused included
    assert artifact.resolve("best").name == v1.name  # and nothing changed again
    assert len(artifact.updates(v0)) == events
    assert list(artifact.lineage(v0).logging_runs) == ["train-2"]
