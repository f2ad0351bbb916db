"""`registry-server`: serve, bootstrap, admin, db upgrade."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from registry_client.version import version_option

from .api.settings import RunnerMode, Settings, replica_name
from .domain.errors import RegistryError
from .logs import LogFormat
from .logs import configure as configure_logging
from .service.retention import Retention
from .storage.blobs.checksums import S3Checksums
from .storage.db import Database, describe_database, env_url, require_current_schema, safe_url

app = typer.Typer(help="Artifact registry server.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
admin_app = typer.Typer(help="Service administration from the database.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")


@app.callback()
def _options(version: Annotated[bool, version_option("registry-server")] = False) -> None:
    """Artifact registry server."""


DatabaseUrl = Annotated[
    str,
    typer.Option(
        "--database-url",
        envvar="REGISTRY_DATABASE_URL",
        help="SQLAlchemy URL (sqlite:///file.db or postgresql://user@host/db). "
        "Default: registry.db in the working directory (`make run`: the repository's).",
    ),
]

# serve's --migration-busy-share, passed on to its runner child as --busy-share
BusyShare = Annotated[
    float | None,
    typer.Option(
        envvar="REGISTRY_MIGRATION_BUSY_SHARE",
        min=0.01,
        max=1.0,
        help="The share of the time a migration works while the server answers calls "
        "(at full speed while it is idle; workers/pacing.py); 1: full speed always. "
        "Default: 0.3 on SQLite, 0.6 on PostgreSQL.",
    ),
]


SecretKeyFile = Annotated[
    str,
    typer.Option(
        "--secret-key-file",
        envvar="REGISTRY_SECRET_KEY_FILE",
        help="File of AES-256 keys (base64, one a line, the first in use; make one with "
        "`openssl rand -base64 32`) that encrypt webhook secrets at rest. Unset: they are "
        "stored in plaintext.",
    ),
]


BlobStoreOption = Annotated[
    str,
    typer.Option(
        "--blob-store",
        envvar="REGISTRY_BLOB_STORE",
        help="Where file contents are kept: file://DIR, or s3://BUCKET/PREFIX (endpoint "
        "and credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "AWS_REGION). Default: registry-blobs beside the SQLite file (in the working "
        "directory on PostgreSQL).",
    ),
]

LogLevel = Annotated[str, typer.Option(envvar="REGISTRY_LOG_LEVEL")]


def _env(envvar: str, help: str, *, flag: str | None = None, **kw: Any) -> Any:
    """An option of `serve` that its environment variable sets too."""
    return typer.Option(*([flag] if flag else []), envvar=envvar, help=help, **kw)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `2h`, `7d` (a bare number is seconds)."""
    value, unit = (text[:-1], text[-1]) if text and text[-1] in DURATION_UNITS else (text, "s")
    try:
        seconds = float(value) * DURATION_UNITS[unit]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration such as 30m, 6h or 7d") from None
    if seconds < 0:
        raise typer.BadParameter("must not be negative")
    return seconds


