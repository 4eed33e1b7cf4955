"""`interest serve` (`make serve`): the service as the shop runs it, on one machine.

serving.workers 1: one `bentoml serve` process (the laptop mode), the SQLite feedback store.
More: one process loads the served versions and forks the workers from them, each BentoML's
worker on a localhost port of its own (deployment/prefork.py), so they share the versions'
memory; HAProxy in front on the service's port balances requests by least connections and
checks /readyz. (BentoML's own workers share one listening socket, so the kernel spreads
connections, not requests: a keep-alive client stays on one worker.) This is how the service
sits behind a Kubernetes Service. A request that names a session_id stays on the worker that
made the session's slate (a stick table on the body's session_id). The workers share one
PostgreSQL feedback store: serving.store_url when it names one, else a server this command keeps
in serving.cluster_dir. A worker that dies is forked again on its port; the balancer routes
around it until it answers /readyz.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.core.io import read_json
from components.core.paths import BIN, PROJECT_DIR
from components.core.ports import free_port
from components.deployment.postgres import PostgresServer, start_postgres
from components.deployment.prefork import STATE_FILE
from components.deployment.service_process import LocalServer, serve_command, wait_ready
from components.feedback.store import FeedbackStore, store_url
from components.serving.auth import service_token

log = logging.getLogger(__name__)
SUPERVISE_SECONDS = 1.0   # how often the balancer and the launcher are looked at
BALANCER_STARTUP_SECONDS = 30
# a worker busy under overload answers /readyz late: with a 1 s check both were taken out at
# 500 requests/s and every request failed. A dead one refuses the connection at once anyway.
HEALTH_CHECK_SECONDS = 5

HAPROXY_CONFIG = """# written by `interest serve`: the balancer in front of {workers} service workers
global
    maxconn 8192
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    retries 2
    # a request sent on a kept-alive connection the worker closed as it stopped (replaced after a
    # promotion) gets no answer: sent again, to another worker. Each endpoint may be: feedback
    # stores an event_id once
    retry-on conn-failure empty-response
    option redispatch
frontend interest
    bind 127.0.0.1:{port}
    default_backend workers
backend workers
    balance leastconn
    option httpchk GET /readyz
    timeout check {check_timeout}s
    default-server inter 1s fall 3 rise 1
{sessions}{servers}
"""
# a request naming a session_id goes where that session's first request went, for as long as the
# session's slate is kept (serving.session_ttl_seconds): the slates live in the worker's memory
STICKY_SESSIONS = """    option http-buffer-request
    stick-table type string len 200 size 1m expire {ttl}s
    stick on req.body,json_query('$.session_id')
