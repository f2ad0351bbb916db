"""Organizations, users, API keys, teams and team memberships."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from ..domain import names
from ..domain.errors import Aborted, AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from ..domain.pagination import ListParams
from ..domain.roles import LegacyState, OrgRole, RegistryRole, TeamRole, Visibility
from ..storage import models as m
from ..storage.db import add_created, now_us, revised
from ..storage.filter_sql import FieldSpec, filter_of, filtered
from ..storage.paging import Page, page_of, parse_order_by
from . import events
from .auth import store_key
from .context import Principal
from .rows import one_or_not_found

CORE_REGISTRIES = {"model": ["model"], "dataset": ["dataset"]}


# --- organizations ---------------------------------------------------------------


def create_organization(
    s: Session,
    actor: Principal | None,
    *,
    organization_id: str,
    display_name: str,
    legacy_model_registry_enabled: bool,
) -> m.Organization:
    """Creates the organization and its core registries. `actor` None = bootstrap."""
    names.principal_id(organization_id, "organization_id")
    names.text(display_name, "display_name", 256)
    if actor is not None and not actor.service_admin:
        raise PermissionDenied(
            "creating organizations needs a service admin "
            "(`registry-server admin grant-service-admin USER`)",
            reason="SERVICE_ADMIN_REQUIRED",
        )
    if s.execute(select(m.Organization.id).where(m.Organization.name == organization_id)).first():
        raise AlreadyExists(f"organizations/{organization_id} already exists")
    org = m.Organization(
        name=organization_id,
        display_name=display_name,
        legacy_model_registry_enabled=legacy_model_registry_enabled,
    )
    add_created(s, org)
    for registry_id, types in CORE_REGISTRIES.items():
        s.add(
            m.Registry(
                org_id=org.id,
                name=registry_id,
                description=f"Core {registry_id} registry",
                visibility=int(Visibility.ORGANIZATION),
                artifact_types=types,
                default_role=int(RegistryRole.RESTRICTED_VIEWER),
                core=True,
                create_time=org.create_time,
                update_time=org.create_time,
            )
        )
    s.flush()
    events.record_event(
        s,
        events.ORGANIZATION_CREATED,
        actor or "system",
        f"organizations/{organization_id}",
        {"legacy_model_registry_enabled": legacy_model_registry_enabled},
        org_id=org.id,
    )
    return org


def bootstrap(
    s: Session,
    *,
    organization_id: str,
    admin_id: str,
    display_name: str,
    legacy_model_registry_enabled: bool,
) -> str:
    """The first organization, its first admin (made a service admin) and that admin's
    API key, returned. Refused on a database that already has an organization: further
    organizations come from a service admin's CreateOrganization."""
    names.principal_id(admin_id, "admin")
    if s.get_bind().dialect.name == "postgresql":  # two bootstraps at once: one wins
        s.execute(text("LOCK TABLE organizations IN SHARE ROW EXCLUSIVE MODE"))
    existing = s.execute(select(m.Organization.name).order_by(m.Organization.id)).first()
    if existing is not None:
        raise FailedPrecondition(
            f"this database already has an organization (organizations/{existing[0]}); "
            "bootstrap only sets up an empty one. A service admin adds organizations with "
            "OrganizationService/CreateOrganization, and `registry-server admin "
            "grant-service-admin USER` makes another user a service admin",
            reason="ALREADY_BOOTSTRAPPED",
        )
    org = create_organization(
        s,
        None,
        organization_id=organization_id,
        display_name=display_name,
        legacy_model_registry_enabled=legacy_model_registry_enabled,
    )
    user = _insert_user(
        s,
        org.id,
        "system",
        user_id=admin_id,
        display_name=admin_id,
        email="",
        service_account=False,
        org_role=OrgRole.ADMIN,
        service_admin=True,
        details={"service_admin": True},
    )
    _, secret = store_key(s, user.id, "bootstrap")
    return secret