@app.command()
def serve(
    address: Annotated[str, _env("REGISTRY_ADDRESS", "host:port to listen on.")] = (
        "127.0.0.1:50051"
    ),
    database_url: DatabaseUrl = "",
    tls_cert: Annotated[str, _env("REGISTRY_TLS_CERT", "PEM certificate chain.")] = "",
    tls_key: Annotated[str, _env("REGISTRY_TLS_KEY", "PEM private key.")] = "",
    tls_client_ca: Annotated[
        str, _env("REGISTRY_TLS_CLIENT_CA", "PEM CA bundle; set = mutual TLS required.")
    ] = "",
    grace: Annotated[
        float, _env("REGISTRY_SHUTDOWN_GRACE", "Seconds in-flight calls get at shutdown.")
    ] = 10.0,
    auth_cache_ttl: Annotated[
        float,
        _env(
            "REGISTRY_AUTH_CACHE_TTL",
            "Seconds a verified API key is cached (revocation delay on other replicas).",
        ),
    ] = 5.0,
    workers: Annotated[int, _env("REGISTRY_WORKERS", "Database worker threads.")] = 4,
    migration_lease_seconds: Annotated[
        float,
        _env(
            "REGISTRY_MIGRATION_LEASE_SECONDS",
            "Seconds a replica holds a migration between steps; another replica "
            "takes a migration over once its lease has expired.",
        ),
    ] = 15.0,
    migration_runner: Annotated[
        RunnerMode,
        _env(
            "REGISTRY_MIGRATION_RUNNER",
            "Where this replica runs legacy migrations: in a child process (the "
            "calls it serves never wait for the migration's Python work), on a thread of "
            "this process, or not at all (`registry-server run-migrations` elsewhere).",
        ),
    ] = RunnerMode.process,
    migration_busy_share: BusyShare = None,
    kept_replies: Annotated[
        bool,
        _env(
            "REGISTRY_KEPT_REPLIES",
            "Keep the replies of the hot reads until the next commit to the database "
            "(any process, any replica) and answer repeated calls from them.",
            flag="--kept-replies/--no-kept-replies",
        ),
    ] = True,
    webhook_allow_http: Annotated[
        bool,
        _env(
            "REGISTRY_WEBHOOK_ALLOW_HTTP",
            "Let automations send to plain http:// URLs (https:// only by default).",
            flag="--webhook-allow-http",
        ),
    ] = False,
    webhook_allow_cidr: Annotated[
        list[str] | None,
        _env(
            "REGISTRY_WEBHOOK_ALLOW_CIDR",
            "A range webhooks may reach although it is loopback, private, link-local, "
            "unique-local or reserved, e.g. 10.20.0.0/16 (repeatable; the environment "
            "variable takes a comma-separated list).",
            flag="--webhook-allow-cidr",
        ),
    ] = None,
    secret_key_file: SecretKeyFile = "",
    blob_store: BlobStoreOption = "",
    max_file_size: Annotated[
        int, _env("REGISTRY_MAX_FILE_SIZE", "The largest file a client may upload.", min=0)
    ] = Settings.max_file_size,
    max_files_per_version: Annotated[
        int,
        _env(
            "REGISTRY_MAX_FILES_PER_VERSION",
            "The most files (manifest entries) one artifact version may hold.",
            min=1,
        ),
    ] = Settings.max_files_per_version,
    download_url_ttl: Annotated[
        float,
        _env(
            "REGISTRY_DOWNLOAD_URL_TTL",
            "Seconds a presigned download URL stays valid (s3:// stores).",
            min=1,
        ),
    ] = Settings.download_url_ttl,
    s3_checksums: Annotated[
        S3Checksums,
        _env(
            "REGISTRY_S3_CHECKSUMS",
            "s3:// stores: who checks an upload's sha256. auto: probe the store at "
            "start (a PUT under a wrong x-amz-checksum-sha256); verified: trust the "
            "store's checksum, no probe (only for a store that verifies it, as AWS S3 and "
            "MinIO do: on one that does not, a member could store bytes under a digest "
            "they do not hash to); read-back: the server reads every upload back.",
        ),
    ] = Settings.s3_checksums,
    event_retention_days: Annotated[
        float,
        _env(
            "REGISTRY_EVENT_RETENTION_DAYS",
            "Days events are kept (0: for ever); alias history and what undoing a "
            "migration reads are kept regardless.",
            min=0,
        ),
    ] = Retention.event_days,
    request_id_retention_hours: Annotated[
        float,
        _env(
            "REGISTRY_REQUEST_ID_RETENTION_HOURS",
            "Hours a create's answer is kept for retries with its request_id (0: for ever).",
            min=0,
        ),
    ] = Retention.request_id_hours,
    delivery_retention_days: Annotated[
        float,
        _env(
            "REGISTRY_DELIVERY_RETENTION_DAYS",
            "Days finished webhook delivery attempts are kept (0: for ever).",
            min=0,
        ),
    ] = Retention.delivery_days,
    log_level: LogLevel = "INFO",
    log_format: Annotated[
        LogFormat,
        _env(
            "REGISTRY_LOG_FORMAT",
            "text, or json: one JSON object a line (an access line per call with "
            "method, code, duration_ms, principal, peer and request_id).",
        ),
    ] = LogFormat.text,
    metrics_address: Annotated[
        str,
        _env(
            "REGISTRY_METRICS_ADDRESS",
            "HOST:PORT serving Prometheus metrics at /metrics. Unset: none. Traces: "
            "set the OTEL_* variables (README, Metrics, traces and logs).",
        ),
    ] = "",
) -> None:
    """Serve the registry over gRPC."""
    from .api import tracing
    from .api.app import App
    from .api.metrics import parse_address
    from .api.server import TlsConfig, check_listenable, run_on_loop, serve_forever

    configure_logging(log_level, log_format)
    try:
        if metrics_address:
            parse_address(metrics_address)
        tracer_provider = tracing.provider_from_env() if tracing.wanted() else None
    except ImportError as err:
        raise typer.BadParameter(
            f"OTEL_* asks for traces, which need the otel extra ({err.name} is missing): "
            "pip install 'artifact-registry[otel]'"
        ) from None
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    if bool(tls_cert) != bool(tls_key):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    if tls_client_ca and not tls_cert:
        raise typer.BadParameter("--tls-client-ca needs --tls-cert and --tls-key")
    with _listen_error_in_one_line():  # before the database: a taken port says only that
        check_listenable(address)
    db = current_database(database_url)
    settings = Settings(
        auth_cache_ttl=auth_cache_ttl,
        workers=workers,
        migration_lease_seconds=migration_lease_seconds,
        migration_runner=migration_runner,
        migration_busy_share=migration_busy_share,
        webhook_allow_http=webhook_allow_http,
        webhook_allow_cidrs=tuple(_comma_list(webhook_allow_cidr)),
        secret_key_file=secret_key_file,
        blob_store=blob_store,
        max_file_size=max_file_size,
        max_files_per_version=max_files_per_version,
        download_url_ttl=download_url_ttl,
        s3_checksums=s3_checksums,
        kept_replies=kept_replies,
        retention=Retention(
            event_retention_days, request_id_retention_hours, delivery_retention_days
        ),
        metrics_address=metrics_address,
        tracer_provider=tracer_provider,
    )
    tls = TlsConfig(tls_cert, tls_key, tls_client_ca or None) if tls_cert else None
    try:
        served = App(db, settings)
        logging.getLogger("registry.files").info("blob store: %s", served.blobs.location)
    except ValueError as err:  # an allow-list entry, the key file or the blob store
        db.dispose()
        raise typer.BadParameter(str(err)) from None
    with _listen_error_in_one_line():  # taken since the check
        run_on_loop(serve_forever(served, address, tls, grace))


