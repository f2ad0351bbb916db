"""What the legacy Model Registry's use cases return: registered models, their versions
and the settings, read from the legacy tables (`legacy`) or, once the team's registry
was migrated, from the collections they became (`migrated_legacy`)."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Settings:
    team: m.Team
    registry_admins: list[str]  # user ids
    migrated_registry: str
    protected_aliases: list[str]
    # The protected aliases are the migrated registry's.
    redirected: bool = False
