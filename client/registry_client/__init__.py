"""Client side of the artifact registry: channels with the key attached and stubs."""

from .channel import DEFAULT_TARGET, Stubs, open_channel

__all__ = ["DEFAULT_TARGET", "Stubs", "open_channel"]