def set_service_admin(s: Session, user_id: str, flag: bool) -> m.User:
    """`registry-server admin grant-service-admin|revoke-service-admin`: run by an
    operator with database access, recorded as an event in the user's organization."""
    user = one_or_not_found(s, select(m.User).where(m.User.name == user_id), f"users/{user_id}")
    if user.service_admin != flag:
        revised(user, service_admin=flag)
        events.record_event(
            s,
            events.SERVICE_ADMIN_GRANTED if flag else events.SERVICE_ADMIN_REVOKED,
            "system",
            f"users/{user_id}",
            org_id=user.org_id,
        )
    return user


def _reach_details(p: Principal, org_id: int) -> dict[str, str]:
    """Event details of a service admin acting in another organization, so that its
    admins see who reached in from where."""
    if p.org_id == org_id:
        return {}
    return {"service_admin_of": f"organizations/{p.org}"}


def get_org(
    s: Session, p: Principal, org_id: str, field: str = "name", *, service_admin_reach: bool = False
) -> m.Organization:
    """The organization, visible to its members. `service_admin_reach`: also to service
    admins, for the few operations that cross organizations (SPEC section 3: reading and
    listing organizations, creating users and keys in them)."""
    org = s.execute(
        select(m.Organization).where(m.Organization.name == org_id)
    ).scalar_one_or_none()
    if org is None or (org.id != p.org_id and not (service_admin_reach and p.service_admin)):
        raise NotFound(f"organizations/{org_id} not found")
    return org


def require_org_admin(
    s: Session, p: Principal, org: m.Organization, what: str, *, service_admin_reach: bool = False
) -> None:
    if org.id == p.org_id and p.org_admin:
        return
    if service_admin_reach and p.service_admin:
        return
    raise PermissionDenied(f"{what} needs an organization admin", reason="ORG_ADMIN_REQUIRED")


ORGANIZATION_ORDER = {"name": m.Organization.name, "create_time": m.Organization.create_time}
API_KEY_ORDER = {"create_time": m.ApiKey.create_time}
TEAM_MEMBER_ORDER = {"user": m.User.name, "create_time": m.TeamMember.create_time}


def list_organizations(s: Session, p: Principal, ask: ListParams) -> Page:
    """Every organization for a service admin; the caller's own for anyone else."""
    keys = parse_order_by(ask.order_by, ORGANIZATION_ORDER, "name", m.Organization.id)
    stmt = select(m.Organization)
    if not p.service_admin:
        stmt = stmt.where(m.Organization.id == p.org_id)
    return page_of(s, stmt, keys, ask, ("organizations",))


USER_ORDER = {"name": m.User.name, "create_time": m.User.create_time}
USER_FILTER = {
    "name": FieldSpec("string", m.User.name),
    "email": FieldSpec("string", m.User.email),
    "service_account": FieldSpec("bool", m.User.service_account),
}
TEAM_ORDER = {"name": m.Team.name, "create_time": m.Team.create_time}
TEAM_FILTER = {
    "name": FieldSpec("string", m.Team.name),
    "display_name": FieldSpec("string", m.Team.display_name),
}


def list_users(s: Session, p: Principal, org_id: str, ask: ListParams) -> Page:
    return _list_in_org(s, p, org_id, ask, m.User, USER_ORDER, USER_FILTER)


def list_teams(s: Session, p: Principal, org_id: str, ask: ListParams) -> Page:
    return _list_in_org(s, p, org_id, ask, m.Team, TEAM_ORDER, TEAM_FILTER)


def _list_in_org(
    s: Session,
    p: Principal,
    org_id: str,
    ask: ListParams,
    model: type[m.User] | type[m.Team],
    order: dict[str, Any],
    filter: dict[str, FieldSpec],
) -> Page:
    keys = parse_order_by(ask.order_by, order, "name", model.id)
    org = get_org(s, p, org_id, "parent")
    stmt = filtered(select(model).where(model.org_id == org.id), filter_of(s, ask.filter, filter))
    return page_of(s, stmt, keys, ask, (model.__tablename__, org_id, ask.filter, ask.order_by))


