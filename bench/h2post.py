"""A load driver for cases whose every request differs (writes): `bench/h2post.js`.

h2load posts one body over and over, so it cannot drive LinkArtifactVersion, where
each call must link a new source version. `h2post.js` runs on Node.js's built-in
HTTP/2 client (nghttp2 underneath, as in h2load) with the same closed-loop shape
(connections x concurrent streams) and posts pre-built gRPC frames, one per call,
from a file this module writes. Unlike h2load it reads `grpc-status`, so failed
calls are counted as failures. A Python gRPC client would cost the 2-core machine
about as much CPU per call as the server spends: measured that way, the figure is
the client's as much as the server's.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import Message

from bench.h2load import find_binary, grpc_frame

SCRIPT = Path(__file__).resolve().parent / "h2post.js"
INSTALL_HINT = "node is missing: install Node.js with `sudo apt-get install nodejs`"


def find_node() -> str:
    return find_binary("node", INSTALL_HINT)


@dataclass
class PostResult:
    requests: int  # succeeded, started within the measured window
    failed: int
    seconds: float
    qps: float
    latencies_us: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    exhausted: bool = False  # every request was sent before the window ended


def run(
    node: str,
    target: str,
    method: str,
    requests: Iterable[Message],
    *,
    api_key: str,
    duration: float,
    connections: int,
    streams: int,
    warm_up: float,
) -> PostResult:
    """Posts `requests` in order (each once) for `warm_up` + `duration` seconds."""
    with tempfile.TemporaryDirectory(prefix="registry-h2post-") as tmp:
        frames = Path(tmp) / "frames.bin"
        with frames.open("wb") as f:
            for message in requests:
                f.write(grpc_frame(message))
        config = Path(tmp) / "config.json"
        config.write_text(
            json.dumps(
                {
                    "authority": target,
                    "path": method,
                    "headers": {"authorization": f"Bearer {api_key}"},
                    "frames": str(frames),
                    "connections": connections,
                    "streams": streams,
                    "duration": duration,
                    "warmUp": warm_up,
                }
            )
        )
        out = subprocess.run(
            [node, str(SCRIPT), str(config)],
            capture_output=True,
            text=True,
            check=False,
            timeout=warm_up + duration + 120,
        )
    if out.returncode != 0:
        raise RuntimeError(f"h2post.js failed ({out.returncode}): {out.stderr.strip()}")
    res = json.loads(out.stdout)
    errors: dict[str, int] = res["errors"]
    seconds = float(res["seconds"])
    return PostResult(
        requests=int(res["requests"]),
        failed=sum(errors.values()),
        seconds=seconds,
        qps=int(res["requests"]) / seconds,
        latencies_us=[int(v) for v in res["latencies_us"]],
        errors=errors,
        exhausted=bool(res["exhausted"]),
    )
