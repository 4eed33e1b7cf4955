"""Data-parallel training as a cluster runs it: one torchrun agent per node, meeting at a c10d
rendezvous.

The `train` step with train.processes > 1 (and not already under torchrun) starts that many
agents on this machine, each one "node" of one process:

    torchrun --nnodes N --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:PORT
             --rdzv-id ID -m components.cli train --params PARAMS

On a cluster every node runs the same command with the first node's address as the endpoint
(docs/scale-out.md); nothing else changes. The ranks train in lock step (gloo on CPU, NCCL on
CUDA) and rank 0 writes the outputs, so the step's outputs are those of one process.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.core.io import read_json
from components.core.paths import BIN, PROJECT_DIR
from components.core.ports import free_port

log = logging.getLogger(__name__)
LOG_TAIL_CHARS = 2000
# a Python exception's last line (the training's own, or torchrun's)
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*)?(?:Error|Exception): .*$", re.MULTILINE)


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ


def agent_command(params_file: Path, nodes: int, endpoint: str, run_id: str) -> list[str]:
    """The command each node runs: one torchrun agent with one training process."""
    return [str(BIN / "torchrun"), "--nnodes", str(nodes), "--nproc-per-node", "1", "--rdzv-backend", "c10d",
            "--rdzv-endpoint", endpoint, "--rdzv-id", run_id, "-m", "components.cli", "train",
            "--params", str(params_file)]


def train_on_agents(params: Params) -> dict:
    """Run the train step as train.processes torchrun agents on this machine; returns the
    step's summary (train.metrics_file, written by rank 0). Each agent's output goes to
    train.agents_dir; a failed agent stops the others and its log's tail is in the error."""
    nodes = params.train.processes
    folder = params.path(params.train.agents_dir)
    folder.mkdir(parents=True, exist_ok=True)
    endpoint, run_id = f"127.0.0.1:{free_port()}", uuid.uuid4().hex[:12]
    threads = max(1, (os.cpu_count() or 1) // nodes)   # the agents share this machine's cores
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = agent_command(params.root / "params.yaml", nodes, endpoint, run_id)
    log.info("training on %d torchrun agents (rendezvous %s, id %s), %d thread(s) each; logs in %s",
             nodes, endpoint, run_id, threads, folder)
    logs = [folder / f"agent{i}.log" for i in range(nodes)]
    agents = []
    for path in logs:
        with open(path, "w") as out:
            agents.append(subprocess.Popen(command, cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT))
    failed = _wait(agents)
    if failed is not None:
        texts = [path.read_text() for path in logs]
        raise InterestError(f"torchrun agent {failed} failed (exit {agents[failed].returncode}): {_root_cause(texts)}. "
                            f"The others were stopped. Its log ({logs[failed]}) ends:\n{texts[failed][-LOG_TAIL_CHARS:]}")
    return read_json(params.path(params.train.metrics_file))


def _root_cause(logs: list[str]) -> str:
    """The training's own exception in the agents' logs, not torchrun's rendezvous errors that
    follow it in every agent once one has failed."""
    found = [m.group(0) for text in logs for m in EXCEPTION_LINE.finditer(text)]
    own = [line for line in found if not line.startswith("torch.distributed")]
    return (own or found or ["no exception in their logs"])[0]


def _wait(agents: list[subprocess.Popen]) -> int | None:
    """Wait for every agent; the index of the first that failed (the others then stopped), or None."""
    while True:
        codes = [a.poll() for a in agents]
        failed = next((i for i, code in enumerate(codes) if code not in (None, 0)), None)
        if failed is not None:
            for a in agents:
                if a.poll() is None:
                    a.terminate()
            for a in agents:
                a.wait()
            return failed
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.5)