def list_team_members(s: Session, p: Principal, team_id: str, ask: ListParams) -> Page:
    """Rows of (TeamMember, user name, user id), by user name."""
    keys = parse_order_by(ask.order_by, TEAM_MEMBER_ORDER, "user", m.User.id)
    team = get_team(s, p, team_id)
    stmt = (
        select(m.TeamMember, m.User.name, m.User.id)
        .join(m.User, m.User.id == m.TeamMember.user_id)
        .where(m.TeamMember.team_id == team.id)
    )
    return page_of(s, stmt, keys, ask, ("members", team_id))


def update_organization(
    s: Session,
    p: Principal,
    org_id: str,
    paths: set[str],
    *,
    display_name: str,
    legacy_model_registry_enabled: bool,
    etag: str,
) -> m.Organization:
    names.text(display_name, "organization.display_name", 256)
    org = get_org(s, p, org_id, "organization.name")
    require_org_admin(s, p, org, "updating the organization")
    check_etag(etag, org.revision, "organization.etag")
    revised(
        org,
        paths,
        display_name=display_name,
        legacy_model_registry_enabled=legacy_model_registry_enabled,
    )
    events.record_event(
        s,
        events.ORGANIZATION_UPDATED,
        p,
        f"organizations/{org.name}",
        {"fields": sorted(paths)},
        org_id=org.id,
    )
    return org


def check_etag(given: str, revision: int, field: str) -> None:
    if given and given != names.etag(revision):
        raise Aborted(
            f"{field} does not match the current version; re-read and retry", reason="ETAG_MISMATCH"
        )


# --- users ------------------------------------------------------------------------


def create_user(
    s: Session,
    p: Principal,
    *,
    org_id: str,
    user_id: str,
    display_name: str,
    email: str,
    service_account: bool,
    org_role: OrgRole,
) -> m.User:
    names.principal_id(user_id, "user_id")
    names.text(display_name, "display_name", 256)
    names.text(email, "email", 320)
    org = get_org(s, p, org_id, "parent", service_admin_reach=True)
    require_org_admin(s, p, org, "creating users", service_admin_reach=True)
    if s.execute(select(m.User.id).where(m.User.name == user_id)).first():
        raise AlreadyExists(f"users/{user_id} already exists")
    return _insert_user(
        s,
        org.id,
        p,
        user_id=user_id,
        display_name=display_name,
        email=email,
        service_account=service_account,
        org_role=org_role,
        details=_reach_details(p, org.id),
    )


def _insert_user(
    s: Session,
    org_id: int,
    actor: Principal | str,
    *,
    user_id: str,
    display_name: str,
    email: str,
    service_account: bool,
    org_role: OrgRole,
    service_admin: bool = False,
    details: dict[str, Any] | None = None,
) -> m.User:
    user = m.User(
        name=user_id,
        org_id=org_id,
        display_name=display_name,
        email=email,
        service_account=service_account,
        org_role=int(org_role),
        service_admin=service_admin,
    )
    add_created(s, user)
    events.record_event(
        s,
        events.USER_CREATED,
        actor,
        f"users/{user_id}",
        {"service_account": service_account, "org_role": org_role.name, **(details or {})},
        org_id=org_id,
    )
    return user


def get_user(
    s: Session, p: Principal, user_id: str, *, service_admin_reach: bool = False
) -> m.User:
    user = s.execute(select(m.User).where(m.User.name == user_id)).scalar_one_or_none()
    if user is None or (user.org_id != p.org_id and not (service_admin_reach and p.service_admin)):
        raise NotFound(f"users/{user_id} not found")
    return user


def update_user(
    s: Session,
    p: Principal,
    user_id: str,
    paths: set[str],
    *,
    display_name: str,
    email: str,
    org_role: OrgRole,
    etag: str,
) -> m.User:
    names.text(display_name, "user.display_name", 256)
    names.text(email, "user.email", 320)
    user = get_user(s, p, user_id)
    org = s.get(m.Organization, user.org_id)
    assert org is not None
    self_edit = user.id == p.user_id and paths <= {"display_name", "email"}
    if not self_edit:
        require_org_admin(s, p, org, "updating another user or an org role")
    check_etag(etag, user.revision, "user.etag")
    if "org_role" in paths and user.org_role == OrgRole.ADMIN and org_role != OrgRole.ADMIN:
        admins = s.execute(
            select(func.count()).where(
                m.User.org_id == org.id, m.User.org_role == int(OrgRole.ADMIN)
            )
        ).scalar_one()
        if admins <= 1:
            raise FailedPrecondition(
                "the organization's last admin cannot be demoted", reason="LAST_ADMIN"
            )
    revised(user, paths, display_name=display_name, email=email, org_role=int(org_role))
    events.record_event(
        s, events.USER_UPDATED, p, f"users/{user.name}", {"fields": sorted(paths)}, org_id=org.id
    )
    return user


