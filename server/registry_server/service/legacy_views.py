"""What the legacy Model Registry's use cases return: registered models, their versions
and the settings, read from the legacy tables (`legacy`) or, once the team's registry
was migrated, from the collections they became (`migrated_legacy`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..storage import models as m
from .resolve import ModelVersionInfo


@dataclass(frozen=True)
class ModelInfo:
    row: m.RegisteredModel
    team: str
    version_count: int
    migrated_to: str
    # Answered from the collection `migrated_to` (the team's registry was migrated).
    redirected: bool = False


@dataclass(frozen=True)
class ModelVersionView:
    """A registered-model version with the artifact version name it links to."""

    info: ModelVersionInfo
    artifact_version: str
    # Set when answered from a migrated collection: that collection version's name.
    collection_version: str = ""


def model_version_row(link: Any, registered_model_id: int) -> m.RegisteredModelVersion:
    """A legacy version row holding collection version `link` (same index, artifact
    version, tags, description, linker and times): how a collection version shows as a
    registered-model version, or goes back into one."""
    held = {name: getattr(link, name) for name in m.LINK_COLUMNS}
    held["tags"] = list(link.tags or [])  # a list of its own
    return m.RegisteredModelVersion(registered_model_id=registered_model_id, **held)


@dataclass(frozen=True)
class Settings:
    team: m.Team
    registry_admins: list[str]  # user ids
    migrated_registry: str
    protected_aliases: list[str]
    # The protected aliases are the migrated registry's.
    redirected: bool = False
