"""The service as a process on localhost (`bentoml serve bento.service:InterestService`), for
`interest serve`'s workers, the benches and the tests: started on a port, ready when /readyz
says so, stopped whole."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from components.core.errors import InterestError
from components.core.paths import BIN, PROJECT_DIR
from components.core.ports import free_port

SERVICE = "bento.service:InterestService"   # the BentoML service, as `bentoml serve` and the launcher import it


def serve_command(port: int) -> list[str]:
    """`bentoml serve` of the project's service on `port`: one process, its own workers' parent."""
    return [str(BIN / "bentoml"), "serve", SERVICE, "--port", str(port)]


@dataclass
class LocalServer:
    url: str
    proc: subprocess.Popen
    log: Path

    def processes(self) -> list[psutil.Process]:
        """The server and its workers (BentoML runs them in process groups of their own)."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def memory_bytes(self) -> tuple[int, int]:
        """(resident, proportional) bytes of its processes. Resident counts the pages it shares
        with other processes (libraries, page cache) in full; proportional (PSS) splits each
        shared page among its sharers, so summed over workers it is what the machine spends."""
        rss = pss = 0
        for p in self.processes():
            try:
                info = p.memory_full_info()
                rss, pss = rss + info.rss, pss + info.pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return rss, pss

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: BentoML's arbiter stops its workers. SIGKILL: every process of it at once."""
        try:
            if sig == signal.SIGKILL:
                for p in self.processes()[1:]:
                    p.kill()
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, psutil.NoSuchProcess):
            return
        except subprocess.TimeoutExpired:
            self.stop(signal.SIGKILL)


def start_server(env: dict[str, str], log: Path, startup_seconds: float, port: int | None = None) -> LocalServer:
    """Start the service with `env` (the complete environment) on `port` (default: a free one);
    return once it is ready."""
    port = port or free_port()
    with open(log, "a") as out:
        proc = subprocess.Popen([*serve_command(port), "--host", "127.0.0.1"], cwd=PROJECT_DIR, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    server = LocalServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_ready(f"{server.url}/readyz", proc, startup_seconds, log)
    except InterestError:
        server.stop(signal.SIGKILL)
        raise
    return server


def wait_ready(url: str, proc: subprocess.Popen, startup_seconds: float, log: Path) -> None:
    """Until `url` answers 200; an error with the end of the log if the process dies or time runs out."""
    deadline = time.monotonic() + startup_seconds
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise InterestError(f"{url} did not become ready in {startup_seconds:.0f}s; the end of its log "
                                f"({log}):\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
