"""The server's authorization table (service/authz_table.py) covers every RPC of every
service descriptor, and names no RPC that does not exist. The principal x RPC matrix
through the server: tests/api/test_authz_matrix.py."""

from __future__ import annotations

from registry_server.domain.roles import Permission
from registry_server.service import authz_table

from ..support.services import all_rpcs


def test_every_rpc_of_every_service_has_an_authorization_rule() -> None:
    missing = [
        f"{svc}.{rpc}"
        for svc, rpc in all_rpcs()
        if authz_table.method(svc, rpc) not in authz_table.AUTHZ
    ]
    assert not missing, f"RPCs without an entry in service/authz_table.py: {missing}"
    known = {authz_table.method(svc, rpc) for svc, rpc in all_rpcs()}
    stale = sorted(set(authz_table.AUTHZ) - known)
    assert not stale, f"authz_table entries for RPCs that do not exist: {stale}"
    for full, rule in authz_table.AUTHZ.items():
        assert isinstance(rule, Permission) or (isinstance(rule, str) and rule), full
