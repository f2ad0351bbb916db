"""Usage and lineage of artifact versions (UseArtifactVersion, GetLineage): the runs
that produced, logged again and consumed a version, and every link of it the caller
can see."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
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


def _grouped_links(rows: Iterable[Any], link: Callable[..., LineageLink]) -> list[LineageLink]:
    """Rows (link id, ..., alias or None) -> one LineageLink per link id, in row order:
    `link(link id, ..., the link's aliases)`."""
    first: dict[int, Any] = {}
    aliases: dict[int, list[str]] = defaultdict(list)
    for *row, alias in rows:
        first.setdefault(row[0], row)
        if alias is not None:
            aliases[row[0]].append(alias)
    return [link(*row, tuple(sorted(aliases[i]))) for i, row in first.items()]


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
    links = _collection_links(s, p, av.id) + _legacy_links(s, p, av.id)
    runs, logging_runs = _runs(s, m.ArtifactUsage, av.id), _runs(s, m.ArtifactLogRun, av.id)
    return Lineage(av.name, av.producing_run, runs, links, logging_runs)


def _collection_links(s: Session, p: Principal, version_id: int) -> list[LineageLink]:
    cv, c, r, ca = m.CollectionVersion, m.Collection, m.Registry, m.CollectionAlias
    rows = s.execute(
        select(cv.id, cv.version_index, c.name, r.name, m.Organization.name, ca.alias)
        .join(c, c.id == cv.collection_id)
        .join(r, r.id == c.registry_id)
        .join(m.Organization, m.Organization.id == r.org_id)
        .outerjoin(ca, ca.version_id == cv.id)
        .where(cv.artifact_version_id == version_id, access.visible_registries_clause(p))
        .order_by(r.name, c.name, cv.version_index)
    ).all()
    return _grouped_links(
        rows,
        lambda _, index, collection, registry, org, aliases: LineageLink(
            names.collection_version_name(org, registry, collection, index),
            paths.format_path(
                PathKind.REGISTRY_COLLECTION, org, registry, collection, Version(index=index)
            ),
            aliases,
        ),
    )


def _legacy_links(s: Session, p: Principal, version_id: int) -> list[LineageLink]:
    """Legacy registries are team-only: the caller's teams, or all teams for org admins."""
    v, rm, a, team = m.RegisteredModelVersion, m.RegisteredModel, m.RegisteredModelAlias, m.Team
    visible: ColumnElement[bool] = team.org_id == p.org_id
    if not p.org_admin:
        visible = and_(
            visible,
            exists().where(m.TeamMember.team_id == team.id, m.TeamMember.user_id == p.user_id),
        )
    rows = s.execute(
        select(v.id, v.version_index, rm.name, team.name, a.alias)
        .join(rm, rm.id == v.registered_model_id)
        .join(team, team.id == rm.team_id)
        .outerjoin(a, a.version_id == v.id)
        .where(v.artifact_version_id == version_id, visible)
        .order_by(team.name, rm.name, v.version_index)
    ).all()
    return _grouped_links(
        rows,
        lambda _, index, model, team, aliases: LineageLink(
            names.model_version_name(team, model, index),
            paths.format_path(PathKind.LEGACY_MODEL, team, "", model, Version(index=index)),
            aliases,
        ),
    )
