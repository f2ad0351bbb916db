"""A Node.js client of the registry (tests/node/client.mjs, on the TypeScript that
`make generate` writes from buf.gen.yaml) resolves a registry path through the server
and reads the ErrorInfo of a failing call from the google.rpc protos vendored in
third_party/googleapis: what a service in another language sees."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from registry.v1 import resources_pb2 as r

from ..support.content import create_registry, grant, link, log_version, make_lab
from ..support.servers import ServerThread
from ..support.world import World

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "node" / "client.mjs"


def test_a_node_client_resolves_a_path_and_reads_error_info(
    world: World, server: ServerThread
) -> None:
    node = shutil.which("node")
    assert node, "the Node.js client test needs node (Debian package nodejs)"
    if not (ROOT / "gen" / "ts" / "registry" / "v1" / "artifact_service_pb.js").exists():
        pytest.fail("gen/ts is missing: run `make generate` (make test does)")
    owner = world.person("owner")
    lab = make_lab(world, owner)
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    version = log_version(lab)
    link(owner, registry, "resnet", version.name, ["production"])
    reg_id = registry.rsplit("/", 1)[1]
    path = f"{world.org}/wandb-registry-{reg_id}/resnet:production"
    done = subprocess.run(
        [node, str(SCRIPT), server.target, owner.key, path, f"{path[: -len('production')]}v9"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["artifactVersion"] == version.name
    assert answer["canonicalPath"] == f"{world.org}/wandb-registry-{reg_id}/resnet:v0"
    assert answer["failure"] == {
        "code": "NotFound",
        "message": f"path '{path[: -len('production')]}v9' not found",
        "reason": "NOT_FOUND",
        "domain": "registry.v1",
    }
