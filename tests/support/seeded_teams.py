"""Legacy registries inserted straight into a database (thousands of versions in
seconds), and dumps of a team's legacy registry and of its migrated registry in one
shape, so that a migration's target compares with its source and with another
team's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import aliased

from registry_server.domain.roles import LegacyState, OrgRole, TeamRole
from registry_server.storage import models as m
from registry_server.storage.db import Database

from .processes import ROOT_ORG

MODELS = 20
VERSIONS_PER_MODEL = 100  # 2,000 versions per team

T0 = 1_700_000_000_000_000


def seed_teams(
    url: str, teams: list[str], *, models: int = MODELS, per_model: int = VERSIONS_PER_MODEL
) -> None:
    """Identical legacy registries for each team (only the team differs), with members
    of every role, a model registry admin, a service account, protected and unprotected
    aliases, tags, descriptions and deleted artifact versions. Versions of the teams are
    interleaved, so each team's ids are not contiguous."""
    db = Database(url)
    try:
        with db.write() as s:
            org_id = s.execute(
                select(m.Organization.id).where(m.Organization.name == ROOT_ORG)
            ).scalar_one()
            total = models * per_model
            version_rows: list[dict[str, Any]] = []
            model_ids: dict[tuple[str, int], int] = {}
            av_ids: dict[str, list[int]] = {}
            users: dict[str, dict[str, int]] = {}
            for team in teams:
                people = {}
                for who, sa in (
                    ("owner", False),
                    ("member", False),
                    ("viewer", False),
                    ("robot", True),
                ):
                    people[who] = s.execute(
                        insert(m.User).returning(m.User.id),
                        {
                            "name": f"{team}-{who}",
                            "org_id": org_id,
                            "display_name": who,
                            "email": "",
                            "service_account": sa,
                            "org_role": int(OrgRole.MEMBER),
                            "create_time": T0,
                            "update_time": T0,
                        },
                    ).scalar_one()
                users[team] = people
                team_id = s.execute(
                    insert(m.Team).returning(m.Team.id),
                    {
                        "name": team,
                        "org_id": org_id,
                        "display_name": team,
                        "legacy_state": int(LegacyState.WRITABLE),
                        "legacy_protected_aliases": ["production"],
                        "legacy_settings_update_time": T0,
                        "create_time": T0,
                        "update_time": T0,
                    },
                ).scalar_one()
                roles = {
                    "owner": TeamRole.ADMIN,
                    "member": TeamRole.MEMBER,
                    "viewer": TeamRole.VIEWER,
                    "robot": TeamRole.MEMBER,
                }
                s.execute(
                    insert(m.TeamMember),
                    [
                        {
                            "team_id": team_id,
                            "user_id": people[w],
                            "role": int(role),
                            "create_time": T0,
                            "update_time": T0,
                        }
                        for w, role in roles.items()
                    ],
                )
                s.execute(
                    insert(m.LegacyRegistryAdmin),
                    [{"team_id": team_id, "user_id": people["viewer"]}],
                )
                project_id = s.execute(
                    insert(m.Project).returning(m.Project.id),
                    {
                        "team_id": team_id,
                        "name": "train",
                        "description": "",
                        "create_time": T0,
                        "update_time": T0,
                    },
                ).scalar_one()
                artifact_id = s.execute(
                    insert(m.Artifact).returning(m.Artifact.id),
                    {
                        "project_id": project_id,
                        "name": "weights",
                        "type": "model",
                        "next_version_index": total,
                        "create_time": T0,
                        "update_time": T0,
                    },
                ).scalar_one()
                av_ids[team] = list(
                    s.execute(
                        insert(m.ArtifactVersion).returning(
                            m.ArtifactVersion.id, sort_by_parameter_order=True
                        ),
                        [
                            {
                                "artifact_id": artifact_id,
                                "version_index": i,
                                "digest": f"sha256:{i:08x}",
                                "size": i,
                                "manifest": [
                                    {"path": "model.pt", "digest": f"sha256:{i:08x}", "size": i}
                                ],
                                "metadata": {"step": i, "accuracy": i / total},
                                "description": f"v{i}",
                                "tags": [],
                                "producing_run": f"run-{i}",
                                "created_by_id": people["owner"],
                                "delete_time": T0 + i if i % 97 == 5 else None,
                                "create_time": T0 + i,
                                "update_time": T0 + i,
                            }
                            for i in range(total)
                        ],
                    ).scalars()
                )
                for k in range(models):
                    model_ids[(team, k)] = s.execute(
                        insert(m.RegisteredModel).returning(m.RegisteredModel.id),
                        {
                            "team_id": team_id,
                            "name": f"model-{k:02d}",
                            "description": f"# card {k}",
                            "tags": ["t", f"k{k % 3}"],
                            "next_version_index": per_model + k % 2,
                            "created_by_id": people["owner"],
                            "create_time": T0 + k,
                            "update_time": T0 + k,
                        },
                    ).scalar_one()
            for j in range(per_model):
                for k in range(models):
                    for team in teams:
                        people = users[team]
                        version_rows.append(
                            {
                                "registered_model_id": model_ids[(team, k)],
                                "version_index": j,
                                "artifact_version_id": av_ids[team][k * per_model + j],
                                "tags": ["eval"] if j % 7 == 0 else [],
                                "description": f"link {j}" if j % 11 == 0 else "",
                                "linked_by_id": people["robot" if j % 3 == 0 else "member"],
                                "create_time": T0 + 1000 * j + k,
                                "update_time": T0 + 1000 * j + k,
                            }
                        )
            version_ids = list(
                s.execute(
                    insert(m.RegisteredModelVersion).returning(
                        m.RegisteredModelVersion.id, sort_by_parameter_order=True
                    ),
                    version_rows,
                ).scalars()
            )
            by_key = {
                (row["registered_model_id"], row["version_index"]): vid
                for row, vid in zip(version_rows, version_ids, strict=True)
            }
            aliases = []
            for (_team, k), model_id in model_ids.items():
                for alias, j in (("production", 10 + k % 7), ("staging", per_model - 1 - k % 5)):
                    aliases.append(
                        {
                            "registered_model_id": model_id,
                            "alias": alias,
                            "version_id": by_key[(model_id, j)],
                            "create_time": T0 + j,
                        }
                    )
            s.execute(insert(m.RegisteredModelAlias), aliases)
    finally:
        db.dispose()


