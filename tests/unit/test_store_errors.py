"""A presigned URL that fails gives the client's typed errors, not urllib's."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.v1 import file_service_pb2 as pb
from registry_client.errors import FailedPreconditionError, NotFoundError, UnavailableError
from registry_client.files import fetch_url, put_part


class _Store(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        status = int(self.path.strip("/"))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def store() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, FailedPreconditionError), (404, NotFoundError), (503, UnavailableError)],
)
def test_a_failed_presigned_request_is_a_typed_error(
    store: str, tmp_path: Path, status: int, error: type[Exception]
) -> None:
    entry = pb.DownloadUrl(file="w.bin", size=4, url=f"{store}/{status}")
    with pytest.raises(error, match=r"w\.bin"):
        fetch_url(entry.url, tmp_path / "w.bin", entry, None)
    (tmp_path / "part").write_bytes(b"data")
    with pytest.raises(error, match="part"):
        put_part(pb.UploadPart(url=f"{store}/{status}", offset=0, size=4), tmp_path / "part")


def test_a_store_that_cannot_be_reached_is_unavailable(tmp_path: Path) -> None:
    entry = pb.DownloadUrl(file="w.bin", size=4, url=f"http://127.0.0.1:{_closed_port()}/x")
    with pytest.raises(UnavailableError):
        fetch_url(entry.url, tmp_path / "w.bin", entry, None)
