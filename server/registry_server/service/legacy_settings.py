"""The state, rights and settings of a team's legacy Model Registry
(GetLegacyRegistrySettings, UpdateLegacyRegistrySettings, and the checks every legacy
use case makes first; see `service.legacy` for the rules).

The registry's state gates writes: READ_ONLY and MIGRATED answer FAILED_PRECONDITION
`LEGACY_REGISTRY_READ_ONLY` to every write (reads keep working); DISABLED (an
organization that started on the Registry) answers `LEGACY_REGISTRY_DISABLED` to
everything. GetLegacyRegistrySettings is readable by every team member (they need the
state and where the registry moved).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..domain import names
from ..domain.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from ..domain.roles import LegacyPermission, LegacyState
from ..storage import models as m
from ..storage.db import now_us
from . import access, events
from .context import Principal
from .legacy_views import Settings

READ_ONLY_REASON = "LEGACY_REGISTRY_READ_ONLY"
DISABLED_REASON = "LEGACY_REGISTRY_DISABLED"
PROTECTED_REASON = "PROTECTED_ALIAS"
REGISTRY_ADMINS_MAX = 100
PROTECTED_ALIASES_MAX = 100


# --- access and state -----------------------------------------------------------------


def legacy_team(
    s: Session,
    p: Principal,
    team: str,
    perm: LegacyPermission,
    *,
    write: bool,
    what: str = "",
    for_update: bool = False,
    migrated_ok: bool = False,
) -> access.TeamAccess:
    """The team after the visibility check, the state check and the rights check.

    The state answers before the rights: a read-only registry says so to everyone who
    can see it, which is the more useful answer. `migrated_ok`: a write that a MIGRATED
    registry still takes.
    """
    ta = access.team_access(s, p, team, LegacyPermission.VIEW, what=what)
    # Re-read under a lock so the checks below see the current state. A write holds at
    # least a share lock on PostgreSQL: StartMigration's switch to READ_ONLY then waits
    # for writes in flight, and writes after it see READ_ONLY (SQLite writes serialize).
    shared = write and not for_update and s.get_bind().dialect.name == "postgresql"
    if for_update or shared:
        s.execute(
            select(m.Team)
            .where(m.Team.id == ta.team.id)
            .with_for_update(read=shared)
            .execution_options(populate_existing=True)
        )
    migrated = ta.team.legacy_state == LegacyState.MIGRATED
    check_state(s, ta.team, write=write and not (migrated_ok and migrated))
    require_right(ta, perm, what or f"teams/{team}")
    return ta


def require_right(ta: access.TeamAccess, perm: LegacyPermission, what: str) -> None:
    if not ta.allows(perm):
        need = (
            "team MEMBER"
            if perm is LegacyPermission.WRITE
            else "team ADMIN or model registry admin"
        )
        raise PermissionDenied(f"this operation on {what} needs {need}", reason="INSUFFICIENT_ROLE")


def check_state(s: Session, team: m.Team, *, write: bool) -> None:
    state = LegacyState(team.legacy_state)
    if state == LegacyState.DISABLED:
        raise FailedPrecondition(
            f"teams/{team.name} has no legacy Model Registry: the organization uses the "
            "Registry (wandb-registry-*) only",
            reason=DISABLED_REASON,
        )
    if write and state in (LegacyState.READ_ONLY, LegacyState.MIGRATED):
        message = f"the legacy Model Registry of teams/{team.name} is read-only"
        target = migrated_registry_name(s, team)
        if state == LegacyState.MIGRATED and target:
            registry = target.rsplit("/", 1)[-1]
            message += (
                f": it was migrated to {target} (paths wandb-registry-{registry}/...); "
                "make changes there"
            )
        elif state == LegacyState.READ_ONLY:
            message += " while it is being migrated to the Registry"
        raise FailedPrecondition(message, reason=READ_ONLY_REASON)


def migrated_registry_name(s: Session, team: m.Team) -> str:
    if team.migrated_registry_id is None:
        return ""
    row = s.execute(
        select(m.Organization.name, m.Registry.name)
        .join(m.Organization, m.Organization.id == m.Registry.org_id)
        .where(m.Registry.id == team.migrated_registry_id)
    ).first()
    return f"organizations/{row[0]}/registries/{row[1]}" if row else ""


def require_protected_right(ta: access.TeamAccess, aliases: Sequence[str], what: str) -> None:
    """PERMISSION_DENIED when `what` involves aliases the team protects and the caller
    may not manage them."""
    protected = set(ta.team.legacy_protected_aliases or []) & set(aliases)
    if not protected or ta.allows(LegacyPermission.ADMIN):
        return
    raise PermissionDenied(
        f"{what} involves protected aliases {sorted(protected)}: this needs team ADMIN, "
        "a model registry admin or an org admin",
        reason=PROTECTED_REASON,
    )


# --- settings -------------------------------------------------------------------------------


def _settings(s: Session, team: m.Team) -> Settings:
    """The team's settings; once MIGRATED the protected aliases are the migrated
    registry's (changed there since, perhaps), marked redirected."""
    admins = list(
        s.execute(
            select(m.User.name)
            .join(m.LegacyRegistryAdmin, m.LegacyRegistryAdmin.user_id == m.User.id)
            .where(m.LegacyRegistryAdmin.team_id == team.id)
            .order_by(m.User.name)
        ).scalars()
    )
    protected = list(team.legacy_protected_aliases or [])
    migrated = team.legacy_state == LegacyState.MIGRATED and team.migrated_registry_id is not None
    if migrated:
        protected = list(
            s.execute(
                select(m.Registry.protected_aliases).where(
                    m.Registry.id == team.migrated_registry_id
                )
            ).scalar_one()
            or []
        )
    return Settings(team, admins, migrated_registry_name(s, team), protected, migrated)


