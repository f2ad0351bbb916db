"""Names (SPEC section 2, "Names") through the real server: ids and aliases created from
now on follow W&B's rules, names that already exist keep working, manifest digests are
checked per algorithm, and a message quotes at most ~200 characters of the caller's
input, so even a 20k-character name answers INVALID_ARGUMENT with its BadRequest detail.
Each refused call names the field and changes nothing (no event). The pure parts:
tests/unit/test_names.py."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import func, select, update

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import event_service_pb2 as epb
from registry.v1 import legacy_model_registry_service_pb2 as lpb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_client import Client, InvalidArgumentError
from registry_server.api.status import MESSAGE_MAX_BYTES
from registry_server.domain import names
from registry_server.domain.errors import QUOTE_MAX
from registry_server.storage import models as m

from ..support.content import files
from ..support.errors import INVALID, expect_error, failure
from ..support.rows import org_id
from ..support.servers import ServerThread
from ..support.world import World, unique


@dataclass
class Scene:
    """An organization with a team, a project, a logged model version, a registry with a
    collection linking it, and a legacy registered model linking it (all by its admin)."""

    world: World
    server: ServerThread
    team: str
    project: str  # teams/{team}/projects/{p}
    version: r.ArtifactVersion
    registry: str  # organizations/{org}/registries/{r}
    link: r.CollectionVersion
    model: str  # teams/{team}/registeredModels/{m}

    @property
    def stubs(self) -> Any:
        return self.world.admin.stubs

    def events(self) -> int:
        with self.server.app.db.read() as s:
            return s.execute(
                select(func.count())
                .select_from(m.Event)
                .where(m.Event.org_id == org_id(s, self.world.org))
            ).scalar_one()

    def refused(self, call: Callable[[], Any], field: str) -> str:
        """`call` answers INVALID_ARGUMENT naming `field` and records nothing; its message."""
        before = self.events()
        found = expect_error(INVALID, call, field=field)
        assert self.events() == before, "a refused call changed something"
        return found.message


@pytest.fixture
def scene(world: World, server: ServerThread) -> Scene:
    stubs = world.admin.stubs
    team = world.team("names")
    project = stubs.artifacts.CreateProject(
        apb.CreateProjectRequest(parent=f"teams/{team}", project_id="training")
    ).name
    version = stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=project, artifact_id="resnet", type="model", manifest=files("w.bin")
        )
    )
    registry = stubs.registries.CreateRegistry(
        rpb.CreateRegistryRequest(
            parent=world.org_name,
            registry_id=unique("reg"),
            registry=r.Registry(visibility=r.VISIBILITY_ORGANIZATION, artifact_types=["model"]),
        )
    ).name
    link = stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=registry, collection_id="resnet", artifact_version=version.name
        )
    )
    stubs.legacy.LinkModelVersion(
        lpb.LinkModelVersionRequest(
            parent=f"teams/{team}", registered_model_id="classifier", artifact_version=version.name
        )
    )
    return Scene(
        world,
        server,
        team,
        project,
        version,
        registry,
        link,
        f"teams/{team}/registeredModels/classifier",
    )


# --- ids ----------------------------------------------------------------------------------

BAD_IDS = {
    "leading-dash": "-model",
    "leading-underscore": "_model",
    "space": "my model",
    "slash": "a/b",
    "non-ascii": "modèle",
    "129-characters": "m" * 129,
}


def _create(scene: Scene, resource: str, new_id: str) -> tuple[Callable[[], Any], str]:
    """The call that creates `resource` with `new_id`, and the field that names it."""
    stubs, w = scene.stubs, scene.world
    calls: dict[str, tuple[Callable[[], Any], str]] = {
        "registry": (
            lambda: stubs.registries.CreateRegistry(
                rpb.CreateRegistryRequest(
                    parent=w.org_name,
                    registry_id=new_id,
                    registry=r.Registry(allow_all_artifact_types=True),
                )
            ),
            "registry_id",
        ),
        "collection": (
            lambda: stubs.collections.CreateCollection(
                cpb.CreateCollectionRequest(
                    parent=scene.registry,
                    collection_id=new_id,
                    collection=r.Collection(type="model"),
                )
            ),
            "collection_id",
        ),
        "collection-by-link": (
            lambda: stubs.collections.LinkArtifactVersion(
                cpb.LinkArtifactVersionRequest(
                    parent=scene.registry, collection_id=new_id, artifact_version=scene.version.name
                )
            ),
            "collection_id",
        ),
        "project": (
            lambda: stubs.artifacts.CreateProject(
                apb.CreateProjectRequest(parent=f"teams/{scene.team}", project_id=new_id)
            ),
            "project_id",
        ),
        "artifact": (
            lambda: stubs.artifacts.CreateArtifactVersion(
                apb.CreateArtifactVersionRequest(
                    parent=scene.project, artifact_id=new_id, type="model", manifest=files("x")
                )
            ),
            "artifact_id",
        ),
        "registered-model": (
            lambda: stubs.legacy.CreateRegisteredModel(
                lpb.CreateRegisteredModelRequest(
                    parent=f"teams/{scene.team}", registered_model_id=new_id
                )
            ),
            "registered_model_id",
        ),
        "registered-model-by-link": (
            lambda: stubs.legacy.LinkModelVersion(
                lpb.LinkModelVersionRequest(
                    parent=f"teams/{scene.team}",
                    registered_model_id=new_id,
                    artifact_version=scene.version.name,
                )
            ),
            "registered_model_id",
        ),
    }
    return calls[resource]


RESOURCES = [
    "registry",
    "collection",
    "collection-by-link",
    "project",
    "artifact",
    "registered-model",
    "registered-model-by-link",
]


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("bad", list(BAD_IDS), ids=list(BAD_IDS))
def test_ids_outside_wandb_rules_are_refused(scene: Scene, resource: str, bad: str) -> None:
    call, field = _create(scene, resource, BAD_IDS[bad])
    scene.refused(call, field)


@pytest.mark.parametrize("resource", RESOURCES)
def test_ids_inside_wandb_rules_are_created(scene: Scene, resource: str) -> None:
    longest = "M" + "x._-9" * 25 + "ab"  # 128 characters, every allowed kind
    assert len(longest) == names.RESOURCE_ID_MAX
    call, _ = _create(scene, resource, longest)
    call()


# --- aliases ------------------------------------------------------------------------------


def _set_alias(scene: Scene, rpc: str, alias: str) -> tuple[Callable[[], Any], str]:
    """The call that sets `alias` by hand through `rpc`, and the field that names it."""
    stubs = scene.stubs
    other = stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=scene.project, artifact_id="resnet", type="model", manifest=files(unique("f"))
        )
    )
    calls: dict[str, tuple[Callable[[], Any], str]] = {
        "CreateArtifactVersion": (
            lambda: stubs.artifacts.CreateArtifactVersion(
                apb.CreateArtifactVersionRequest(
                    parent=scene.project,
                    artifact_id="resnet",
                    type="model",
                    manifest=files(unique("f")),
                    aliases=["ok", alias],
                )
            ),
            "aliases[1]",
        ),
        "UpdateArtifactVersion": (
            lambda: stubs.artifacts.UpdateArtifactVersion(
                apb.UpdateArtifactVersionRequest(
                    artifact_version=r.ArtifactVersion(name=scene.version.name, aliases=[alias]),
                    update_mask=field_mask_pb2.FieldMask(paths=["aliases"]),
                )
            ),
            "artifact_version.aliases[0]",
        ),
        "LinkArtifactVersion": (
            lambda: stubs.collections.LinkArtifactVersion(
                cpb.LinkArtifactVersionRequest(
                    parent=scene.registry,
                    collection_id="resnet",
                    artifact_version=other.name,
                    aliases=[alias],
                )
            ),
            "aliases[0]",
        ),
        "AddAlias": (
            lambda: stubs.collections.AddAlias(
                cpb.AddAliasRequest(collection_version=scene.link.name, alias=alias)
            ),
            "alias",
        ),
        "LinkModelVersion": (
            lambda: stubs.legacy.LinkModelVersion(
                lpb.LinkModelVersionRequest(
                    parent=f"teams/{scene.team}",
                    registered_model_id="classifier",
                    artifact_version=other.name,
                    aliases=[alias],
                )
            ),
            "aliases[0]",
        ),
        "SetRegisteredModelAlias": (
            lambda: stubs.legacy.SetRegisteredModelAlias(
                lpb.SetRegisteredModelAliasRequest(
                    registered_model=scene.model, alias=alias, version_index=0
                )
            ),
            "alias",
        ),
    }
    return calls[rpc]


ALIAS_RPCS = [
    "CreateArtifactVersion",
    "UpdateArtifactVersion",
    "LinkArtifactVersion",
    "AddAlias",
    "LinkModelVersion",
    "SetRegisteredModelAlias",
]


@pytest.mark.parametrize("rpc", ALIAS_RPCS)
def test_alias_latest_by_hand_is_refused(scene: Scene, rpc: str) -> None:
    call, field = _set_alias(scene, rpc, "latest")
    assert "latest" in scene.refused(call, field)


@pytest.mark.parametrize("rpc", ALIAS_RPCS)
@pytest.mark.parametrize("alias", ["v3", "v0", "v007", "v12345678901234567890"])
def test_alias_like_v3_is_refused(scene: Scene, rpc: str, alias: str) -> None:
    call, field = _set_alias(scene, rpc, alias)
    assert "version" in scene.refused(call, field)


@pytest.mark.parametrize("rpc", ALIAS_RPCS)
@pytest.mark.parametrize(
    "alias", ["-prod", ".prod", "pro duction", "prod/1", "prod:1", "prodüction", "p" * 65]
)
def test_aliases_outside_wandb_rules_are_refused(scene: Scene, rpc: str, alias: str) -> None:
    call, field = _set_alias(scene, rpc, alias)
    scene.refused(call, field)


@pytest.mark.parametrize("rpc", ALIAS_RPCS)
def test_aliases_inside_wandb_rules_are_set(scene: Scene, rpc: str) -> None:
    for alias in ("p" * 64, "V3", "v3-rc", "2024.01_best", "latest-good"):
        call, _ = _set_alias(scene, rpc, alias)
        call()


def _hundred(prefix: str) -> list[str]:
    return [f"{prefix}{i}" for i in range(names.ALIASES_PER_VERSION)]


def test_101st_alias_is_refused(scene: Scene) -> None:
    stubs = scene.stubs
    # An artifact version: 100 aliases (and `latest`) at creation, none more by update.
    full = stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=scene.project,
            artifact_id="crowded",
            type="model",
            manifest=files("a"),
            aliases=_hundred("a"),
        )
    )
    assert len(full.aliases) == names.ALIASES_PER_VERSION + 1  # with latest
    scene.refused(
        lambda: stubs.artifacts.CreateArtifactVersion(
            apb.CreateArtifactVersionRequest(
                parent=scene.project,
                artifact_id="crowded",
                type="model",
                manifest=files("b"),
                aliases=[*_hundred("b"), "one-more"],
            )
        ),
        "aliases",
    )
    scene.refused(
        lambda: stubs.artifacts.UpdateArtifactVersion(
            apb.UpdateArtifactVersionRequest(
                artifact_version=r.ArtifactVersion(
                    name=full.name, aliases=[*full.aliases, "one-more"]
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["aliases"]),
            )
        ),
        "artifact_version.aliases",
    )
    # Identical content logged again with one more alias (tests/api/test_relogging.py).
    scene.refused(
        lambda: stubs.artifacts.CreateArtifactVersion(
            apb.CreateArtifactVersionRequest(
                parent=scene.project,
                artifact_id="crowded",
                type="model",
                manifest=files("a"),
                aliases=["one-more"],
            )
        ),
        "aliases",
    )

    # A collection version: 100 by linking, the 101st by AddAlias (also moved from
    # another version), and by linking the same source again.
    crowded = stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=scene.registry,
            collection_id="crowded",
            artifact_version=full.name,
            aliases=_hundred("c"),
        )
    )
    assert len(crowded.aliases) == names.ALIASES_PER_VERSION + 1  # with latest
    other = stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=scene.registry,
            collection_id="crowded",
            artifact_version=scene.version.name,
            aliases=["elsewhere"],
        )
    )
    scene.refused(
        lambda: stubs.collections.AddAlias(
            cpb.AddAliasRequest(collection_version=crowded.name, alias="elsewhere")
        ),
        "alias",
    )
    assert (
        "elsewhere"
        in stubs.collections.GetCollectionVersion(
            cpb.GetCollectionVersionRequest(name=other.name)
        ).aliases
    )
    scene.refused(
        lambda: stubs.collections.AddAlias(
            cpb.AddAliasRequest(collection_version=crowded.name, alias="one-more")
        ),
        "alias",
    )
    scene.refused(
        lambda: stubs.collections.LinkArtifactVersion(
            cpb.LinkArtifactVersionRequest(
                parent=scene.registry,
                collection_id="crowded",
                artifact_version=full.name,
                aliases=["one-more"],
            )
        ),
        "aliases",
    )
    # An alias it holds already may be set again.
    stubs.collections.AddAlias(cpb.AddAliasRequest(collection_version=crowded.name, alias="c7"))

    # A legacy registered-model version: 100 by linking, the 101st refused.
    model = stubs.legacy.LinkModelVersion(
        lpb.LinkModelVersionRequest(
            parent=f"teams/{scene.team}",
            registered_model_id="crowded",
            artifact_version=full.name,
            aliases=_hundred("l"),
        )
    )
    assert len(model.aliases) >= names.ALIASES_PER_VERSION
    scene.refused(
        lambda: stubs.legacy.SetRegisteredModelAlias(
            lpb.SetRegisteredModelAliasRequest(
                registered_model=f"teams/{scene.team}/registeredModels/crowded",
                alias="one-more",
                version_index=model.version_index,
            )
        ),
        "alias",
    )
    scene.refused(
        lambda: stubs.legacy.LinkModelVersion(
            lpb.LinkModelVersionRequest(
                parent=f"teams/{scene.team}",
                registered_model_id="crowded",
                artifact_version=full.name,
                aliases=["one-more"],
            )
        ),
        "aliases",
    )


def test_too_many_aliases_answers_its_reason(scene: Scene) -> None:
    full = scene.stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=scene.registry,
            collection_id="full",
            artifact_version=scene.version.name,
            aliases=_hundred("x"),
        )
    )
    found = expect_error(
        INVALID,
        scene.stubs.collections.AddAlias,
        cpb.AddAliasRequest(collection_version=full.name, alias="one-more"),
        reason="TOO_MANY_ALIASES",
        field="alias",
    )
    assert "100" in found.message


# --- names that already exist -------------------------------------------------------------


def test_existing_names_outside_the_rules_keep_working(scene: Scene) -> None:
    """Rows named under the older rules (written directly in the database, as a
    database from before them holds) resolve, read, take new versions and links, and
    their aliases can be removed."""
    stubs, w = scene.stubs, scene.world
    registry_id = scene.registry.rsplit("/", 1)[1]
    old = {
        "project": "old project",
        "artifact": "Ünïcode (v2)",
        "registry": f"_{registry_id}",
        "collection": "my resnet",
        "model": "-classifier-",
        "alias": "_best",
    }
    logged = stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=scene.project,
            artifact_id="resnet",
            type="model",
            manifest=files("second"),
            aliases=["best"],
        )
    )
    stubs.collections.AddAlias(
        cpb.AddAliasRequest(collection_version=scene.link.name, alias="best")
    )
    with scene.server.app.db.write() as s:
        team_id = s.execute(select(m.Team.id).where(m.Team.name == scene.team)).scalar_one()
        project_id = s.execute(
            select(m.Project.id).where(m.Project.team_id == team_id, m.Project.name == "training")
        ).scalar_one()
        s.execute(update(m.Project).where(m.Project.id == project_id).values(name=old["project"]))
        s.execute(
            update(m.Artifact)
            .where(m.Artifact.project_id == project_id)
            .values(name=old["artifact"])
        )
        s.execute(
            update(m.ArtifactAlias)
            .where(m.ArtifactAlias.alias == "best")
            .where(
                m.ArtifactAlias.artifact_id.in_(
                    select(m.Artifact.id).where(m.Artifact.project_id == project_id)
                )
            )
            .values(alias=old["alias"])
        )
        reg = s.execute(
            select(m.Registry).where(
                m.Registry.name == registry_id, m.Registry.org_id == org_id(s, w.org)
            )
        ).scalar_one()
        reg.name = old["registry"]
        coll = s.execute(
            select(m.Collection).where(m.Collection.registry_id == reg.id)
        ).scalar_one()
        coll.name = old["collection"]
        s.execute(
            update(m.CollectionAlias)
            .where(m.CollectionAlias.collection_id == coll.id)
            .values(alias=old["alias"])
        )
        s.execute(
            update(m.RegisteredModel)
            .where(m.RegisteredModel.team_id == team_id, m.RegisteredModel.name == "classifier")
            .values(name=old["model"])
        )

    project = f"teams/{scene.team}/projects/{old['project']}"
    artifact = f"{project}/artifacts/{old['artifact']}"
    # resolve and get by the old names
    resolved = stubs.artifacts.ResolvePath(
        apb.ResolvePathRequest(
            path=f"{scene.team}/{old['project']}/{old['artifact']}:{old['alias']}"
        )
    )
    assert resolved.artifact_version.name == f"{artifact}/versions/{logged.version_index}"
    assert stubs.artifacts.GetProject(apb.GetProjectRequest(name=project)).name == project
    got = stubs.artifacts.GetArtifactVersion(
        apb.GetArtifactVersionRequest(name=f"{artifact}/versions/0")
    )
    assert got.path == f"{scene.team}/{old['project']}/{old['artifact']}:v0"
    # a new version of the old artifact, and a new alias on it
    newer = stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=project,
            artifact_id=old["artifact"],
            type="model",
            manifest=files("third"),
            aliases=["fresh"],
        )
    )
    assert newer.name == f"{artifact}/versions/2"
    # its old alias kept through an update of the whole alias set
    stubs.artifacts.UpdateArtifactVersion(
        apb.UpdateArtifactVersionRequest(
            artifact_version=r.ArtifactVersion(
                name=resolved.artifact_version.name, aliases=[old["alias"], "extra"]
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["aliases"]),
        )
    )
    # the old registry and collection: resolve, link into by name, alias, remove an old alias
    registry = f"{w.org_name}/registries/{old['registry']}"
    in_registry = f"{w.org}/wandb-registry-{old['registry']}/{old['collection']}"
    assert (
        stubs.artifacts.ResolvePath(
            apb.ResolvePathRequest(path=f"{in_registry}:{old['alias']}")
        ).collection_version.version_index
        == 0
    )
    linked = stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=registry,
            collection_id=old["collection"],
            artifact_version=f"{scene.team}/{old['project']}/{old['artifact']}:fresh",
            aliases=["staging"],
        )
    )
    assert linked.name == f"{registry}/collections/{old['collection']}/versions/1"
    stubs.collections.AddAlias(cpb.AddAliasRequest(collection_version=linked.name, alias="prod"))
    removed = stubs.collections.RemoveAlias(
        cpb.RemoveAliasRequest(
            collection_version=f"{registry}/collections/{old['collection']}/versions/0",
            alias=old["alias"],
        )
    )
    assert old["alias"] not in removed.aliases
    assert (
        stubs.collections.GetCollection(
            cpb.GetCollectionRequest(name=f"{registry}/collections/{old['collection']}")
        ).type
        == "model"
    )
    # the old registered model: resolve, link into by name (LinkModelVersion creates none)
    model_path = f"{scene.team}/model-registry/{old['model']}"
    assert stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=f"{model_path}:v0"))
    legacy = stubs.legacy.LinkModelVersion(
        lpb.LinkModelVersionRequest(
            parent=f"teams/{scene.team}",
            registered_model_id=old["model"],
            artifact_version=newer.name,
            aliases=["candidate"],
        )
    )
    assert legacy.name == f"teams/{scene.team}/registeredModels/{old['model']}/versions/1"
    # ... while new resources by such names are refused
    scene.refused(
        lambda: stubs.collections.LinkArtifactVersion(
            cpb.LinkArtifactVersionRequest(
                parent=registry, collection_id="other coll", artifact_version=newer.name
            )
        ),
        "collection_id",
    )


# --- digests ------------------------------------------------------------------------------


def _log_digest(scene: Scene, *digests: str) -> r.ArtifactVersion:
    entries = [
        r.ManifestEntry(path=f"f{i}", digest=d, size=1, ref=f"s3://bucket/f{i}")
        for i, d in enumerate(digests)
    ]
    return scene.stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=scene.project, artifact_id="digests", type="model", manifest=entries
        )
    )


SHA256 = hashlib.sha256(b"x").hexdigest()
MD5 = hashlib.md5(b"x").hexdigest()


@pytest.mark.parametrize(
    "bad", ["sha256:" + SHA256[:63], "sha256:" + SHA256 + "0", "sha256:" + SHA256[:63] + "g",
            "sha256:", "sha256:" + MD5, "SHA256:" + SHA256, "sha256: " + SHA256[1:]],
)  # fmt: skip
def test_sha256_digest_needs_64_hex(scene: Scene, bad: str) -> None:
    ok = "md5:" + MD5
    message = scene.refused(lambda: _log_digest(scene, ok, ok, ok, bad), "manifest[3].digest")
    assert "manifest[3].digest" in message
    logged = _log_digest(scene, "sha256:" + SHA256.upper())
    assert logged.manifest[0].digest == "sha256:" + SHA256  # the same bytes, the same digest


@pytest.mark.parametrize(
    "bad", ["md5:" + MD5[:31], "md5:" + MD5 + "a", "md5:" + MD5[:31] + "z", "md5:" + SHA256],
)  # fmt: skip
def test_md5_digest_needs_32_hex(scene: Scene, bad: str) -> None:
    scene.refused(lambda: _log_digest(scene, "sha256:" + SHA256, bad), "manifest[1].digest")
    assert _log_digest(scene, "md5:" + MD5).manifest[0].digest == "md5:" + MD5


@pytest.mark.parametrize(
    "bad", ["sha1:" + SHA256[:40], "blake3:" + SHA256, SHA256, ":" + SHA256, "sha512:" + SHA256 * 2]
)
def test_unknown_digest_algorithms_are_refused(scene: Scene, bad: str) -> None:
    message = scene.refused(lambda: _log_digest(scene, bad), "manifest[0].digest")
    assert "sha256" in message and "md5" in message


# --- long input ---------------------------------------------------------------------------

HUGE = "a" * 20_000


def _huge_calls(scene: Scene, huge: str) -> dict[str, tuple[Callable[[], Any], str]]:
    """Calls that carry `huge` in one field, and that field: every create of an id and
    every alias set by hand, then names, paths, filters, orderings and tokens."""
    stubs, w = scene.stubs, scene.world
    collection = scene.link.name.rsplit("/versions/", 1)[0]
    return {
        **{f"create {resource}": _create(scene, resource, huge) for resource in RESOURCES},
        **{f"{rpc} alias": _set_alias(scene, rpc, huge) for rpc in ALIAS_RPCS},
        "CreateRegistry.parent": (
            lambda: stubs.registries.CreateRegistry(
                rpb.CreateRegistryRequest(parent=huge, registry_id="x")
            ),
            "parent",
        ),
        "ResolvePath.path": (
            lambda: stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=huge)),
            "path",
        ),
        "ListCollectionVersions.filter": (
            lambda: stubs.collections.ListCollectionVersions(
                cpb.ListCollectionVersionsRequest(parent=collection, filter=huge)
            ),
            "filter",
        ),
        "ListCollectionVersions.filter field": (
            lambda: stubs.collections.ListCollectionVersions(
                cpb.ListCollectionVersionsRequest(parent=collection, filter=f"{huge[:1900]} = 1")
            ),
            "filter",
        ),
        "ListRegistries.order_by": (
            lambda: stubs.registries.ListRegistries(
                rpb.ListRegistriesRequest(parent=w.org_name, order_by=huge)
            ),
            "order_by",
        ),
        "ListRegistries.page_token": (
            lambda: stubs.registries.ListRegistries(
                rpb.ListRegistriesRequest(parent=w.org_name, page_token=huge)
            ),
            "page_token",
        ),
        "GetCollection.name": (
            lambda: stubs.collections.GetCollection(cpb.GetCollectionRequest(name=huge)),
            "name",
        ),
        "LinkArtifactVersion.artifact_version": (
            lambda: stubs.collections.LinkArtifactVersion(
                cpb.LinkArtifactVersionRequest(
                    parent=scene.registry, collection_id="resnet", artifact_version=huge
                )
            ),
            "artifact_version",
        ),
        "AddAlias.collection_version": (
            lambda: stubs.collections.AddAlias(
                cpb.AddAliasRequest(collection_version=huge, alias="prod")
            ),
            "collection_version",
        ),
        "CreateArtifactVersion.manifest": (
            lambda: _log_digest(scene, huge),
            "manifest[0].digest",
        ),
        "ListEvents.parent": (
            lambda: stubs.events.ListEvents(epb.ListEventsRequest(parent=huge)),
            "parent",
        ),
    }


@pytest.mark.parametrize("character", ["a", "é", "\U0001f600", "\x07"], ids=repr)
def test_20k_character_name_answers_invalid_argument_with_field(
    scene: Scene, character: str
) -> None:
    """Through the generated stubs on the client's channel (16 KiB limit on received
    metadata): each answers INVALID_ARGUMENT with its BadRequest field, quoting little."""
    huge = character * 20_000
    for rpc, (call, field) in _huge_calls(scene, huge).items():
        try:
            call()
        except grpc.RpcError as exc:
            found = failure(exc)
            assert found.code == INVALID, f"{rpc}: {found.code} {found.message[:300]}"
            assert field in found.fields, f"{rpc}: {found.fields} {found.message[:300]}"
            assert len(found.message.encode()) <= MESSAGE_MAX_BYTES, rpc
            continue
        raise AssertionError(f"{rpc} accepted a 20k-character input")


def test_20k_character_name_through_the_client(world: World, scene: Scene) -> None:
    with Client(world.target, world.admin.key) as client:
        for call in (
            lambda: client.create_registry(HUGE),
            lambda: client.create_collection(f"{scene.registry}/collections/{HUGE}", "model"),
            lambda: client.add_alias(scene.link.name, HUGE),
        ):
            with pytest.raises(InvalidArgumentError) as caught:
                call()
            assert caught.value.fields and len(caught.value.message) < 2 * QUOTE_MAX + 200
