"""What the `registry` command modules share: exit codes, common options, the
connection, JSON and table output, and confirmation prompts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from registry.v1 import resources_pb2 as r

from .client import Client
from .errors import (
    AbortedError,
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RegistryError,
    UnauthenticatedError,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_PERMISSION = 4
EXIT_INVALID = 5

EXIT_CODES = f"""[bold]Exit codes[/bold]

{EXIT_OK}  success

{EXIT_ERROR}  other server or connection error (unavailable, internal; under --watch, a \
migration that did not succeed)

{EXIT_USAGE}  usage error (unknown command or option, missing argument, bad local file)

{EXIT_NOT_FOUND}  not found (or not visible to you)

{EXIT_PERMISSION}  permission denied, or not authenticated (run `registry login`)

{EXIT_INVALID}  invalid argument, failed precondition, or conflict (already exists, aborted)

With --output json, results are JSON on standard output and errors are \
{{"error": {{"code", "message", "reason", "field_violations"}}}} on standard error."""
EXIT_CODES_SHORT = (
    f"Exit codes: {EXIT_OK} ok, {EXIT_USAGE} usage error, {EXIT_NOT_FOUND} not found, "
    f"{EXIT_PERMISSION} permission denied or unauthenticated, {EXIT_INVALID} invalid argument, "
    f"failed precondition or conflict, {EXIT_ERROR} other errors (see registry --help)."
)


def exit_code(err: RegistryError) -> int:
    """The process exit code for a failed call."""
    if isinstance(err, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(err, PermissionDeniedError | UnauthenticatedError):
        return EXIT_PERMISSION
    if isinstance(
        err, InvalidArgumentError | FailedPreconditionError | AlreadyExistsError | AbortedError
    ):
        return EXIT_INVALID
    return EXIT_ERROR


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        envvar="REGISTRY_OUTPUT",
        case_sensitive=False,
        help="table (for people) or json (for scripts).",
    ),
]
FilterOption = Annotated[
    str, typer.Option("--filter", "-f", help="AIP-160 filter, e.g. 'name : \"vision\"'.")
]
OrderByOption = Annotated[str, typer.Option("--order-by", help="e.g. 'create_time desc'.")]
LimitOption = Annotated[
    int | None, typer.Option("--limit", "-n", min=1, help="Stop after this many items.")
]

# --- connection and output ---------------------------------------------------------


@dataclass
class Connection:
    """Connection settings: flags and environment first, then the saved login."""

    address: str
    api_key: str
    ca_cert: str
    client_cert: str
    client_key: str
    tls: bool
    timeout: float
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                self.address,
                self.api_key,
                root_certificates=_read_pem(self.ca_cert, "--ca-cert"),
                certificate_chain=_read_pem(self.client_cert, "--client-cert"),
                private_key=_read_pem(self.client_key, "--client-key"),
                tls=True if self.tls else None,
                timeout=self.timeout,
            )
        return self._client


def _read_pem(path: str, option: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise typer.BadParameter(f"cannot read {path}: {e.strerror}", param_hint=option) from None


@dataclass
class _Run:
    """How the running command wants results and errors printed."""

    output: OutputFormat = OutputFormat.table


_run = _Run()
console = Console(highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False)


def _connection(ctx: typer.Context) -> Connection:
    obj = ctx.find_root().obj
    assert isinstance(obj, Connection)
    return obj


def _client(ctx: typer.Context, output: OutputFormat) -> Client:
    _run.output = output
    return _connection(ctx).client()


def _is_json() -> bool:
    return _run.output is OutputFormat.json


def to_json(message: Message) -> dict[str, Any]:
    """Proto JSON with the proto field names, every field present, and int64 as numbers."""
    obj = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _unquote_int64(message, obj)
    return obj


_INT64 = frozenset({FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64})


def _number(value: Any) -> Any:
    """An int64 that ProtoJSON wrote as a string, as a number when a double holds it exactly
    (what JSON readers parse numbers into)."""
    if isinstance(value, str) and float(int(value)) == int(value):
        return int(value)
    return value


def _unquote_int64(message: Message, obj: dict[str, Any]) -> None:
    """Rewrites, in `obj` (MessageToDict of `message` with proto field names), the int64
    fields of our own messages as numbers; well-known types keep their JSON forms."""
    for fd in message.DESCRIPTOR.fields:
        if fd.name in obj:
            obj[fd.name] = _unquote_field(fd, getattr(message, fd.name), obj[fd.name])


def _unquote_field(fd: Any, value: Any, out: Any) -> Any:  # fd: a FieldDescriptor
    if fd.cpp_type in _INT64:
        return [_number(v) for v in out] if fd.is_repeated else _number(out)
    message_type = fd.message_type
    if message_type is None:  # a scalar, a string or an enum
        return out
    if message_type.GetOptions().map_entry:
        value_fd = message_type.fields_by_name["value"]
        for k, v in value.items():
            key = str(k).lower() if isinstance(k, bool) else str(k)
            out[key] = _unquote_field(value_fd, v, out[key])
    elif _ours(message_type):
        for m, o in zip(value, out, strict=True) if fd.is_repeated else [(value, out)]:
            _unquote_int64(m, o)
    return out


def _ours(descriptor: Descriptor) -> bool:
    return not descriptor.full_name.startswith("google.protobuf.")


def _print_json(value: Any, *, lines: bool = False) -> None:
    text = json.dumps(value) if lines else json.dumps(value, indent=2)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _emit(value: Message | list[Message] | dict[str, Any], human: Callable[[], None]) -> None:
    if not _is_json():
        human()
        return
    if isinstance(value, Message):
        _print_json(to_json(value))
    elif isinstance(value, list):
        _print_json([to_json(m) for m in value])
    else:
        _print_json(value)


def _report(err: RegistryError) -> None:
    if _is_json():
        sys.stderr.write(json.dumps({"error": err.to_dict()}) + "\n")
        return
    err_console.print(f"[bold red]error:[/bold red] {escape(str(err))}")
    for violation in err.field_violations:
        err_console.print(f"  {escape(violation.field)}: {escape(violation.description)}")
    if isinstance(err, UnauthenticatedError):
        err_console.print("  (set REGISTRY_API_KEY or run `registry login`)")


# --- human rendering ---------------------------------------------------------------


def _when(ts: timestamp_pb2.Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToDatetime(tzinfo=UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _enum_label(wrapper: Any, value: int, prefix: str) -> str:
    try:
        return str(wrapper.Name(value)).removeprefix(prefix).lower()
    except ValueError:
        return str(value)


def _role(value: int) -> str:
    return _enum_label(r.RegistryRole, value, "REGISTRY_ROLE_") if value else "none"


def _state(value: int) -> str:
    return _enum_label(r.MigrationState, value, "MIGRATION_STATE_")


def _join(values: Iterable[str]) -> str:
    return ", ".join(values)


def _short(name: str) -> str:
    """The last id of a resource name, for compact tables."""
    return name.rsplit("/", 1)[-1]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _details(rows: Sequence[tuple[str, object]], title: str | None = None) -> None:
    table = Table(show_header=False, box=None, title=title, title_justify="left", pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        text = "" if value is None else str(value)
        if text:
            table.add_row(key, escape(text))
    console.print(table)


def _table(columns: Sequence[str], rows: Iterable[Sequence[object]], empty: str) -> None:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    count = 0
    for row in rows:
        table.add_row(*(escape(str(c)) for c in row))
        count += 1
    if count:
        console.print(table)
    else:
        console.print(f"[dim]{escape(empty)}[/dim]")