"""


def haproxy_config(port: int, worker_ports: list[int], session_ttl_seconds: float = 0) -> str:
    servers = "\n".join(f"    server w{i} 127.0.0.1:{p} check" for i, p in enumerate(worker_ports))
    sessions = STICKY_SESSIONS.format(ttl=max(1, math.ceil(session_ttl_seconds))) if session_ttl_seconds > 0 else ""
    return HAPROXY_CONFIG.format(workers=len(worker_ports), port=port, sessions=sessions, servers=servers,
                                 check_timeout=HEALTH_CHECK_SECONDS)


@dataclass
class Cluster:
    """The balancer, its workers and the store they share: what `interest serve` started."""

    url: str
    balancer: subprocess.Popen | None
    launcher: LocalServer          # the process the workers are forked from (deployment/prefork.py)
    worker_urls: list[str]
    env: dict[str, str]
    folder: Path
    postgres: PostgresServer | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def _state(self) -> dict:
        return read_json(self.folder / STATE_FILE)

    def worker_pids(self) -> list[int]:
        """The workers' pids, worker i's at i (a restarted worker's new one)."""
        return self._state()["pids"]

    @property
    def restarts(self) -> int:
        """How many times a worker that ended was forked again."""
        return self._state()["restarts"]

    def supervise(self) -> None:
        """Until stop(): fail when the balancer or the workers' launcher ends (the caller's thread)."""
        while not self._stopping.wait(SUPERVISE_SECONDS):
            if self.balancer is not None and self.balancer.poll() is not None:
                raise InterestError(f"the balancer ended ({self.balancer.returncode}): see {self.folder / 'haproxy.log'}")
            if self.launcher.proc.poll() is not None:
                raise InterestError(f"the workers' launcher ended ({self.launcher.proc.returncode}): "
                                    f"see {self.launcher.log}")

    def request_stop(self) -> None:
        """supervise() returns at its next look."""
        self._stopping.set()

    def stop(self) -> None:
        self._stopping.set()
        if self.balancer is not None:
            self.balancer.terminate()
            self.balancer.wait(timeout=10)
        self.launcher.stop()
        if self.postgres is not None:
            self.postgres.stop()


def shared_store(params: Params, folder: Path) -> tuple[str, PostgresServer | None]:
    """The store URL the workers share: serving.store_url when it is not SQLite (a file several
    processes would write at once), else a PostgreSQL server kept in `folder`."""
    url = store_url(params)
    if not url.startswith("sqlite"):
        return url, None
    server = start_postgres(folder)
    return server.url, server


def start_launcher(env: dict[str, str], ports: list[int], folder: Path, startup_seconds: float) -> LocalServer:
    """The process that loads the served versions once and forks a worker per port
    (deployment/prefork.py); returned once every worker answers /readyz."""
    log_file = folder / "prefork.log"
    with open(log_file, "a") as out:
        proc = subprocess.Popen([str(BIN / "python"), "-m", "components.deployment.prefork", "--folder", str(folder),
                                 "--ports", ",".join(map(str, ports))], cwd=PROJECT_DIR, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    launcher = LocalServer(f"http://127.0.0.1:{ports[0]}", proc, log_file)
    try:
        deadline = time.monotonic() + startup_seconds
        for port in ports:
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc, max(1.0, deadline - time.monotonic()), log_file)
    except BaseException:
        launcher.stop(signal.SIGKILL)
        raise
    return launcher


def start_cluster(params: Params, port: int | None = None, workers: int | None = None,
                  env: dict[str, str] | None = None, folder: Path | None = None) -> Cluster:
    """serving.workers (or `workers`) workers forked from one launcher, behind HAProxy on `port`
    (default: serving.port; 0: a free one), started and ready; `env` is the workers' environment
    (default: this process's). One worker with no balancer wanted is start_server's job: here
    even one worker sits behind the balancer, so 1 and 2 compare."""
    cfg = params.serving
    n, folder = workers or cfg.workers, Path(folder or params.path(cfg.cluster_dir))
    folder.mkdir(parents=True, exist_ok=True)
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        raise InterestError("no `haproxy` on PATH: `make setup` installs Debian's haproxy (or set serving.workers: 1)")
    env = {**(os.environ if env is None else env), "INTEREST_PARAMS": str(params.root / "params.yaml"),
           "BENTOML_DO_NOT_TRACK": "True"}
    service_token(params.path(cfg.token_file))          # made once here, not raced for by the workers
    url, postgres = shared_store(params, folder / "postgres")
    env["INTEREST__SERVING__STORE_URL"] = url
    worker_ports = [free_port() for _ in range(n)]
    try:
        FeedbackStore(url).close()                      # the schema migrated once, before the workers
        launcher = start_launcher(env, worker_ports, folder, cfg.startup_seconds)
    except BaseException:
        if postgres is not None:
            postgres.stop()
        raise
    port = port if port is not None else cfg.port
    port = port or free_port()
    config = folder / "haproxy.cfg"
    config.write_text(haproxy_config(port, worker_ports, cfg.session_ttl_seconds))
    with open(folder / "haproxy.log", "a") as out:
        balancer = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    cluster = Cluster(f"http://127.0.0.1:{port}", balancer, launcher, [f"http://127.0.0.1:{p}" for p in worker_ports],
                      env, folder, postgres)
    try:
        wait_ready(f"{cluster.url}/readyz", balancer, BALANCER_STARTUP_SECONDS, folder / "haproxy.log")
    except BaseException:
        cluster.stop()
        raise
    log.info("serving on %s: %d workers behind HAProxy, feedback store %s (logs in %s)",
             cluster.url, n, "PostgreSQL" if url.startswith("postgresql") else url, folder)
    return cluster


def serve(params: Params, port: int | None = None) -> None:
    """Run the service until interrupted: one `bentoml serve` in this process's place, or the
    cluster, supervised."""
    port = port or params.serving.port
    if params.serving.workers == 1:
        os.chdir(PROJECT_DIR)
        os.environ["INTEREST_PARAMS"] = str(params.root / "params.yaml")
        command = serve_command(port)
        os.execv(command[0], command)
    cluster = start_cluster(params, port)
    signal.signal(signal.SIGTERM, lambda *_: cluster.request_stop())
    try:
        cluster.supervise()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
