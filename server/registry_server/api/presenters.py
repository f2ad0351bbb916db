"""Proto messages of the views the use cases return, one function per message, for
servicers and for the write child (which keeps a write's answer for its request_id)."""

from __future__ import annotations

from registry.v1 import resources_pb2 as r

from ..service.versions import VersionView
from .convert import struct, ts, user_ref


def version_proto(view: VersionView) -> r.CollectionVersion:
    return r.CollectionVersion(
        name=view.name,
        version_index=view.version_index,
        artifact_version=view.artifact_version,
        aliases=view.aliases,
        tags=view.tags,
        description=view.description,
        linked_by=user_ref(view.linked_by),
        create_time=ts(view.create_time),
        update_time=ts(view.update_time),
        metadata=struct(view.metadata),
        digest=view.digest,
        type=view.artifact_type,
        path=view.path,
    )
