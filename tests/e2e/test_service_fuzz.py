"""Property-based fuzzing of a real service process with schemathesis, driven by the service's own
OpenAPI document: thousands of generated requests (valid and invalid) to every endpoint, with
and without the token; none may get a 5xx."""
from __future__ import annotations

import re
import subprocess

import pytest

from tests.e2e.helpers import BIN, clean_env
from tests.e2e.service_process import sample_service_env, start_service

pytestmark = pytest.mark.e2e
TOKEN = "fuzz-token"
EXAMPLES = 300   # per endpoint and test phase; well over a thousand requests in all


@pytest.mark.parametrize("token", [TOKEN, None], ids=["with-token", "without-token"])
def test_no_generated_request_gets_a_5xx(served_sample, tmp_path, token):
    server = start_service(sample_service_env(served_sample, tmp_path, TOKEN), tmp_path / "server.log")
    try:
        headers = ["-H", f"Authorization: Bearer {token}"] if token else []
        result = subprocess.run(
            [str(BIN / "st"), "run", f"{server.url}/docs.json", "--checks", "not_a_server_error",
             "--max-examples", str(EXAMPLES), "--seed", "7", "--workers", "1", "--request-timeout", "60",
             "--no-color", "--report", "junit", "--report-dir", str(tmp_path / "report"), *headers],
            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=1800)   # its cache lands there
    finally:
        server.stop()
    summary = result.stdout[-4000:]
    assert result.returncode == 0, summary     # schemathesis exits 1 on any failed check or error
    generated = re.search(r"(\d+) generated", summary)
    assert generated and int(generated[1]) >= 1000, summary
    log = server.log.read_text()
    assert "status=5" not in log, log[-3000:]
    # a client's mistake is one INFO line naming the status and the field, never an ERROR traceback
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert re.search(r"client error 4\d\d on POST /\w+: ", log), log[-3000:]
