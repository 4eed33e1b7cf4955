"""A real `bentoml serve bento.service:InterestService` process on a free localhost port."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.helpers import BIN, ROOT, clean_env

STARTUP_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServiceProcess:
    url: str
    proc: subprocess.Popen
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: BentoML's arbiter stops its workers. SIGKILL: every process of the service at
        once (the workers run in process groups of their own, so the group alone is not enough)."""
        try:
            if sig == signal.SIGKILL:
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    child.kill()
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, psutil.NoSuchProcess):
            return
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def start_service(env: dict[str, str], log: Path) -> ServiceProcess:
    """Start the service with `env` on top of a clean environment; wait until /readyz says so."""
    port = free_port()
    with open(log, "a") as out:
        proc = subprocess.Popen([str(BIN / "bentoml"), "serve", "bento.service:InterestService", "--port", str(port),
                                 "--host", "127.0.0.1"], cwd=ROOT, env=clean_env(BENTOML_DO_NOT_TRACK="True", **env),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    service = ServiceProcess(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            if httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200:
                return service
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            service.stop(signal.SIGKILL)
            pytest.fail(f"the service did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


def post(url: str, endpoint: str, body: dict, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/{endpoint}", json=body, headers=headers, timeout=60)
