"""A protoc plugin (for `buf generate`) that runs the generator `make protos` uses,
grpcio-tools' protoc, so both give byte-identical Python: messages, `.pyi` stubs and
gRPC service stubs. buf sends the parsed files; they go to grpcio-tools as a descriptor
set, and its output comes back as the plugin's answer."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _as_protoc_parses(files: list[descriptor_pb2.FileDescriptorProto]) -> None:
    """buf fills in every field's default JSON name; protoc keeps only explicit ones.
    Dropping the defaults makes the embedded descriptors, and so the output, identical."""

    def messages(container: list[descriptor_pb2.DescriptorProto]) -> None:
        for message in container:
            for field in message.field:
                if field.json_name == _camel(field.name):
                    field.ClearField("json_name")
            messages(list(message.nested_type))

    for file in files:
        messages(list(file.message_type))


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    # the registry's own: Python gets google.* from googleapis-common-protos
    files = [f for f in request.file_to_generate if not f.startswith("google/")]
    if not files:  # (buf asks once per directory)
        sys.stdout.buffer.write(response.SerializeToString())
        return
    with tempfile.TemporaryDirectory() as tmp:
        descriptors = Path(tmp) / "set.binpb"
        proto_files = list(request.proto_file)
        _as_protoc_parses(proto_files)
        descriptors.write_bytes(
            descriptor_pb2.FileDescriptorSet(file=proto_files).SerializeToString()
        )
        out = Path(tmp) / "out"
        out.mkdir()
        code = protoc.main(
            [
                "protoc",
                f"--descriptor_set_in={descriptors}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                *files,
            ]
        )
        if code != 0:
            response.error = f"grpcio-tools' protoc failed ({code})"
        else:
            for path in sorted(p for p in out.rglob("*") if p.is_file()):
                response.file.add(
                    name=str(path.relative_to(out)), content=path.read_text(encoding="utf-8")
                )
    sys.stdout.buffer.write(response.SerializeToString())


if __name__ == "__main__":
    main()
