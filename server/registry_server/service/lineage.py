"""Usage and lineage of artifact versions (UseArtifactVersion, GetLineage): the runs
that produced, logged again and consumed a version, and every link of it the caller
can see."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..domain import names, paths
from ..domain.paths import PathKind, Version
from ..storage import models as m
from ..storage.db import now_us
from ..storage.sql import Sql
from . import access, events
from .artifacts import check_run_id, get_artifact_version
from .context import Principal
from .resolve import Resolution, resolve_reference


def use_artifact_version(
    s: Session, p: Principal, reference: str, field: str, run_id: str
) -> Resolution:
    """Resolves a name or path (needs the right to use it) and records the consuming run."""
    check_run_id(run_id)
    res = resolve_reference(Sql.of(s), p, reference, field=field)
    av = res.artifact_version
    recorded = s.execute(
        select(m.ArtifactUsage.run_id).where(
            m.ArtifactUsage.version_id == av.id, m.ArtifactUsage.run_id == run_id
        )
    ).first()
    if recorded is not None:
        return res
    try:
        with s.begin_nested():
            s.add(
                m.ArtifactUsage(
                    version_id=av.id, run_id=run_id, user_id=p.user_id, create_time=now_us()
                )
            )
    except IntegrityError:
        return res  # the same run recorded it concurrently
    events.record_event(
        s,
        events.ARTIFACT_VERSION_USED,
        p,
        av.name,
        {"run_id": run_id, "path": res.canonical_path, "redirected": res.redirected},
        org_id=av.org_id,
        team_id=av.team_id,
        registry_id=res.registry_id,
    )
    return res


@dataclass(frozen=True)
class LineageLink:
    name: str
    path: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Lineage:
    artifact_version: str
    producing_run: str
    consuming_runs: list[str]
    links: list[LineageLink] = field(default_factory=list)
    # runs that logged identical content again after the producing run
    logging_runs: list[str] = field(default_factory=list)


def _grouped_links(rows: Iterable[Any], make: Any) -> list[LineageLink]:
    """Rows (link id, ..., alias-or-None) -> one LineageLink per link, in row order."""
    order: list[int] = []
    first: dict[int, Any] = {}
    aliases: dict[int, list[str]] = defaultdict(list)
    for row in rows:
        if row.id not in first:
            first[row.id] = row
            order.append(row.id)
        if row.alias is not None:
            aliases[row.id].append(row.alias)
    return [make(first[i], tuple(sorted(aliases[i]))) for i in order]


def _runs(s: Session, table: type[m.RunRecord], version_id: int) -> list[str]:
    """The runs `table` records for a version, oldest first."""
    return list(
        s.execute(
            select(table.run_id)
            .where(table.version_id == version_id)
            .order_by(table.create_time, table.run_id)
        ).scalars()
    )


def get_lineage(
    s: Session, p: Principal, team: str, project: str, artifact: str, index: int
) -> Lineage:
    """Producing run, runs that logged it again, consuming runs and every link the
    caller can see (one query each)."""
    av = get_artifact_version(s, p, team, project, artifact, index)
    runs = _runs(s, m.ArtifactUsage, av.id)
    logging_runs = _runs(s, m.ArtifactLogRun, av.id)
    collection_rows = s.execute(
        select(
            m.CollectionVersion.id,
            m.CollectionVersion.version_index,
            m.Collection.name.label("collection"),
            m.Registry.name.label("registry"),
            m.Organization.name.label("org"),
            m.CollectionAlias.alias,
        )
        .join(m.Collection, m.Collection.id == m.CollectionVersion.collection_id)
        .join(m.Registry, m.Registry.id == m.Collection.registry_id)
        .join(m.Organization, m.Organization.id == m.Registry.org_id)
        .outerjoin(m.CollectionAlias, m.CollectionAlias.version_id == m.CollectionVersion.id)
        .where(
            m.CollectionVersion.artifact_version_id == av.id,
            access.visible_registries_clause(p),
        )
        .order_by(m.Registry.name, m.Collection.name, m.CollectionVersion.version_index)
    ).all()
    links = _grouped_links(
        collection_rows,
        lambda r, aliases: LineageLink(
            names.collection_version_name(r.org, r.registry, r.collection, r.version_index),
            paths.format_path(
                PathKind.REGISTRY_COLLECTION,
                r.org,
                r.registry,
                r.collection,
                Version(index=r.version_index),
            ),
            aliases,
        ),
    )
    # Legacy registries are team-only: the caller's teams, or all teams for org admins.
    legacy_visible: ColumnElement[bool] = m.Team.org_id == p.org_id
    if not p.org_admin:
        legacy_visible = and_(
            legacy_visible,
            exists().where(m.TeamMember.team_id == m.Team.id, m.TeamMember.user_id == p.user_id),
        )
    legacy_rows = s.execute(
        select(
            m.RegisteredModelVersion.id,
            m.RegisteredModelVersion.version_index,
            m.RegisteredModel.name.label("model"),
            m.Team.name.label("team"),
            m.RegisteredModelAlias.alias,
        )
        .join(
            m.RegisteredModel, m.RegisteredModel.id == m.RegisteredModelVersion.registered_model_id
        )
        .join(m.Team, m.Team.id == m.RegisteredModel.team_id)
        .outerjoin(
            m.RegisteredModelAlias, m.RegisteredModelAlias.version_id == m.RegisteredModelVersion.id
        )
        .where(
            m.RegisteredModelVersion.artifact_version_id == av.id,
            legacy_visible,
        )
        .order_by(m.Team.name, m.RegisteredModel.name, m.RegisteredModelVersion.version_index)
    ).all()
    links += _grouped_links(
        legacy_rows,
        lambda r, aliases: LineageLink(
            names.model_version_name(r.team, r.model, r.version_index),
            paths.format_path(
                PathKind.LEGACY_MODEL, r.team, "", r.model, Version(index=r.version_index)
            ),
            aliases,
        ),
    )
    return Lineage(av.name, av.producing_run, runs, links, logging_runs)
