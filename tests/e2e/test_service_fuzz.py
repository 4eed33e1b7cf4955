"""Property-based fuzzing of the service as a shop runs it (two workers behind HAProxy, a
PostgreSQL store) with schemathesis, driven by the service's own OpenAPI document: thousands of
generated requests (valid and invalid) to every endpoint through the balancer, with and without
the token; none may get a 5xx, and no client mistake is logged as an error."""
from __future__ import annotations

import re
import subprocess
from typing import Iterator

import pytest

from components.core.config.loader import load_params
from components.deployment.serve import Cluster, start_cluster
from components.registry.store import store_home
from tests.e2e.helpers import BIN, clean_env

pytestmark = pytest.mark.e2e
TOKEN = "fuzz-token"
EXAMPLES = 300   # per endpoint and test phase; well over a thousand requests in all
WORKERS = 2
LOGGED = {"INTEREST__SERVING__ACCESS_LOG": "true"}   # a line per request: its status is checked below


@pytest.fixture(scope="module")
def cluster(served_sample, tmp_path_factory) -> Iterator[Cluster]:
    """One cluster for both phases (a start is a PostgreSQL, HAProxy and two workers); each phase
    reads the log lines written while it ran."""
    folder = tmp_path_factory.mktemp("fuzz")
    env = clean_env(BENTOML_HOME=str(store_home(served_sample)), INTEREST_SERVICE_TOKEN=TOKEN,
                    INTEREST__SERVING__ADDED_ITEMS_DIR=str(folder / "added"), **LOGGED)
    params = load_params(served_sample.root / "params.yaml", environ=LOGGED)
    started = start_cluster(params, port=0, workers=WORKERS, env=env, folder=folder / "cluster")
    yield started
    started.stop()
    for i in range(WORKERS):   # nothing went wrong between the phases' reads or while stopping
        log = (started.folder / f"worker{i}.log").read_text()
        assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


@pytest.mark.parametrize("token", [TOKEN, None], ids=["with-token", "without-token"])
def test_no_generated_request_gets_a_5xx(cluster, tmp_path, token):
    worker_logs = [cluster.folder / f"worker{i}.log" for i in range(WORKERS)]
    before = [path.stat().st_size for path in worker_logs]
    headers = ["-H", f"Authorization: Bearer {token}"] if token else []
    result = subprocess.run(
        [str(BIN / "st"), "run", f"{cluster.url}/docs.json", "--checks", "not_a_server_error",
         "--max-examples", str(EXAMPLES), "--seed", "7", "--workers", "1", "--request-timeout", "60",
         "--no-color", "--report", "junit", "--report-dir", str(tmp_path / "report"), *headers],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=1800)   # its cache lands there
    summary = result.stdout[-4000:]
    assert result.returncode == 0, summary     # schemathesis exits 1 on any failed check or error
    generated = re.search(r"(\d+) generated", summary)
    assert generated and int(generated[1]) >= 1000, summary
    logs = [path.read_bytes()[start:].decode() for path, start in zip(worker_logs, before)]
    assert all(log.count("status=4") > 100 for log in logs), [log[-2000:] for log in logs]   # both took requests
    log = "".join(logs)
    assert "status=5" not in log, log[-3000:]
    # a client's mistake is one INFO line naming the status and the field, never an ERROR traceback
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert re.search(r"client error 4\d\d on POST /\w+: ", log), log[-3000:]
