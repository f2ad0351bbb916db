"""h2load as a gRPC load generator: framing, invocation and result parsing.

h2load speaks HTTP/2 and knows nothing about gRPC, so a case is a POST of one
pre-framed request body (5-byte prefix: compressed flag 0 + big-endian length,
then the serialized message) with the gRPC headers. h2load ignores the
`grpc-status` trailer: the runner checks each request once with a real gRPC
client before driving it here. Latency percentiles come from h2load's
`--log-file` (one line per request), not from its summary, so p50/p99 are exact.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import Message

H2LOAD = "/usr/bin/h2load"
INSTALL_HINT = "h2load is missing: install it with `sudo apt-get install nghttp2-client`"


def find_binary(name: str, install_hint: str, preferred: str | None = None) -> str:
    """A load driver's binary (`preferred` if it exists, else from PATH); exits with
    the install command when it is missing."""
    path = preferred if preferred and Path(preferred).exists() else shutil.which(name)
    if not path:
        print(install_hint, file=sys.stderr)
        raise SystemExit(2)
    return path


def binary_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or out.stderr.strip()


def find_h2load() -> str:
    return find_binary("h2load", INSTALL_HINT, H2LOAD)


def grpc_frame(message: Message) -> bytes:
    """One length-prefixed, uncompressed gRPC message."""
    payload = message.SerializeToString()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


@dataclass
class LoadResult:
    """What one h2load run measured."""

    requests: int  # completed within the measurement window
    failed: int  # h2load's failed + errored + timeout counts
    non_2xx: int
    seconds: float
    qps: float
    data_bytes: int = 0  # DATA frame payload received (gRPC messages)
    latencies_us: list[int] = field(default_factory=list)
    raw_output: str = ""

    def percentile_ms(self, q: float) -> float:
        return percentile(self.latencies_us, q) / 1000.0


def percentile(values: list[int] | list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q / 100.0 * len(ordered))))
    return float(ordered[rank - 1])


_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_DATA = re.compile(r"\((\d+)\) data")


def parse_data_bytes(output: str) -> int:
    """Bytes of DATA frames received, from the `traffic:` line."""
    found = _DATA.search(output)
    return int(found.group(1)) if found else 0


def parse_summary(output: str) -> tuple[float, float, int, int, int]:
    """(seconds, req/s, succeeded, failed, non-2xx) from h2load's text summary."""
    finished = _FINISHED.search(output)
    requests = _REQUESTS.search(output)
    status = _STATUS.search(output)
    if not finished or not requests or not status:
        raise RuntimeError(f"cannot parse h2load output:\n{output}")
    qps = float(finished.group(3))
    succeeded = int(requests.group(4))
    # "finished in" includes the warm-up; req/s is over the measured duration only.
    seconds = succeeded / qps if qps else float(finished.group(1))
    if finished.group(2) == "ms" and not qps:
        seconds /= 1000.0
    failed = int(requests.group(5)) + int(requests.group(6)) + int(requests.group(7))
    non_2xx = sum(int(status.group(i)) for i in (2, 3, 4))
    return seconds, qps, succeeded, failed, non_2xx


def parse_log(text: str) -> list[int]:
    """Per-request latencies (microseconds) of 2xx responses from an h2load --log-file."""
    latencies: list[int] = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        if parts[1].startswith("2"):
            latencies.append(int(parts[2]))
    return latencies


def run(
    binary: str,
    url: str,
    body: bytes,
    *,
    api_key: str,
    duration: float,
    connections: int = 2,
    streams: int = 8,
    warm_up: float = 1.0,
) -> LoadResult:
    """POSTs `body` to `url` for `duration` seconds at connections x streams."""
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        body_file = Path(tmp) / "body.bin"
        body_file.write_bytes(body)
        log_file = Path(tmp) / "requests.log"
        cmd = [
            binary,
            f"--clients={connections}",
            f"--max-concurrent-streams={streams}",
            "--threads=1",
            f"--duration={round(duration * 1000)}ms",
            f"--warm-up-time={round(warm_up * 1000)}ms",
            f"--data={body_file}",
            "--header=content-type: application/grpc",
            "--header=te: trailers",
            f"--header=authorization: Bearer {api_key}",
            f"--log-file={log_file}",
            url,
        ]
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration + warm_up + 60, check=False
        )
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise RuntimeError(f"h2load exited with {done.returncode}:\n{output}")
        seconds, qps, succeeded, failed, non_2xx = parse_summary(output)
        latencies = parse_log(log_file.read_text()) if log_file.exists() else []
    return LoadResult(
        requests=succeeded,
        failed=failed,
        non_2xx=non_2xx,
        seconds=seconds,
        qps=qps,
        data_bytes=parse_data_bytes(output),
        latencies_us=latencies,
        raw_output=output,
    )
