"""Straight to the session server's database: set-up the API does not offer (rows
inserted as an older release or a migration left them) and what the API does not show
(the stored events)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry_server.domain.roles import LegacyState, RegistryRole, Visibility
from registry_server.storage import models as m
from registry_server.storage.db import now_us

from .servers import ServerThread


@contextmanager
def db_session(server: ServerThread) -> Iterator[Session]:
    """A write session on the server's own database (for setup the API does not offer)."""
    with server.app.db.write() as s:
        yield s


def org_id(s: Session, org: str) -> int:
    return s.execute(select(m.Organization.id).where(m.Organization.name == org)).scalar_one()


def artifact_version_id(s: Session, name: str) -> int:
    _, team, _, project, _, artifact, _, n = name.split("/")
    return s.execute(
        select(m.ArtifactVersion.id)
        .join(m.Artifact, m.Artifact.id == m.ArtifactVersion.artifact_id)
        .join(m.Project, m.Project.id == m.Artifact.project_id)
        .join(m.Team, m.Team.id == m.Project.team_id)
        .where(
            m.Team.name == team,
            m.Project.name == project,
            m.Artifact.name == artifact,
            m.ArtifactVersion.version_index == int(n),
        )
    ).scalar_one()


def insert_registry(server: ServerThread, org: str, name: str, *, restricted: bool = True) -> int:
    now = now_us()
    with db_session(server) as s:
        reg = m.Registry(
            org_id=org_id(s, org),
            name=name,
            description="",
            visibility=int(Visibility.RESTRICTED if restricted else Visibility.ORGANIZATION),
            artifact_types=["model"],
            allow_all_artifact_types=False,
            protected_aliases=[],
            default_role=int(RegistryRole.RESTRICTED_VIEWER),
            core=False,
            revision=1,
            create_time=now,
            update_time=now,
        )
        s.add(reg)
        s.flush()
        return reg.id


def insert_registry_member(
    server: ServerThread, org: str, registry: str, user: str, role: RegistryRole
) -> None:
    with db_session(server) as s:
        registry_id = s.execute(
            select(m.Registry.id).where(
                m.Registry.org_id == org_id(s, org), m.Registry.name == registry
            )
        ).scalar_one()
        user_id = s.execute(select(m.User.id).where(m.User.name == user)).scalar_one()
        now = now_us()
        s.add(
            m.RegistryMember(
                registry_id=registry_id,
                user_id=user_id,
                role=int(role),
                create_time=now,
                update_time=now,
            )
        )


def insert_collection(
    server: ServerThread,
    org: str,
    registry: str,
    collection: str,
    versions: list[str],
    aliases: dict[str, int] | None = None,
) -> int:
    """A collection linking the artifact version names in order, with aliases -> index."""
    now = now_us()
    with db_session(server) as s:
        registry_id = s.execute(
            select(m.Registry.id).where(
                m.Registry.org_id == org_id(s, org), m.Registry.name == registry
            )
        ).scalar_one()
        coll = m.Collection(
            registry_id=registry_id,
            name=collection,
            type="model",
            description="",
            tags=[],
            next_version_index=len(versions),
            revision=1,
            create_time=now,
            update_time=now,
        )
        s.add(coll)
        s.flush()
        rows = []
        for i, name in enumerate(versions):
            cv = m.CollectionVersion(
                collection_id=coll.id,
                version_index=i,
                artifact_version_id=artifact_version_id(s, name),
                tags=[],
                description="",
                create_time=now,
                update_time=now,
            )
            s.add(cv)
            rows.append(cv)
        s.flush()
        for alias, index in (aliases or {}).items():
            s.add(
                m.CollectionAlias(
                    collection_id=coll.id, alias=alias, version_id=rows[index].id, create_time=now
                )
            )
        return coll.id


def set_legacy_state(
    server: ServerThread, team: str, state: LegacyState, registry_id: int | None = None
) -> None:
    with db_session(server) as s:
        t = s.execute(select(m.Team).where(m.Team.name == team)).scalar_one()
        t.legacy_state = int(state)
        t.migrated_registry_id = registry_id


def events_of(server: ServerThread, org: str, type_: str | None = None) -> list[m.Event]:
    with server.app.db.read() as s:
        stmt = select(m.Event).where(m.Event.org_id == org_id(s, org)).order_by(m.Event.cursor)
        if type_:
            stmt = stmt.where(m.Event.type == type_)
        return list(s.execute(stmt).scalars())


def org_events(server: ServerThread, org: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(type, resource, details) of an organization's events in cursor order."""
    return [(e.type, e.resource, e.details) for e in events_of(server, org)]
