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

    @property
    def name(self) -> str:
        return f"users/{self.user}"

    @property
    def org_admin(self) -> bool:
        return self.org_role == OrgRole.ADMIN
