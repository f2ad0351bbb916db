from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BlobRef(_message.Message):
    __slots__ = ("digest", "size")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size: int
    def __init__(self, digest: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class FindMissingBlobsRequest(_message.Message):
    __slots__ = ("parent", "blobs")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    blobs: _containers.RepeatedCompositeFieldContainer[BlobRef]
    def __init__(self, parent: _Optional[str] = ..., blobs: _Optional[_Iterable[_Union[BlobRef, _Mapping]]] = ...) -> None: ...

class FindMissingBlobsResponse(_message.Message):
    __slots__ = ("missing", "presigned")
    MISSING_FIELD_NUMBER: _ClassVar[int]
    PRESIGNED_FIELD_NUMBER: _ClassVar[int]
    missing: _containers.RepeatedCompositeFieldContainer[BlobRef]
    presigned: bool
    def __init__(self, missing: _Optional[_Iterable[_Union[BlobRef, _Mapping]]] = ..., presigned: bool = ...) -> None: ...

class UploadBlobRequest(_message.Message):
    __slots__ = ("parent", "digest", "size", "data")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    parent: str
    digest: str
    size: int
    data: bytes
    def __init__(self, parent: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class BlobData(_message.Message):
    __slots__ = ("digest", "size", "data")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size: int
    data: bytes
    def __init__(self, digest: _Optional[str] = ..., size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class BatchUploadBlobsRequest(_message.Message):
    __slots__ = ("parent", "blobs")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    blobs: _containers.RepeatedCompositeFieldContainer[BlobData]
    def __init__(self, parent: _Optional[str] = ..., blobs: _Optional[_Iterable[_Union[BlobData, _Mapping]]] = ...) -> None: ...

class BatchUploadBlobsResponse(_message.Message):
    __slots__ = ("blobs",)
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    blobs: _containers.RepeatedCompositeFieldContainer[Blob]
    def __init__(self, blobs: _Optional[_Iterable[_Union[Blob, _Mapping]]] = ...) -> None: ...

class Blob(_message.Message):
    __slots__ = ("digest", "size", "existed")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size: int
    existed: bool
    def __init__(self, digest: _Optional[str] = ..., size: _Optional[int] = ..., existed: bool = ...) -> None: ...

class DownloadArtifactFileRequest(_message.Message):
    __slots__ = ("path", "file", "offset", "run_id")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    path: str
    file: str
    offset: int
    run_id: str
    def __init__(self, path: _Optional[str] = ..., file: _Optional[str] = ..., offset: _Optional[int] = ..., run_id: _Optional[str] = ...) -> None: ...

class DownloadArtifactFileResponse(_message.Message):
    __slots__ = ("digest", "size", "artifact_version", "data")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size: int
    artifact_version: str
    data: bytes
    def __init__(self, digest: _Optional[str] = ..., size: _Optional[int] = ..., artifact_version: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class BatchDownloadArtifactFilesRequest(_message.Message):
    __slots__ = ("path", "files", "run_id")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    path: str
    files: _containers.RepeatedScalarFieldContainer[str]
    run_id: str
    def __init__(self, path: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., run_id: _Optional[str] = ...) -> None: ...

class BatchDownloadArtifactFilesResponse(_message.Message):
    __slots__ = ("artifact_version", "files")
    ARTIFACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    artifact_version: str
    files: _containers.RepeatedCompositeFieldContainer[ArtifactFileData]
    def __init__(self, artifact_version: _Optional[str] = ..., files: _Optional[_Iterable[_Union[ArtifactFileData, _Mapping]]] = ...) -> None: ...

class ArtifactFileData(_message.Message):
    __slots__ = ("file", "digest", "size", "data")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    file: str
    digest: str
    size: int
    data: bytes
    def __init__(self, file: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class StartBlobUploadRequest(_message.Message):
    __slots__ = ("parent", "digest", "size")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    parent: str
    digest: str
    size: int
    def __init__(self, parent: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class UploadPart(_message.Message):
    __slots__ = ("url", "part_number", "offset", "size", "headers")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URL_FIELD_NUMBER: _ClassVar[int]
    PART_NUMBER_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    url: str
    part_number: int
    offset: int
    size: int
    headers: _containers.ScalarMap[str, str]
    def __init__(self, url: _Optional[str] = ..., part_number: _Optional[int] = ..., offset: _Optional[int] = ..., size: _Optional[int] = ..., headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StartBlobUploadResponse(_message.Message):
    __slots__ = ("upload_id", "parts", "existed")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    parts: _containers.RepeatedCompositeFieldContainer[UploadPart]
    existed: bool
    def __init__(self, upload_id: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[UploadPart, _Mapping]]] = ..., existed: bool = ...) -> None: ...

class CompleteBlobUploadRequest(_message.Message):
    __slots__ = ("parent", "digest", "size", "upload_id", "etags")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    ETAGS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    digest: str
    size: int
    upload_id: str
    etags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, parent: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ..., upload_id: _Optional[str] = ..., etags: _Optional[_Iterable[str]] = ...) -> None: ...

class GetDownloadUrlsRequest(_message.Message):
    __slots__ = ("path", "files", "run_id")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    path: str
    files: _containers.RepeatedScalarFieldContainer[str]
    run_id: str
    def __init__(self, path: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., run_id: _Optional[str] = ...) -> None: ...

class DownloadUrl(_message.Message):
    __slots__ = ("file", "digest", "size", "url")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    file: str
    digest: str
    size: int
    url: str
    def __init__(self, file: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ..., url: _Optional[str] = ...) -> None: ...

class GetDownloadUrlsResponse(_message.Message):
    __slots__ = ("artifact_version", "urls", "ttl_seconds", "streamed", "canonical_path")
    ARTIFACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    URLS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STREAMED_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_PATH_FIELD_NUMBER: _ClassVar[int]
    artifact_version: str
    urls: _containers.RepeatedCompositeFieldContainer[DownloadUrl]
    ttl_seconds: int
    streamed: bool
    canonical_path: str
    def __init__(self, artifact_version: _Optional[str] = ..., urls: _Optional[_Iterable[_Union[DownloadUrl, _Mapping]]] = ..., ttl_seconds: _Optional[int] = ..., streamed: bool = ..., canonical_path: _Optional[str] = ...) -> None: ...
