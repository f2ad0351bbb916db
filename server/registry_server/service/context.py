"""Who is calling: the authenticated principal, passed to every use case."""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.roles import OrgRole


@dataclass(frozen=True)
class Principal:
    user_id: int
    user: str  # user id, e.g. "alice"
    org_id: int
    org: str
    org_role: OrgRole
    service_account: bool
    key_id: str = ""
    # An operator of the installation (SPEC section 3): may create and list organizations
    # and create users and keys in any of them; nothing else crosses organizations.
    service_admin: bool = False

    @property
    def name(self) -> str:
        return f"users/{self.user}"

    @property
    def org_admin(self) -> bool:
        return self.org_role == OrgRole.ADMIN