@contextmanager
def _listen_error_in_one_line() -> Iterator[None]:
    from .api.server import ListenError

    try:
        yield
    except ListenError as err:  # the address is taken or wrong: no traceback
        typer.echo(f"registry-server: {err}", err=True)
        raise typer.Exit(1) from None


def _comma_list(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


@app.command("run-migrations")
def run_migrations(
    database_url: DatabaseUrl = "",
    replica_id: Annotated[
        str, typer.Option(help="Lease owner shown in logs. Default: host:pid:random.")
    ] = "",
    migration_lease_seconds: Annotated[
        float, typer.Option(envvar="REGISTRY_MIGRATION_LEASE_SECONDS")
    ] = 15.0,
    migration_batch_size: Annotated[
        int, typer.Option(help="Versions per step at first (steps grow while they are fast).")
    ] = 500,
    niceness: Annotated[
        int, typer.Option(help="Added to the process's nice value (lower CPU priority).")
    ] = 0,
    yield_to_pid: Annotated[
        int,
        typer.Option(
            help="Give way to this process (a server on this machine): while it uses "
            "CPU, work only --busy-share of the time. 0: never pause."
        ),
    ] = 0,
    busy_share: BusyShare = None,
    wake_on_stdin: Annotated[
        bool,
        typer.Option(hidden=True, help="Look for work on each line of stdin; stop at its end."),
    ] = False,
    log_level: LogLevel = "INFO",
) -> None:
    """Run legacy migrations (no gRPC): for replicas served with `--migration-runner off`."""
    from .workers.migration_runner import run_runner_process

    if niceness:
        os.nice(niceness)
    configure_logging(log_level)  # in the format of a parent server (REGISTRY_LOG_FORMAT)
    db = current_database(database_url, auto_upgrade_empty=False)  # `serve` upgrades one
    db.dispose()
    asyncio.run(
        run_runner_process(
            db.url,
            replica_id=replica_id or replica_name(),
            lease_seconds=migration_lease_seconds,
            batch_size=migration_batch_size,
            wake_on_stdin=wake_on_stdin,
            yield_to_pid=yield_to_pid,
            busy_share=busy_share,
        )
    )


@contextmanager
def _exit_on_error(status: Callable[[RegistryError], int] = lambda _: 2) -> Iterator[None]:
    """A RegistryError ends the command: its message, and the exit status `status` gives."""
    try:
        yield
    except RegistryError as e:
        typer.echo(f"error: {e.message}", err=True)
        raise typer.Exit(status(e)) from None


def current_database(database_url: str, *, auto_upgrade_empty: bool = True) -> Database:
    """The database, refused (exit status 2, with the command to run) unless its schema
    is current; an empty one is upgraded first when `auto_upgrade_empty`."""
    db = Database(database_url or env_url())
    try:
        require_current_schema(db, auto_upgrade_empty=auto_upgrade_empty)
    except RegistryError as e:
        db.dispose()
        typer.echo(f"error: {e.message}", err=True)
        raise typer.Exit(2) from None
    return db


@app.command()
def bootstrap(
    organization: Annotated[str, typer.Option(help="Organization id to create.")],
    admin: Annotated[str, typer.Option(help="User id of its first admin.")],
    database_url: DatabaseUrl = "",
    display_name: Annotated[str, typer.Option(help="Organization display name.")] = "",
    legacy_model_registry: Annotated[
        bool, typer.Option(help="Enable the legacy team Model Registry for the organization.")
    ] = True,
) -> None:
    """Set up an empty database: the first organization, its core registries and an admin
    who is also a service admin; print the admin's API key. Refused (exit 2) when the
    database already has an organization."""
    from .service import organizations as orgs

    url = database_url or env_url()
    typer.echo(f"registry-server: bootstrapping {describe_database(url)}", err=True)
    db = Database(url)
    try:
        require_current_schema(db)
        with db.write() as s:
            secret = orgs.bootstrap(
                s,
                organization_id=organization,
                admin_id=admin,
                display_name=display_name or organization,
                legacy_model_registry_enabled=legacy_model_registry,
            )
    except RegistryError as e:
        typer.echo(f"error: {e.message}", err=True)
        raise typer.Exit(2 if e.reason == "ALREADY_BOOTSTRAPPED" else 1) from None
    except Exception as e:  # unique violations and the like
        typer.echo(f"error: {e.__class__.__name__}: {str(e).splitlines()[0]}", err=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    typer.echo(secret)


def _set_service_admin(user: str, database_url: str, flag: bool) -> None:
    from .service import organizations as orgs

    db = Database(database_url or env_url())
    try:
        with _exit_on_error(lambda e: 3 if e.code == "NOT_FOUND" else 1):
            require_current_schema(db)
            with db.write() as s:
                orgs.set_service_admin(s, user, flag)
    finally:
        db.dispose()
    state = "is now" if flag else "is no longer"
    typer.echo(f"users/{user} {state} a service admin", err=True)


@admin_app.command("grant-service-admin")
def grant_service_admin(
    user: Annotated[str, typer.Argument(help="User id.")], database_url: DatabaseUrl = ""
) -> None:
    """Make USER a service admin: may create and list organizations and create users and
    API keys in any of them (each such action is an event in the organization touched).
    Servers pick the change up within their key cache time (--auth-cache-ttl)."""
    _set_service_admin(user, database_url, True)


@admin_app.command("revoke-service-admin")
def revoke_service_admin(
    user: Annotated[str, typer.Argument(help="User id.")], database_url: DatabaseUrl = ""
) -> None:
    """Take the service admin flag from USER."""
    _set_service_admin(user, database_url, False)


@app.command("gc-blobs")
def gc_blobs(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Grace period (30m, 6h, 7d): blobs uploaded, reported present or referred "
            "to within it are kept, whatever else holds.",
        ),
    ],
    database_url: DatabaseUrl = "",
    blob_store: BlobStoreOption = "",
    log_level: LogLevel = "INFO",
) -> None:
    """Remove the stored files no artifact version refers to (deleted versions aside),
    untouched for the grace period, and partial uploads as old. Safe while servers run."""
    from .service.files import collect_garbage
    from .storage.blobs import default_location, open_store

    configure_logging(log_level)
    grace = parse_duration(older_than)
    db = current_database(database_url, auto_upgrade_empty=False)
    try:
        store = open_store(blob_store or default_location(db))
        report = collect_garbage(db, store, grace)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--blob-store") from None
    finally:
        db.dispose()
    typer.echo(
        f"removed {report.blobs_removed} blobs and {report.partials_removed} partial uploads",
        err=True,
    )