def dump_target(url: str, team: str) -> dict[str, Any]:
    """The team's migrated registry with team-specific names taken out, so the targets
    of two identical teams compare equal."""
    db = Database(url)
    try:
        with db.read() as s:
            team_row = s.execute(select(m.Team).where(m.Team.name == team)).scalar_one()
            registry = s.execute(
                select(m.Registry).where(m.Registry.id == team_row.migrated_registry_id)
            ).scalar_one()
            member_team = aliased(m.Team)
            members = sorted(
                ((user or "").removeprefix(f"{team}-"), member_team_name == team, role, follows)
                for user, member_team_name, role, follows in s.execute(
                    select(
                        m.User.name,
                        member_team.name,
                        m.RegistryMember.role,
                        m.RegistryMember.team_roles,
                    )
                    .outerjoin(m.User, m.User.id == m.RegistryMember.user_id)
                    .outerjoin(member_team, member_team.id == m.RegistryMember.team_id)
                    .where(m.RegistryMember.registry_id == registry.id)
                ).all()
            )
            collections = sorted(
                (
                    c.name,
                    c.type,
                    c.description,
                    list(c.tags),
                    c.next_version_index,
                    c.create_time,
                    c.update_time,
                    c.created_by_id is not None,
                )
                for c in s.execute(
                    select(m.Collection).where(m.Collection.registry_id == registry.id)
                ).scalars()
            )
            linker = aliased(m.User)
            versions = sorted(
                (
                    c_name,
                    v.version_index,
                    av_index,
                    list(v.tags),
                    v.description,
                    (linked or "").removeprefix(f"{team}-"),
                    v.create_time,
                    v.update_time,
                )
                for c_name, v, av_index, linked in s.execute(
                    select(
                        m.Collection.name,
                        m.CollectionVersion,
                        m.ArtifactVersion.version_index,
                        linker.name,
                    )
                    .join(m.Collection, m.Collection.id == m.CollectionVersion.collection_id)
                    .join(
                        m.ArtifactVersion,
                        m.ArtifactVersion.id == m.CollectionVersion.artifact_version_id,
                    )
                    .outerjoin(linker, linker.id == m.CollectionVersion.linked_by_id)
                    .where(m.Collection.registry_id == registry.id)
                ).all()
            )
            aliases = sorted(
                s.execute(
                    select(
                        m.Collection.name,
                        m.CollectionAlias.alias,
                        m.CollectionVersion.version_index,
                    )
                    .join(m.Collection, m.Collection.id == m.CollectionAlias.collection_id)
                    .join(
                        m.CollectionVersion, m.CollectionVersion.id == m.CollectionAlias.version_id
                    )
                    .where(m.Collection.registry_id == registry.id)
                ).all()
            )
            redirects = s.execute(
                select(m.RegisteredModel.name, m.Collection.name)
                .join(m.Collection, m.Collection.id == m.RegisteredModel.migrated_collection_id)
                .where(m.RegisteredModel.team_id == team_row.id)
            ).all()
            return {
                "registry": (
                    registry.name.removeprefix(team),
                    registry.visibility,
                    list(registry.artifact_types),
                    list(registry.protected_aliases),
                    registry.default_role,
                ),
                "state": team_row.legacy_state,
                "members": members,
                "collections": collections,
                "versions": versions,
                "aliases": [tuple(a) for a in aliases],
                "redirects": sorted(tuple(x) for x in redirects),
            }
    finally:
        db.dispose()


def dump_legacy(url: str, team: str) -> dict[str, Any]:
    """The legacy registry in the same shape as `dump_target` (versions and aliases)."""
    db = Database(url)
    try:
        with db.read() as s:
            linker = aliased(m.User)
            rm, v = m.RegisteredModel, m.RegisteredModelVersion
            versions = sorted(
                (
                    name,
                    ver.version_index,
                    av_index,
                    list(ver.tags),
                    ver.description,
                    (linked or "").removeprefix(f"{team}-"),
                    ver.create_time,
                    ver.update_time,
                )
                for name, ver, av_index, linked in s.execute(
                    select(rm.name, v, m.ArtifactVersion.version_index, linker.name)
                    .join(rm, rm.id == v.registered_model_id)
                    .join(m.Team, m.Team.id == rm.team_id)
                    .join(m.ArtifactVersion, m.ArtifactVersion.id == v.artifact_version_id)
                    .outerjoin(linker, linker.id == v.linked_by_id)
                    .where(m.Team.name == team)
                ).all()
            )
            aliases = sorted(
                tuple(row)
                for row in s.execute(
                    select(rm.name, m.RegisteredModelAlias.alias, v.version_index)
                    .join(rm, rm.id == m.RegisteredModelAlias.registered_model_id)
                    .join(v, v.id == m.RegisteredModelAlias.version_id)
                    .join(m.Team, m.Team.id == rm.team_id)
                    .where(m.Team.name == team)
                ).all()
            )
            return {"versions": versions, "aliases": aliases}
    finally:
        db.dispose()
