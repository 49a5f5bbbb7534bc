"""`mmat generate --engine ray` on a real two-node Ray cluster (two `ray start` nodes on this machine):
the OCR actors are placed by a custom resource on the worker node, the worker node dies mid-run and a
replacement joins, and the job ends with exactly the expected ids (none lost, none twice).

Teardown ends only this cluster's processes (found by its own temp folder), never `ray stop`, which
would also stop every other Ray instance of the machine."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.runner_support import (
    FORMATS,
    REPO,
    default_work_dir,
    inspect_folder,
    mmat_cmd,
    mmat_env,
    rows_file_ids,
    source,
    source_ids,
    write_config,
)

pytest.importorskip("ray")  # the `ray` extra; `make test` installs it

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
OBJECT_STORE = str(80 * 1024 * 1024)  # the smallest Ray accepts is 75 MiB
# A loopback-only test cluster: no token (Ray 2.60's `ray start --head` turns token auth on when
# ~/.ray/auth_token exists, and the worker node and the job would then need the token too).
# A dead node is declared dead after about 3 s instead of Ray's default 30 s.
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_health_check_period_ms": "1000",
               "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class TwoNodeCluster:
    """A head (`head_node` resource) and worker nodes (`ocr_node`), each with 1 CPU and its own temp folder."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mmat-ray-", dir="/tmp"))  # Ray's socket paths must stay short
        self.port = _free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        self.workers: list[int] = []  # node manager ports, one per worker node started

    def _start(self, name: str, *args: str) -> int:
        manager, objects, agent, agent_grpc, runtime_env, metrics = _free_ports(6)
        cmd = [RAY, "start", *args, "--num-cpus", "1", "--object-store-memory", OBJECT_STORE,
               "--temp-dir", str(self.root / name), "--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--include-log-monitor", "false",
               "--node-manager-port", str(manager), "--object-manager-port", str(objects),
               "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
               "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=mmat_env(**CLUSTER_ENV))
        assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return manager

    def start_head(self) -> None:
        self._start("head", "--head", "--port", str(self.port), "--include-dashboard", "false",
                    "--dashboard-port", str(_free_ports(1)[0]),  # its minimal head module still binds one
                    "--resources", json.dumps({"head_node": 1}))

    def start_worker(self) -> None:
        n = len(self.workers)
        self.workers.append(self._start(f"worker{n}", "--address", self.address,
                                        "--resources", json.dumps({"ocr_node": 1})))

    def _processes(self, marker: str) -> list[int]:
        return [pid for pid in _pids() if marker in _args(pid)]

    def kill_worker(self, index: int) -> int:
        """SIGKILL the worker node's raylet (a node failure); its workers and agents follow it."""
        raylets = [pid for pid in self._processes(f"--node_manager_port={self.workers[index]} ")
                   if "/raylet " in _args(pid)]
        assert raylets, f"no raylet for worker node {index}"
        for pid in raylets:
            os.kill(pid, signal.SIGKILL)
        return raylets[0]

    def stop(self) -> None:
        """End every process of this cluster (each names its temp folder or session), nothing else."""
        for _ in range(3):
            pids = self._processes(str(self.root))
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not pids:
                break
            time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) != os.getpid()]


def _args(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture
def cluster():
    nodes = TwoNodeCluster()
    try:
        nodes.start_head()
        nodes.start_worker()
        yield nodes
    finally:
        nodes.stop()


def test_the_ocr_node_dies_mid_run_and_the_job_ends_with_every_id_once(cluster, tmp_path):
    ocr_on_worker = {"ocr": {"actors": 1, "num_cpus": 0.25, "resources": {"ocr_node": 1}}}
    config_path = write_config(
        tmp_path / "two-nodes.yaml", [source("tabmwp"), source("visual_cot")], ocr="rapidocr",
        runner={"max_concurrency": 2, "ray": {"batch_size": 2, "generate_resources": {"head_node": 0.5},
                                              "operators": ocr_on_worker}})
    expected, _ = source_ids(config_path)
    out = tmp_path / "out"
    work = default_work_dir(out)
    log = (tmp_path / "generate.log").open("w")
    job = subprocess.Popen(mmat_cmd("generate", "--config", config_path, "--out", out, "--quiet",
                                    "--engine", "ray", "--ray-address", cluster.address),
                           cwd=REPO, env=mmat_env(**CLUSTER_ENV), stdout=log, stderr=subprocess.STDOUT)
    killed = None
    started = time.monotonic()
    try:
        deadline = time.monotonic() + 300
        while job.poll() is None and time.monotonic() < deadline:
            durable = sum(rows_file_ids(work).values()) if work.exists() else 0
            if durable >= 3:  # the OCR actor has served calls; most samples still to come
                killed = cluster.kill_worker(0)
                print(f"killed the worker node's raylet at {time.monotonic() - started:.0f} s, {durable} durable")
                cluster.start_worker()  # the replacement node (an autoscaler's job on a real cluster)
                break
            time.sleep(0.2)
        rc = job.wait(timeout=420)
        print(f"job ended at {time.monotonic() - started:.0f} s")
    finally:
        if job.poll() is None:
            job.kill()
        log.close()
    output = (tmp_path / "generate.log").read_text()
    assert killed is not None, f"the run ended before the worker node could be killed:\n{output[-3000:]}"
    assert rc == 0, output[-4000:]
    lines = rows_file_ids(work)
    assert set(lines) == expected, sorted(expected ^ set(lines))  # nothing lost
    assert [i for i, n in lines.items() if n > 1] == []  # nothing twice, even in the checkpoint
    state = inspect_folder(out)
    assert not state.unreadable
    for fmt in FORMATS:
        assert sorted(state.ids[fmt]) == sorted(expected), fmt
    # OCR results came from the pool on the worker nodes (the head declares no `ocr_node`)
    rows = [json.loads(line) for path in work.glob("rows-*.jsonl") for line in path.read_text().splitlines()]
    assert any('"operator": "ocr"' in json.dumps(row) for row in rows)


def test_an_operator_resource_no_node_declares_is_one_line(cluster, tmp_path):
    config_path = write_config(tmp_path / "missing.yaml", [source("tabmwp")], ocr="rapidocr",
                               runner={"ray": {"operators": {"ocr": {"resources": {"gpu_node": 1}}}}})
    done = subprocess.run(mmat_cmd("generate", "--config", config_path, "--out", tmp_path / "out", "--quiet",
                                   "--engine", "ray", "--ray-address", cluster.address),
                          cwd=REPO, env=mmat_env(**CLUSTER_ENV), capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "runner.ray.operators.ocr.resources asks for gpu_node=1" in done.stderr
    assert "Traceback" not in done.stderr