@app.command("backup")
def backup_command(
    destination: Annotated[Path, typer.Argument(help="The backup file to write.")],
    database_url: DatabaseUrl = "",
) -> None:
    """Copy a SQLite database to DESTINATION while servers keep serving (SQLite's online
    backup: a consistent snapshot). PostgreSQL: use pg_dump (README, Backups)."""
    from .storage.backup import backup

    with _exit_on_error():
        pages = backup(database_url or env_url(), destination)
    typer.echo(f"backed up {pages} pages to {destination}", err=True)


@app.command("restore")
def restore_command(
    source: Annotated[Path, typer.Argument(help="A backup written by `registry-server backup`.")],
    database_url: DatabaseUrl = "",
    force: Annotated[
        bool, typer.Option("--force", help="Replace a database that already has data.")
    ] = False,
) -> None:
    """Restore a SQLite backup into the database (stop the servers first). The restored
    database is upgraded to the current schema when it is older."""
    from .storage.backup import restore

    with _exit_on_error():
        restore(source, database_url or env_url(), force=force)
    typer.echo(f"restored {source} into {safe_url(database_url or env_url())}", err=True)


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = "", revision: str = "head") -> None:
    """Apply schema migrations (Alembic) up to `revision`."""
    from .storage.migrate import upgrade

    url = database_url or env_url()
    upgrade(Database(url).url, revision)
    typer.echo(f"database at {safe_url(url)} is at {revision}", err=True)


@db_app.command("reseal-secrets")
def db_reseal_secrets(database_url: DatabaseUrl = "", secret_key_file: SecretKeyFile = "") -> None:
    """Encrypt every automation secret with the first key of --secret-key-file: those
    stored in plaintext and those sealed with an older key of the file (key rotation)."""
    from .service.secret_box import SecretBox, SecretUnavailable
    from .service.webhooks import reseal_secrets

    if not secret_key_file:
        raise typer.BadParameter("is required", param_hint="--secret-key-file")
    try:
        box = SecretBox.from_file(secret_key_file)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--secret-key-file") from None
    db = current_database(database_url, auto_upgrade_empty=False)
    try:
        with db.write() as s:
            count = reseal_secrets(s, box)
    except SecretUnavailable as err:
        typer.echo(f"error: {err} (nothing was changed)", err=True)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    typer.echo(f"resealed {count} automation secrets with key {box.sealing_id}", err=True)


def main() -> None:
    sys.exit(app())


if __name__ == "__main__":
    main()
