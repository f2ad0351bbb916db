"""Fuzzing every RPC from its request descriptor, and garbage bytes as raw requests
(the page-token codec: tests/unit/test_page_tokens.py). No call may answer INTERNAL or
UNKNOWN, the server stays healthy, and a rejected call changes nothing in the database.

Quick in CI; `make fuzz` raises REGISTRY_FUZZ_EXAMPLES for a longer run.
"""

from __future__ import annotations

import os
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, text

from ..support.content import struct
from ..support.servers import ServerThread
from ..support.services import all_methods
from ..support.world import World

EXAMPLES = int(os.environ.get("REGISTRY_FUZZ_EXAMPLES", "8"))  # per RPC
_ = descriptor_pb2


FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


def served_methods(server: ServerThread) -> list[MethodDescriptor]:
    assert server.server is not None
    served = set(server.server._service_names)
    return [m for m in all_methods() if m.containing_service.full_name in served]


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


# --- strategies from descriptors ----------------------------------------------------


def name_like(world: World) -> st.SearchStrategy[str]:
    """Strings shaped like the names and paths the API takes, plus hostile ones."""
    segments = st.sampled_from(
        [world.org, "organizations", "registries", "collections", "versions", "teams",
         "projects", "artifacts", "registeredModels", "users", "model", "dataset", "v0",
         "latest", "wandb-registry-model", "model-registry", "..", "", "%", "' OR 1=1 --",
         "\x00", "é", "a" * 300]
    )  # fmt: skip
    joined = st.lists(segments, min_size=1, max_size=8).map("/".join)
    with_version = st.tuples(joined, st.sampled_from(["", ":v1", ":latest", ":", ":x:y"])).map(
        "".join
    )
    return st.one_of(with_version, st.text(max_size=80))


def value_for(field: FieldDescriptor, world: World, depth: int) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return name_like(world)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
    ):
        return st.integers(-(2**31), 2**31 - 1)
    if t in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return st.integers(-(2**63), 2**63 - 1)
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FieldDescriptor.TYPE_ENUM:
        return st.one_of(
            st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-5, 1000)
        )
    if t == FieldDescriptor.TYPE_MESSAGE:
        return message_strategy(field.message_type, world, depth + 1)
    raise AssertionError(f"unhandled field type {t}")


def message_strategy(desc: Descriptor, world: World, depth: int = 0) -> st.SearchStrategy[Any]:
    full = desc.full_name
    if full == "google.protobuf.Struct":
        scalar = st.one_of(
            st.none(), st.booleans(), st.floats(allow_nan=False), st.text(max_size=20)
        )
        return st.dictionaries(st.text(max_size=20), scalar, max_size=5).map(struct)
    if full == "google.protobuf.FieldMask":
        paths = st.lists(
            st.sampled_from(["description", "tags", "*", "name", "x.y", ""]), max_size=3
        )
        return paths.map(lambda p: {"paths": p})
    if full == "google.protobuf.Timestamp":
        return st.fixed_dictionaries(
            {"seconds": st.integers(-(2**40), 2**40), "nanos": st.integers(0, 999_999_999)}
        )
    if depth > 2:
        return st.just({})
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        value = value_for(field, world, depth)
        if field.is_repeated:
            value = st.lists(value, max_size=3)
        fields[field.name] = value
    return st.fixed_dictionaries({}, optional=fields)


def build(cls: type[Message], values: dict[str, Any]) -> Message:
    msg = cls()
    for name, value in values.items():
        _assign(msg, msg.DESCRIPTOR.fields_by_name[name], value)
    return msg


def _assign(msg: Message, field: FieldDescriptor, value: Any) -> None:
    if field.is_repeated:
        target = getattr(msg, field.name)
        for item in value:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                _fill(target.add(), item)
            else:
                target.append(item)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        _fill(getattr(msg, field.name), value)
    else:
        setattr(msg, field.name, value)


def _fill(sub: Message, value: Any) -> None:
    if isinstance(value, Message):
        sub.CopyFrom(value)
        return
    sub.SetInParent()
    for name, v in value.items():
        _assign(sub, sub.DESCRIPTOR.fields_by_name[name], v)


# --- database fingerprint -----------------------------------------------------------


