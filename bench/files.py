"""File transfer benchmark: `registry-server serve` as a subprocess over SQLite and a
file:// blob store in a temporary directory, driven by `registry_client.Client` on
loopback, as a user's code drives it.

    python -m bench.files [--big-mib 1024] [--small 1000] [--small-kib 64]
                          [--s3] [--mlflow [--mlflow-mib 256]]

Reports upload and download MB/s of one big file, files/s of many small ones each
way, and how much the server's resident memory grew during the transfers (streams,
never whole files). `--s3` serves the same from moto's S3-protocol server and reports
the server's CPU seconds per GiB moved through presigned URLs and GetDownloadUrls
calls/s, with `--s3-checksums read-back`, then the big file again with `verified`
(moto does not verify checksums: there `verified` only shows the server's share).
`--mlflow` compares with `mlflow server --serve-artifacts` on the same file (MLflow's
own client, `MlflowClient.log_artifact` / `mlflow.artifacts.download_artifacts`),
installing mlflow into `.venv-mlflow` on first use. Results: a table on stdout and JSON
in bench/results/<timestamp>-files.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.host import free_port, machine
from bench.run import RESULTS, ROOT, ServerProcess, server_binary
from registry_client import Client
from registry_client.client import manifest_from_directory
from registry_server.storage.migrate import upgrade

MB = 1_000_000
MIB = 1 << 20


def random_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(size, 16 * MIB)) if size else b""
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(block[:left])
            left -= len(block)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bootstrap(url: str) -> str:
    out = subprocess.run(
        [server_binary(), "bootstrap", "--organization", "bench", "--admin", "bench",
         "--database-url", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def registry(
    workdir: Path, blob_store: str, extra: list[str]
) -> Iterator[tuple[ServerProcess, Client]]:
    url = f"sqlite:///{workdir / 'registry.db'}"
    upgrade(url)
    key = bootstrap(url)
    server = ServerProcess(
        url, log_level="WARNING", log_dir=workdir, extra_args=["--blob-store", blob_store, *extra]
    )
    try:
        server.wait_healthy()
        with Client(server.target, key, timeout=600) as client:
            client.create_team("bench")
            client.create_project("bench", "files")
            yield server, client
    finally:
        server.stop()


def transfer(
    server: ServerProcess, client: Client, source: Path, dest: Path, name: str
) -> dict[str, float]:
    """Upload and download times of the files under `source`, the server's CPU seconds
    and how far its RSS grew above where it was before."""
    entries = manifest_from_directory(source)  # hashing the files is not timed
    base_rss = server.rss_mb()
    server.rss_max_mb = base_rss
    cpu = server.cpu_seconds()
    up = timed(lambda: client.upload("bench/files", source, entries))
    cpu_up = server.cpu_seconds() - cpu
    version = client.log_artifact("bench/files", name, "model", manifest=entries)
    down = timed(lambda: client.download(version.path, dest))
    time.sleep(0.5)  # one more RSS sample
    return {
        "upload_s": up,
        "download_s": down,
        "server_cpu_s": server.cpu_seconds() - cpu,
        "server_cpu_up_s": cpu_up,
        "rss_growth_mb": server.rss_max_mb - base_rss,
    }


def run_registry(
    args: argparse.Namespace, workdir: Path, blob_store: str, extra: list[str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with registry(workdir, blob_store, extra or []) as (server, client):
        big = workdir / "big"
        random_file(big / "model.bin", args.big_mib * MIB)
        figures = transfer(server, client, big, workdir / "big-out", "big")
        size_mb = args.big_mib * MIB / MB
        out["big"] = {
            **figures,
            "mib": args.big_mib,
            "upload_mb_s": size_mb / figures["upload_s"],
            "download_mb_s": size_mb / figures["download_s"],
            "server_cpu_s_per_gib": figures["server_cpu_s"] / (2 * args.big_mib / 1024),
            "server_cpu_up_s_per_gib": figures["server_cpu_up_s"] / (args.big_mib / 1024),
        }
        if args.small == 0:
            return out
        shutil.rmtree(big)
        shutil.rmtree(workdir / "big-out")
        small = workdir / "small"
        for i in range(args.small):
            random_file(small / f"{i // 100:02d}" / f"f{i:04d}.bin", args.small_kib * 1024)
        figures = transfer(server, client, small, workdir / "small-out", "small")
        out["small"] = {
            **figures,
            "files": args.small,
            "kib": args.small_kib,
            "upload_files_s": args.small / figures["upload_s"],
            "download_files_s": args.small / figures["download_s"],
        }
        if server.target and blob_store.startswith("s3://"):
            version = client.artifact_version("bench/files/small:v0")
            from registry.v1 import file_service_pb2 as fpb

            calls = 200
            took = timed(
                lambda: [
                    client.stubs.files.GetDownloadUrls(
                        fpb.GetDownloadUrlsRequest(path=version.path)
                    )
                    for _ in range(calls)
                ]
            )
            out["presign"] = {
                "calls_s": calls / took,
                "urls_s": calls * args.small / took,
            }
    return out


# --- MLflow's artifact proxy, side by side ----------------------------------------------

MLFLOW_VENV = ROOT / ".venv-mlflow"
MLFLOW_CLIENT = """
import sys, time, mlflow
from mlflow import MlflowClient
mlflow.set_tracking_uri(sys.argv[1])
client = MlflowClient()
run = client.create_run(client.create_experiment("bench-" + str(time.time())).__str__())
start = time.perf_counter()
client.log_artifact(run.info.run_id, sys.argv[2])
up = time.perf_counter() - start
start = time.perf_counter()
mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=sys.argv[3])
down = time.perf_counter() - start
print(up, down)
"""


def mlflow_python() -> Path:
    python = MLFLOW_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlflow"], check=True)
    return python


def run_mlflow(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    python = mlflow_python()
    port = free_port()
    log = (workdir / "mlflow.log").open("wb")
    proc = subprocess.Popen(
        [str(python.parent / "mlflow"), "server", "--serve-artifacts", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
         "--artifacts-destination", str(workdir / "mlartifacts")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        source = workdir / "mlflow-in" / "model.bin"
        random_file(source, args.mlflow_mib * MIB)
        deadline = time.monotonic() + 120
        while True:
            try:
                import urllib.request

                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        results = []
        for attempt in range(2):  # the first warms up
            dest = workdir / f"mlflow-out-{attempt}"
            out = subprocess.run(
                [str(python), "-c", MLFLOW_CLIENT, f"http://127.0.0.1:{port}", str(source),
                 str(dest)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            up, down = (float(x) for x in out.stdout.split()[-2:])
            results.append((up, down))
        up, down = results[-1]
        size_mb = args.mlflow_mib * MIB / MB
        return {
            "mib": args.mlflow_mib,
            "upload_mb_s": size_mb / up,
            "download_mb_s": size_mb / down,
        }
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


# --- report ------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    lines = [
        "| store | case | upload | download | server RSS growth | server CPU |",
        "|---|---|---|---|---|---|",
    ]
    for store in ("file", "s3", "s3 verified"):
        r = results.get(store)
        if not r:
            continue
        b = r["big"]
        lines.append(
            f"| {store} | 1 file of {b['mib']} MiB | {b['upload_mb_s']:.0f} MB/s | "
            f"{b['download_mb_s']:.0f} MB/s | {b['rss_growth_mb']:.1f} MB | "
            f"{b['server_cpu_s_per_gib']:.2f} s/GiB ({b['server_cpu_up_s_per_gib']:.2f} "
            "s per GiB uploaded) |"
        )
        if "small" not in r:
            continue
        s = r["small"]
        lines.append(
            f"| {store} | {s['files']} files of {s['kib']} KiB | "
            f"{s['upload_files_s']:.0f} files/s | {s['download_files_s']:.0f} files/s | "
            f"{s['rss_growth_mb']:.1f} MB | |"
        )
        if "presign" in r:
            p = r["presign"]
            lines.append(
                f"| {store} | GetDownloadUrls of {s['files']} files | | "
                f"{p['calls_s']:.1f} calls/s ({p['urls_s']:.0f} URLs/s) | | |"
            )
    if "mlflow" in results:
        m = results["mlflow"]
        lines.append(
            f"| mlflow --serve-artifacts | 1 file of {m['mib']} MiB | "
            f"{m['upload_mb_s']:.0f} MB/s | {m['download_mb_s']:.0f} MB/s | | |"
        )
        if "file_same" in results:
            f = results["file_same"]["big"]
            lines.append(
                f"| file (same file) | 1 file of {f['mib']} MiB | {f['upload_mb_s']:.0f} MB/s | "
                f"{f['download_mb_s']:.0f} MB/s | {f['rss_growth_mb']:.1f} MB | |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--s3", action="store_true")
    parser.add_argument("--mlflow", action="store_true")
    parser.add_argument("--mlflow-mib", type=int, default=256)
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="registry-bench-files-") as d:
        work = Path(d)
        (work / "file").mkdir()
        results["file"] = run_registry(args, work / "file", (work / "file" / "blobs").as_uri())
        shutil.rmtree(work / "file")
        if args.s3:
            sys.path.insert(0, str(ROOT))
            from tests.support.s3 import moto_server

            (work / "s3").mkdir()
            with moto_server() as location:
                read_back = ["--s3-checksums", "read-back"]
                results["s3"] = run_registry(args, work / "s3", location, read_back)
                shutil.rmtree(work / "s3")
                (work / "s3").mkdir()
                big_only = argparse.Namespace(**{**vars(args), "small": 0})
                verified = ["--s3-checksums", "verified"]
                results["s3 verified"] = run_registry(big_only, work / "s3", location, verified)
            shutil.rmtree(work / "s3")
        if args.mlflow:
            (work / "mlflow").mkdir()
            results["mlflow"] = run_mlflow(args, work / "mlflow")
            shutil.rmtree(work / "mlflow")
            same = argparse.Namespace(**{**vars(args), "big_mib": args.mlflow_mib, "small": 1})
            (work / "same").mkdir()
            run_registry(same, work / "same", (work / "same" / "blobs").as_uri())  # warm-up
            shutil.rmtree(work / "same")
            (work / "same").mkdir()
            results["file_same"] = run_registry(
                same, work / "same", (work / "same" / "blobs").as_uri()
            )
    print(table(results))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{dt.datetime.now():%Y%m%d-%H%M%S}-files.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"\nfull figures: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