# --- API keys ---------------------------------------------------------------------


def _key_owner(
    s: Session, p: Principal, user_id: str, what: str, *, service_admin_reach: bool = False
) -> m.User:
    user = get_user(s, p, user_id, service_admin_reach=service_admin_reach)
    if user.id != p.user_id:
        org = s.get(m.Organization, user.org_id)
        assert org is not None
        require_org_admin(s, p, org, what, service_admin_reach=service_admin_reach)
    return user


def create_api_key(
    s: Session, p: Principal, user_id: str, description: str
) -> tuple[m.ApiKey, str, m.User]:
    names.text(description, "description", 1024)
    # A service admin may create keys in any organization (onboarding and recovery); the
    # event below lands in the key owner's organization, where its admins see it.
    user = _key_owner(s, p, user_id, "creating another user's API key", service_admin_reach=True)
    key, secret = store_key(s, user.id, description)
    events.record_event(
        s,
        events.API_KEY_CREATED,
        p,
        f"users/{user.name}/apiKeys/{key.key_id}",
        _reach_details(p, user.org_id),
        org_id=user.org_id,
    )
    return key, secret, user


def list_api_keys(s: Session, p: Principal, user_id: str, ask: ListParams) -> Page:
    """The user's keys not revoked, oldest first."""
    keys = parse_order_by(ask.order_by, API_KEY_ORDER, "create_time", m.ApiKey.id)
    user = _key_owner(s, p, user_id, "listing another user's API keys")
    stmt = select(m.ApiKey).where(m.ApiKey.user_id == user.id, m.ApiKey.revoke_time.is_(None))
    return page_of(s, stmt, keys, ask, ("keys", user_id))


def revoke_api_key(s: Session, p: Principal, user_id: str, key_id: str) -> str:
    user = _key_owner(s, p, user_id, "revoking another user's API key")
    stmt = select(m.ApiKey).where(
        m.ApiKey.key_id == key_id, m.ApiKey.user_id == user.id, m.ApiKey.revoke_time.is_(None)
    )
    key = one_or_not_found(s, stmt, f"users/{user_id}/apiKeys/{key_id}")
    key.revoke_time = now_us()
    events.record_event(
        s, events.API_KEY_REVOKED, p, f"users/{user.name}/apiKeys/{key_id}", org_id=user.org_id
    )
    return key_id


# --- teams ------------------------------------------------------------------------


def create_team(
    s: Session, p: Principal, *, org_id: str, team_id: str, display_name: str
) -> m.Team:
    names.principal_id(team_id, "team_id")
    names.text(display_name, "display_name", 256)
    org = get_org(s, p, org_id, "parent")
    if s.execute(select(m.Team.id).where(m.Team.name == team_id)).first():
        raise AlreadyExists(
            f"teams/{team_id} already exists (team names are unique across the service)"
        )
    t = now_us()
    team = m.Team(
        name=team_id,
        org_id=org.id,
        display_name=display_name,
        legacy_state=int(
            LegacyState.WRITABLE if org.legacy_model_registry_enabled else LegacyState.DISABLED
        ),
        legacy_settings_update_time=t,
    )
    add_created(s, team, t)
    admin = m.TeamMember(team_id=team.id, user_id=p.user_id, role=int(TeamRole.ADMIN))
    add_created(s, admin, t)  # the creator becomes the team's ADMIN
    events.record_event(
        s, events.TEAM_CREATED, p, f"teams/{team_id}", org_id=org.id, team_id=team.id
    )
    return team


