"""The library's defaults are `registry-server serve`'s: a server embedded with
`Settings()` runs as one started from the command line with no flags."""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any

from registry_server.api.settings import RunnerMode, Settings
from registry_server.cli import serve
from registry_server.service.retention import Retention

# serve's parameters that are not a Settings field of the same name: where they go
RENAMED = {
    "webhook_allow_cidr": "webhook_allow_cidrs",
    "event_retention_days": "retention",
    "request_id_retention_hours": "retention",
    "delivery_retention_days": "retention",
}
# how the process serves, not how a replica behaves
NOT_SETTINGS = {
    "address",
    "database_url",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "grace",
    "log_level",
    "log_format",
}


def serve_defaults() -> dict[str, Any]:
    return {
        name: param.default
        for name, param in inspect.signature(serve).parameters.items()
        if name not in NOT_SETTINGS
    }


def test_every_serve_flag_is_a_setting() -> None:
    names = {f.name for f in fields(Settings)}
    assert {RENAMED.get(name, name) for name in serve_defaults()} <= names


def test_settings_default_to_what_serve_uses() -> None:
    library = Settings()
    serve_values = serve_defaults()
    for name, default in serve_values.items():
        if name in RENAMED:
            continue
        assert getattr(library, name) == default, name
    assert library.migration_runner is RunnerMode.process
    assert tuple(serve_values["webhook_allow_cidr"] or ()) == library.webhook_allow_cidrs
    assert library.retention == Retention(
        serve_values["event_retention_days"],
        serve_values["request_id_retention_hours"],
        serve_values["delivery_retention_days"],
    )