_FINGERPRINT_SQL: dict[str, str] = {}


def fingerprint(server: ServerThread) -> tuple[Any, ...]:
    """Row count and the sum of every integer column of every table, in one statement:
    any insert, delete or update of an id, index, time or revision changes it. Cheap
    enough to take before every fuzzed call."""
    engine = server.app.db.read_engine
    with engine.connect() as conn:
        sql = _FINGERPRINT_SQL.get(engine.url.render_as_string())
        if sql is None:
            insp = inspect(conn)
            parts = []
            for table in sorted(insp.get_table_names()):
                if table == "alembic_version":
                    continue
                parts.append(f'(SELECT COUNT(*) FROM "{table}")')
                for c in insp.get_columns(table):
                    kind = str(c["type"]).upper()
                    if "BOOL" in kind:
                        expr = f'CASE WHEN "{c["name"]}" THEN 1 ELSE 0 END'
                    elif "INT" in kind:
                        expr = f'CAST("{c["name"]}" AS BIGINT)'
                    else:
                        continue
                    parts.append(f'(SELECT SUM({expr}) FROM "{table}")')
            sql = "SELECT " + ", ".join(parts)
            _FINGERPRINT_SQL[engine.url.render_as_string()] = sql
        return tuple(conn.execute(text(sql)).one())


def healthy(server: ServerThread) -> bool:
    channel = grpc.insecure_channel(server.target)
    try:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        return bool(status.status == health_pb2.HealthCheckResponse.SERVING)
    finally:
        channel.close()


def call(world: World, method: MethodDescriptor, request: Message) -> grpc.StatusCode:
    input_cls = type(request)
    output = _message_class(method.output_type)
    channel = world.admin.channel
    path = path_of(method)
    try:
        if method.server_streaming:
            stream = channel.unary_stream(
                path,
                request_serializer=input_cls.SerializeToString,
                response_deserializer=output.FromString,
            )(request, timeout=3)
            for _ in zip(range(3), stream, strict=False):
                pass
            stream.cancel()
        else:
            channel.unary_unary(
                path,
                request_serializer=input_cls.SerializeToString,
                response_deserializer=output.FromString,
            )(request, timeout=10)
    except grpc.RpcError as e:
        return e.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _message_class(desc: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(desc)


# --- tests -------------------------------------------------------------------------


def test_every_rpc_needs_a_key(server: ServerThread) -> None:
    channel = grpc.insecure_channel(server.target)
    for method in served_methods(server):
        fn = (channel.unary_stream if method.server_streaming else channel.unary_unary)(
            path_of(method)
        )
        with pytest.raises(grpc.RpcError) as exc:
            result = fn(b"", timeout=5)
            if method.server_streaming:
                list(result)
        assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED, path_of(method)


def test_garbage_bytes_are_invalid_argument(server: ServerThread, world: World) -> None:
    garbage = [b"\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" * 7, os.urandom(64)]
    for method in served_methods(server):
        for raw in garbage:
            fn = (world.admin.channel.unary_stream if method.server_streaming
                  else world.admin.channel.unary_unary)(path_of(method))  # fmt: skip
            try:
                result = fn(raw, timeout=5)
                if method.server_streaming:
                    for _ in zip(range(2), result, strict=False):
                        pass
                    result.cancel()
            except grpc.RpcError as e:
                assert e.code() not in FORBIDDEN, (path_of(method), raw, e.details())
    assert healthy(server)


@pytest.mark.fuzz
def test_fuzz_every_rpc(server: ServerThread, world: World) -> None:
    methods = served_methods(server)
    assert methods

    @settings(
        max_examples=EXAMPLES * len(methods),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=os.environ.get("REGISTRY_FUZZ_RANDOM") is None,
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        method = data.draw(st.sampled_from(methods), label="method")
        cls = _message_class(method.input_type)
        values = data.draw(message_strategy(method.input_type, world), label="fields")
        request = build(cls, values)
        before = fingerprint(server)
        code = call(world, method, request)
        assert code not in FORBIDDEN, (path_of(method), request)
        if code != grpc.StatusCode.OK:
            assert fingerprint(server) == before, f"{path_of(method)} failed with {code} but wrote"

    run()
    assert healthy(server)