def get_team(s: Session, p: Principal, team_id: str) -> m.Team:
    team = s.execute(select(m.Team).where(m.Team.name == team_id)).scalar_one_or_none()
    if team is None or team.org_id != p.org_id:
        raise NotFound(f"teams/{team_id} not found")
    return team


def _require_team_admin(s: Session, p: Principal, team: m.Team) -> None:
    if p.org_admin and p.org_id == team.org_id:
        return
    role = s.execute(
        select(m.TeamMember.role).where(
            m.TeamMember.team_id == team.id, m.TeamMember.user_id == p.user_id
        )
    ).scalar()
    if role != TeamRole.ADMIN:
        raise PermissionDenied(
            f"managing members of teams/{team.name} needs team ADMIN", reason="TEAM_ADMIN_REQUIRED"
        )


def _team_and_user(
    s: Session, p: Principal, team_id: str, user_id: str, *, leaving: bool = False
) -> tuple[m.Team, m.User]:
    """The team and the user whose membership the caller changes: that needs team ADMIN,
    except to leave (`leaving`, and the user is the caller)."""
    team = get_team(s, p, team_id)
    if not leaving:
        _require_team_admin(s, p, team)
    user = s.execute(select(m.User).where(m.User.name == user_id)).scalar_one_or_none()
    if user is None or user.org_id != team.org_id:
        raise NotFound(f"users/{user_id} not found in the team's organization")
    if leaving and user.id != p.user_id:
        _require_team_admin(s, p, team)
    return team, user


def add_team_member(
    s: Session, p: Principal, team_id: str, user_id: str, role: TeamRole
) -> tuple[m.TeamMember, m.Team, m.User]:
    team, user = _team_and_user(s, p, team_id, user_id)
    if s.get(m.TeamMember, (team.id, user.id)) is not None:
        raise AlreadyExists(f"users/{user_id} is already a member of teams/{team_id}")
    member = m.TeamMember(team_id=team.id, user_id=user.id, role=int(role))
    add_created(s, member)
    events.scoped_event(
        s,
        events.TEAM_MEMBER_ADDED,
        p,
        f"teams/{team_id}/members/{user_id}",
        {"role": role.name},
        team=team,
    )
    return member, team, user


def _membership(s: Session, team: m.Team, user: m.User, role: TeamRole | None) -> m.TeamMember:
    """The member to give `role` (None: to remove), refused when that leaves the team
    without an ADMIN."""
    member = s.get(m.TeamMember, (team.id, user.id))
    if member is None:
        raise NotFound(f"users/{user.name} is not a member of teams/{team.name}")
    if member.role == TeamRole.ADMIN and role != TeamRole.ADMIN:
        admins = select(func.count()).where(
            m.TeamMember.team_id == team.id, m.TeamMember.role == int(TeamRole.ADMIN)
        )
        if s.execute(admins).scalar_one() <= 1:
            raise FailedPrecondition(
                f"users/{user.name} is the last ADMIN of teams/{team.name}", reason="LAST_ADMIN"
            )
    return member


def update_team_member(
    s: Session, p: Principal, team_id: str, user_id: str, role: TeamRole
) -> tuple[m.TeamMember, m.Team, m.User]:
    team, user = _team_and_user(s, p, team_id, user_id)
    member = _membership(s, team, user, role)
    before = TeamRole(member.role)
    member.role = int(role)
    member.update_time = now_us()
    events.scoped_event(
        s,
        events.TEAM_MEMBER_UPDATED,
        p,
        f"teams/{team_id}/members/{user_id}",
        {"role": role.name, "previous_role": before.name},
        team=team,
    )
    return member, team, user


def remove_team_member(s: Session, p: Principal, team_id: str, user_id: str) -> None:
    team, user = _team_and_user(s, p, team_id, user_id, leaving=True)
    member = _membership(s, team, user, None)
    s.delete(member)
    # What the team gave in the legacy registry goes with it.
    s.execute(
        delete(m.LegacyRegistryAdmin).where(
            m.LegacyRegistryAdmin.team_id == team.id, m.LegacyRegistryAdmin.user_id == user.id
        )
    )
    events.scoped_event(
        s, events.TEAM_MEMBER_REMOVED, p, f"teams/{team_id}/members/{user_id}", team=team
    )
