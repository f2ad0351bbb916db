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
from typing import Annotated, Any, TypeVar

import typer
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from rich.cells import cell_len
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

M = TypeVar("M", bound=Message)

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
WideOption = Annotated[
    bool,
    typer.Option("--wide", "-W", help="Whole cells in tables, in lines as long as they need."),
]
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
    wide: bool = False


_run = _Run()
console = Console(highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False)


YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")
]


def _confirm(question: str, yes: bool) -> None:
    """Asks `question` before a change that is hard to undo, unless --yes. Without a terminal
    to ask on it refuses (exit 2) instead of waiting for an answer; no is exit 1."""
    if yes:
        return
    if not sys.stdin.isatty():
        err_console.print(
            f"[bold red]error:[/bold red] {escape(question)}\n"
            "  Standard input is not a terminal: pass --yes to go ahead."
        )
        raise typer.Exit(EXIT_USAGE)
    typer.confirm(question, abort=True)


def command_of(app: typer.Typer) -> Any:
    """The click command of `app`, its flags shown as flags in the help (typer's rich help
    prints `--watch <bool>` for an option that takes no value)."""
    command = typer.main.get_command(app)
    _plain_flags(command)
    return command


def _plain_flags(command: Any) -> None:
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, help_option]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _plain_flags(sub)


def _connection(ctx: typer.Context) -> Connection:
    obj = ctx.find_root().obj
    assert isinstance(obj, Connection)
    return obj


def _client(ctx: typer.Context, output: OutputFormat, wide: bool = False) -> Client:
    _run.output = output
    _run.wide = wide
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
    elif message_type.full_name in _JSON_VALUES:
        return _whole_numbers(out)
    elif _ours(message_type):
        for m, o in zip(value, out, strict=True) if fd.is_repeated else [(value, out)]:
            _unquote_int64(m, o)
    return out


# Struct and Value hold every number as a double: 3 comes back as 3.0.
_JSON_VALUES = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
)
_EXACT = 2**53  # doubles hold every integer up to this one exactly


def _whole_numbers(value: Any) -> Any:
    """A JSON value with its whole doubles (3.0) as integers (3), as they were sent."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def struct_json(struct: Message) -> str:
    """A Struct (metadata, event details) as one line of JSON, whole numbers as integers."""
    return json.dumps(_whole_numbers(json_format.MessageToDict(struct)))


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


_GAP = 2  # spaces between two table columns
_MIN_CELL = 6  # a cut cell keeps at least this much, ellipsis included


def _fit(natural: Sequence[int], fixed: int, room: int) -> list[int]:
    """Widths for the columns past the first `fixed` (kept whole) within `room` columns of
    text: the narrow ones keep their width, the rest share what is left equally."""
    widths = list(natural)
    flexible = sorted(range(fixed, len(widths)), key=lambda i: natural[i])
    left = room - sum(natural[:fixed])
    for position, i in enumerate(flexible):
        share = left // (len(flexible) - position)
        widths[i] = max(min(natural[i], share), min(natural[i], _MIN_CELL))
        left -= widths[i]
    return widths


def _table(
    columns: Sequence[str], rows: Iterable[Sequence[object]], empty: str, *, ids: int = 1
) -> None:
    """The one table of every list: one line per row, within the terminal's width. The
    first `ids` columns (names, ids) are never wrapped or cut; longer cells of the others
    end in an ellipsis unless the command ran with --wide (whole cells, lines as long as
    they need; --output json has every field whole)."""
    cells = [[str(c) for c in row] for row in rows]
    if not cells:
        console.print(f"[dim]{escape(empty)}[/dim]")
        return
    natural = [
        max(cell_len(column), *(cell_len(row[i]) for row in cells))
        for i, column in enumerate(columns)
    ]
    gaps = _GAP * (len(columns) - 1)
    widths = natural if _run.wide else _fit(natural, ids, console.width - gaps)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, _GAP // 2))
    for column, width in zip(columns, widths, strict=True):
        table.add_column(column, width=width, no_wrap=True, overflow="ellipsis")
    for row in cells:
        table.add_row(*(escape(c) for c in row))
    needed = sum(widths) + gaps
    if needed <= console.width:
        console.print(table)
        return
    # Wider than the terminal (--wide, or ids alone are too long): long lines, not cut ones.
    Console(
        file=console.file, width=needed, highlight=False, soft_wrap=False, no_color=console.no_color
    ).print(table)


def _emit_list(
    items: Sequence[M], columns: Sequence[str], row: Callable[[M], Sequence[object]], empty: str
) -> None:
    """What a list command prints: a JSON array, or a table with one `row` per item."""
    messages: list[Message] = list(items)
    _emit(messages, lambda: _table(columns, (row(item) for item in items), empty))


def _version_rows(
    versions: Iterable[r.CollectionVersion] | Iterable[r.RegisteredModelVersion],
) -> Iterable[Sequence[object]]:
    for v in versions:
        yield (
            f"v{v.version_index}",
            _join(v.aliases),
            _join(v.tags),
            v.artifact_version,
            v.linked_by,
            _when(v.create_time),
        )


VERSION_COLUMNS = ("VERSION", "ALIASES", "TAGS", "ARTIFACT VERSION", "LINKED BY", "CREATED")
