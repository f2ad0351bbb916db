"""`--s3-checksums`: whether an s3:// store's own sha256 of an upload is trusted
(storage/blobs/s3.py says how each is used)."""

from __future__ import annotations

from enum import StrEnum


class S3Checksums(StrEnum):
    """Whether an s3:// store's own sha256 of an upload is trusted (`--s3-checksums`)."""

    auto = "auto"  # probed at start: trusted when the store refuses a wrong checksum
    verified = "verified"  # trusted without a probe
    read_back = "read-back"  # never: the server reads every upload back


def checksums_mode(value: str) -> S3Checksums:
    try:
        return S3Checksums(value)
    except ValueError:
        choices = ", ".join(m.value for m in S3Checksums)
        raise ValueError(f"--s3-checksums must be one of {choices} (got {value!r})") from None
