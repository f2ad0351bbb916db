"""`s3://BUCKET/PREFIX`: blobs as objects `PREFIX/{org id}/{2 hex}/{64 hex}` of an
S3-compatible store (AWS S3, MinIO, Ceph RGW), through boto3. The endpoint and the
credentials come from the usual environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, or a profile).

Bytes never pass through the server on the way in or out: clients PUT to presigned
URLs and GET from presigned URLs. An upload goes to a staging key
`PREFIX/uploads/{org id}/{random}`; on completion the server checks the object's size
and sha256, and only then copies it to its final key (a copy inside the store), unless an object
is there already: an upload of a blob the organization stores (a team proving it has
the bytes) is verified the same way and then dropped, never copied over the stored
object. A staging object
that is never completed is removed by `remove_stale_partials` (gc-blobs).

Who computes the sha256 (`--s3-checksums`, `S3Checksums`): a single PUT carries the
declared digest in `x-amz-checksum-sha256`, signed into its presigned URL so that the
client cannot change it. A store that verifies it (AWS S3, MinIO: a mismatch is refused
with 400 BadDigest) is trusted: uploads up to `SINGLE_PUT_LIMIT` (S3's 5 GiB) are one
PUT and the server reads only the checksum the store reports (HeadObject), never the
bytes. Otherwise (moto, which stores the declared value unverified; or a multipart
upload, which has no whole-object sha256 in S3) the server reads the object back once,
and uploads above `MULTIPART_THRESHOLD` go in parts. `auto` probes the store when the
server starts: a PUT of a few bytes under a wrong checksum.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from .base import BlobStore, BlobWriter, Mismatch, PresignedPart
from .checksums import S3Checksums

log = logging.getLogger("registry.files")

MULTIPART_THRESHOLD = 256 << 20  # bytes; at or below: one PUT (the server reads it back)
SINGLE_PUT_LIMIT = 5 << 30  # S3's largest PUT: one PUT up to this when the store verifies
PART_SIZE = 64 << 20  # S3 wants >= 5 MiB per part but the last, at most 10,000 parts
# At most this many parts (larger ones for larger files): S3 takes 10,000, and the
# presigned URLs of 2,000 parts keep StartBlobUpload's reply far below gRPC's 4 MiB
MAX_PARTS = 2000
READ_CHUNK = 8 << 20
# Into place: one CopyObject up to 5 GiB, else parts of 1 GiB copied in the store (the
# default, 8 MiB parts, costs the server a call per 8 MiB)
COPY = TransferConfig(multipart_threshold=SINGLE_PUT_LIMIT + 1, multipart_chunksize=1 << 30)
UPLOAD_ID = re.compile(r"[0-9a-f]{32}(:[\w.\-~=+/]{1,1024})?")


def part_size_for(size: int) -> int:
    """PART_SIZE, or whole MiB large enough that `size` needs at most MAX_PARTS parts."""
    mib = 1 << 20
    return max(PART_SIZE, -(-size // (MAX_PARTS * mib)) * mib)


class S3BlobStore(BlobStore):
    kind = "s3"
    presigns = True

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: Any = None,
        checksums: S3Checksums = S3Checksums.read_back,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client or boto3.client(
            "s3",
            config=Config(
                signature_version="s3v4",
                retries={"mode": "standard"},
                # a read-back hashes the bytes itself, once (botocore would hash them
                # again against the store's checksum, which need not be the right one)
                response_checksum_validation="when_required",
            ),
        )
        # whether the sha256 the store reports of a single PUT is trusted
        self.store_verifies = checksums == S3Checksums.verified
        if checksums == S3Checksums.auto:
            self.store_verifies = self._probe()
        elif self.store_verifies:
            log.warning(
                "--s3-checksums verified: the store's sha256 of an upload is trusted "
                "unchecked; on a store that does not verify x-amz-checksum-sha256 a member "
                "can store bytes under a digest they do not hash to"
            )

    @classmethod
    def from_location(
        cls, location: str, checksums: S3Checksums = S3Checksums.read_back
    ) -> S3BlobStore:
        parts = urlsplit(location)
        if not parts.netloc:
            raise ValueError(f"--blob-store s3:// needs a bucket (got {location!r})")
        return cls(parts.netloc, parts.path, checksums=checksums)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def key(self, org_id: int, hex_digest: str) -> str:
        return self._key(str(org_id), hex_digest[:2], hex_digest)

    def _staging(self, org_id: int, token: str) -> str:
        return self._key("uploads", str(org_id), token)

    # --- the store's own checksums ---

    def _presigned_put(
        self, key: str, hex_digest: str, ttl: int, trusted: bool
    ) -> tuple[str, dict[str, str]]:
        """A PUT URL for `key` with the sha256 signed in, and the headers it needs. When
        the store's checksum is `trusted`, the PUT also names its algorithm (an SDK's
        header, which S3 and MinIO take; moto then keeps the declared sha256, unchecked)."""
        checksum = base64.b64encode(bytes.fromhex(hex_digest)).decode()
        params = {"Bucket": self.bucket, "Key": key, "ChecksumSHA256": checksum}
        headers = {"x-amz-checksum-sha256": checksum}
        if trusted:
            params["ChecksumAlgorithm"] = "SHA256"
            headers["x-amz-sdk-checksum-algorithm"] = "SHA256"
        url = self.client.generate_presigned_url("put_object", Params=params, ExpiresIn=ttl)
        return str(url), headers

    def _put_accepted(self, key: str, data: bytes, hex_digest: str) -> bool:
        """Whether the store takes `data` PUT as a client does, declared as `hex_digest`."""
        url, headers = self._presigned_put(key, hex_digest, 60, trusted=True)
        request = urllib.request.Request(url, data=data, method="PUT", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30):
                return True
        except urllib.error.HTTPError as err:
            if err.code == 400:  # BadDigest and the like: the checksum was refused
                return False
            raise

    def _probe(self) -> bool:
        """Whether the store verifies a signed x-amz-checksum-sha256: it must refuse a
        few bytes under a wrong one and take them under the right one, PUT as a client
        puts a file once the store is trusted."""
        key = self._key("uploads", "checksum-probe-" + uuid.uuid4().hex)
        data = b"registry checksum probe"
        try:
            refused = not self._put_accepted(key, data, hashlib.sha256(b"not it").hexdigest())
            if not self._put_accepted(key, data, hashlib.sha256(data).hexdigest()):
                raise ValueError("the store refused a PUT under the right checksum")
        except (OSError, ValueError, ClientError) as err:
            log.warning("s3 checksums: the probe failed (%s); uploads are read back", err)
            return False
        finally:
            self._delete_quietly(key)
        if refused:
            log.info(
                "s3 checksums: the store verifies x-amz-checksum-sha256; uploads up to "
                "5 GiB are one PUT, not read back"
            )
        else:
            log.info(
                "s3 checksums: the store took a PUT under a wrong x-amz-checksum-sha256; "
                "the server reads every upload back"
            )
        return refused

    def _delete_quietly(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            log.warning("s3: could not delete %s (%s); gc-blobs will", key, err)

    # --- presigned transfers ---

    def upload_parts(
        self, org_id: int, hex_digest: str, size: int, ttl: float
    ) -> tuple[str, list[PresignedPart]]:
        token = uuid.uuid4().hex
        key = self._staging(org_id, token)
        expires = int(ttl)
        if size <= (SINGLE_PUT_LIMIT if self.store_verifies else MULTIPART_THRESHOLD):
            url, headers = self._presigned_put(key, hex_digest, expires, self.store_verifies)
            return token, [PresignedPart(url, 0, 0, size, headers)]
        multipart = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        parts = []
        part_size = part_size_for(size)
        for number, offset in enumerate(range(0, size, part_size), start=1):
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
            parts.append(PresignedPart(url, number, offset, min(part_size, size - offset), {}))
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
            if not self.exists(org_id, hex_digest):  # only verified bytes get there
                self.client.copy(
                    {"Bucket": self.bucket, "Key": staging},
                    self.bucket,
                    self.key(org_id, hex_digest),
                    Config=COPY,
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
        if self.store_verifies and reported and "-" not in reported:
            got = base64.b64decode(reported).hex()  # what the store computed of the bytes
        else:  # the store's checksum is not trusted, or not of the whole object: read back
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
