"""`s3://BUCKET/PREFIX`: blobs as objects `PREFIX/{org id}/{2 hex}/{64 hex}` of an
S3-compatible store (AWS S3, MinIO, Ceph RGW), through boto3. The endpoint and the
credentials come from the usual environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, or a profile).

Bytes never pass through the server on the way in or out: clients PUT to presigned
URLs and GET from presigned URLs. An upload goes to a staging key
`PREFIX/uploads/{org id}/{random}` (several parts above `MULTIPART_THRESHOLD`); on
completion the server checks the object's size and sha256, from the checksum the
store computed when it reports one (AWS S3 verifies the signed
`x-amz-checksum-sha256` header of a single PUT), else by reading it back once, and
only then copies it to its final key (a copy inside the store). A staging object that
is never completed is removed by `remove_stale_partials` (gc-blobs).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .base import BlobStore, BlobWriter, Mismatch, PresignedPart

MULTIPART_THRESHOLD = 256 << 20  # bytes; at or below: one PUT
PART_SIZE = 64 << 20  # S3 wants >= 5 MiB per part but the last, at most 10,000 parts
READ_CHUNK = 8 << 20
UPLOAD_ID = re.compile(r"[0-9a-f]{32}(:[\w.\-~=+/]{1,1024})?")


class S3BlobStore(BlobStore):
    kind = "s3"
    presigns = True

    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client or boto3.client(
            "s3", config=Config(signature_version="s3v4", retries={"mode": "standard"})
        )

    @classmethod
    def from_location(cls, location: str) -> S3BlobStore:
        parts = urlsplit(location)
        if not parts.netloc:
            raise ValueError(f"--blob-store s3:// needs a bucket (got {location!r})")
        return cls(parts.netloc, parts.path)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def key(self, org_id: int, hex_digest: str) -> str:
        return self._key(str(org_id), hex_digest[:2], hex_digest)

    def _staging(self, org_id: int, token: str) -> str:
        return self._key("uploads", str(org_id), token)

    # --- presigned transfers ---

    def upload_parts(
        self, org_id: int, hex_digest: str, size: int, ttl: float
    ) -> tuple[str, list[PresignedPart]]:
        token = uuid.uuid4().hex
        key = self._staging(org_id, token)
        expires = int(ttl)
        if size <= MULTIPART_THRESHOLD:
            checksum = base64.b64encode(bytes.fromhex(hex_digest)).decode()
            url = self.client.generate_presigned_url(
                "put_object",
                Params={"Bucket": self.bucket, "Key": key, "ChecksumSHA256": checksum},
                ExpiresIn=expires,
            )
            headers = {"x-amz-checksum-sha256": checksum}
            return token, [PresignedPart(url, 0, 0, size, headers)]
        multipart = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        parts = []
        for number, offset in enumerate(range(0, size, PART_SIZE), start=1):
            url = self.client.generate_presigned_url(
                "upload_part",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "UploadId": multipart,
                    "PartNumber": number,
                },
                ExpiresIn=expires,
            )
            parts.append(PresignedPart(url, number, offset, min(PART_SIZE, size - offset), {}))
        return f"{token}:{multipart}", parts

    def complete_upload(
        self, org_id: int, hex_digest: str, size: int, upload_id: str, etags: list[str]
    ) -> None:
        if not UPLOAD_ID.fullmatch(upload_id):
            raise Mismatch("upload_id", "is not one StartBlobUpload gave")
        token, _, multipart = upload_id.partition(":")
        staging = self._staging(org_id, token)
        try:
            if multipart:
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=staging,
                    UploadId=multipart,
                    MultipartUpload={
                        "Parts": [{"ETag": e, "PartNumber": i} for i, e in enumerate(etags, 1)]
                    },
                )
            self._verify(staging, hex_digest, size)
            self.client.copy(
                {"Bucket": self.bucket, "Key": staging}, self.bucket, self.key(org_id, hex_digest)
            )
        except ClientError as err:
            raise Mismatch(
                "upload_id", f"the upload is not complete in the store ({err})"
            ) from None
        finally:
            self.client.delete_object(Bucket=self.bucket, Key=staging)

    def _verify(self, key: str, hex_digest: str, size: int) -> None:
        head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        if head["ContentLength"] != size:
            raise Mismatch("size", f"{head['ContentLength']} bytes were stored, {size} declared")
        reported = head.get("ChecksumSHA256") or ""
        if reported and "-" not in reported:
            got = base64.b64decode(reported).hex()
        else:  # no whole-object checksum from this store: read the object back once
            digest = hashlib.sha256()
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(READ_CHUNK):
                digest.update(chunk)
            got = digest.hexdigest()
        if got != hex_digest:
            raise Mismatch("digest", f"the bytes stored hash to sha256:{got[:16]}...")

    def download_url(self, org_id: int, hex_digest: str, ttl: float) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.key(org_id, hex_digest)},
                ExpiresIn=int(ttl),
            )
        )

    # --- the rest of the interface ---

    def writer(self, org_id: int, hex_digest: str, size: int) -> BlobWriter:
        raise NotImplementedError("s3:// stores take uploads through presigned URLs")

    def read(self, org_id: int, hex_digest: str, offset: int, chunk: int) -> Iterator[bytes]:
        body = self.client.get_object(
            Bucket=self.bucket, Key=self.key(org_id, hex_digest), Range=f"bytes={offset}-"
        )["Body"]
        yield from body.iter_chunks(chunk)

    def exists(self, org_id: int, hex_digest: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(org_id, hex_digest))
        except ClientError:
            return False
        return True

    def delete(self, org_id: int, hex_digest: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(org_id, hex_digest))

    def remove_stale_partials(self, older_than: float) -> int:
        cutoff = datetime.fromtimestamp(time.time() - older_than, UTC)
        removed = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key("uploads") + "/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["LastModified"] < cutoff:
                    self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])
                    removed += 1
        uploads = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self._key("uploads") + "/"
        )
        for page in uploads:
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < cutoff:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
        return removed