def get_settings(s: Session, p: Principal, team: str) -> Settings:
    """Readable by every team member; a team whose organization started on the Registry
    answers state DISABLED (no admins, no aliases) rather than an error."""
    ta = access.team_access(s, p, team, LegacyPermission.VIEW)
    if ta.team.legacy_state == LegacyState.DISABLED:
        return Settings(ta.team, [], "", [])
    return _settings(s, ta.team)


def update_settings(
    s: Session,
    p: Principal,
    team: str,
    fields: set[str],
    *,
    protected_aliases: Sequence[str],
    registry_admins: Sequence[str],
) -> Settings:
    """Replaces the protected aliases and/or the model registry admins (team members).

    After the migration the model registry admins are still set here: they are the
    admins of the migrated registry (its member, the team, follows the team's roles)."""
    if len(protected_aliases) > PROTECTED_ALIASES_MAX:
        raise InvalidArgument("protected_aliases", f"at most {PROTECTED_ALIASES_MAX} aliases")
    new_protected = names.existing_aliases(list(protected_aliases), "protected_aliases")
    if len(registry_admins) > REGISTRY_ADMINS_MAX:
        raise InvalidArgument("registry_admins", f"at most {REGISTRY_ADMINS_MAX} users")
    admin_ids = [
        names.parse(u, "users/{user}", f"registry_admins[{i}]")["user"]
        for i, u in enumerate(registry_admins)
    ]
    admin_ids = list(dict.fromkeys(admin_ids))
    ta = legacy_team(
        s,
        p,
        team,
        LegacyPermission.ADMIN,
        write=True,
        for_update=True,
        migrated_ok=fields == {"registry_admins"},
    )
    details: dict[str, Any] = {"fields": sorted(fields)}
    if "registry_admins" in fields:
        members = dict(
            s.execute(
                select(m.User.name, m.User.id)
                .join(m.TeamMember, m.TeamMember.user_id == m.User.id)
                .where(m.TeamMember.team_id == ta.team.id, m.User.name.in_(admin_ids))
            ).all()
        )
        outsiders = [u for u in admin_ids if u not in members]
        if outsiders:
            raise FailedPrecondition(
                "model registry admins must be members of the team; not members of "
                f"teams/{team}: {', '.join('users/' + u for u in outsiders)}",
                reason="NOT_A_TEAM_MEMBER",
            )
        s.execute(delete(m.LegacyRegistryAdmin).where(m.LegacyRegistryAdmin.team_id == ta.team.id))
        for user_id in members.values():
            s.add(m.LegacyRegistryAdmin(team_id=ta.team.id, user_id=user_id))
        details["registry_admins"] = [f"users/{u}" for u in admin_ids]
    if "protected_aliases" in fields:
        details["protected_aliases_before"] = list(ta.team.legacy_protected_aliases or [])
        details["protected_aliases"] = new_protected
        ta.team.legacy_protected_aliases = new_protected
    ta.team.legacy_settings_revision += 1
    ta.team.legacy_settings_update_time = now_us()
    s.flush()
    events.scoped_event(
        s,
        events.LEGACY_SETTINGS_UPDATED,
        p,
        f"teams/{team}/legacyRegistrySettings",
        details,
        team=ta.team,
    )
    return _settings(s, ta.team)
