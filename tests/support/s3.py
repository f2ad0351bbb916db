"""An S3-protocol server of the tests' own: moto's standalone server
(`python -m moto.server`, from the [dev] extra) on a free port, with a bucket, and the
AWS_* environment that points boto3 (the server's s3:// store) at it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3

from .processes import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "registry-tests",
    "AWS_SECRET_ACCESS_KEY": "registry-tests",
    "AWS_REGION": "us-east-1",
}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Starts moto on 127.0.0.1, sets AWS_ENDPOINT_URL and the credentials in this
    process's environment, yields `s3://BUCKET/PREFIX` for `--blob-store`."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in (*CREDENTIALS, "AWS_ENDPOINT_URL")}
    os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
    try:
        client = boto3.client("s3")
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket="registry-blobs")
                break
            except Exception:
                assert child.poll() is None, "moto's server exited"
                assert time.monotonic() < deadline, "moto's server did not start"
                time.sleep(0.1)
        yield "s3://registry-blobs/tests"
    finally:
        child.terminate()
        child.wait(10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
