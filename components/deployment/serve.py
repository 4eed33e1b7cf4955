"""`interest serve` (`make serve`): the service as the shop runs it, on one machine.

serving.workers 1: one `bentoml serve` process (the laptop mode), the SQLite feedback store.
More: each worker a single-process `bentoml serve` on a localhost port of its own, HAProxy in
front on the service's port, balancing requests by least connections and checking /readyz.
BentoML's own workers share one listening socket, so the kernel spreads connections, not
requests: a keep-alive client stays on one worker. This is how the service sits behind a
Kubernetes Service. A request that names a session_id stays on the worker that made the
session's slate (a stick table on the body's session_id). The workers share one PostgreSQL feedback store: serving.store_url when
it names one, else a server this command keeps in serving.cluster_dir. A worker that dies is
started again on its port; the balancer routes around it until it answers /readyz.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from components.core.config import Params
from components.core.errors import InterestError
from components.core.paths import BIN, PROJECT_DIR
from components.deployment.postgres import PostgresServer, start_postgres
from components.core.ports import free_port
from components.deployment.service_process import LocalServer, start_server, wait_ready
from components.feedback.store import FeedbackStore, store_url
from components.serving.auth import service_token

log = logging.getLogger(__name__)
SUPERVISE_SECONDS = 1.0   # how often dead workers are looked for
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
    workers: list[LocalServer]
    env: dict[str, str]
    folder: Path
    startup_seconds: float
    postgres: PostgresServer | None = None
    restarts: int = 0
    _stopping: threading.Event = field(default_factory=threading.Event)

    def restart_dead_workers(self) -> int:
        """Start again, on its port, every worker whose process has ended; how many were."""
        dead = [i for i, w in enumerate(self.workers) if w.proc.poll() is not None]
        for i in dead:
            port = int(self.workers[i].url.rsplit(":", 1)[1])
            log.warning("worker %d (port %d) ended with %s: starting it again", i, port, self.workers[i].proc.returncode)
            self.workers[i] = start_server(self.env, self.folder / f"worker{i}.log", self.startup_seconds, port)
            self.restarts += 1
        return len(dead)

    def supervise(self) -> None:
        """Until stop(): keep every worker running (the caller's thread)."""
        while not self._stopping.wait(SUPERVISE_SECONDS):
            if self.balancer is not None and self.balancer.poll() is not None:
                raise InterestError(f"the balancer ended ({self.balancer.returncode}): see {self.folder / 'haproxy.log'}")
            self.restart_dead_workers()

    def request_stop(self) -> None:
        """supervise() returns at its next look."""
        self._stopping.set()

    def stop(self) -> None:
        self._stopping.set()
        if self.balancer is not None:
            self.balancer.terminate()
            self.balancer.wait(timeout=10)
        for worker in self.workers:
            worker.stop()
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


def start_cluster(params: Params, port: int | None = None, workers: int | None = None,
                  env: dict[str, str] | None = None, folder: Path | None = None) -> Cluster:
    """serving.workers (or `workers`) single-process workers behind HAProxy on `port` (default:
    serving.port; 0: a free one), started and ready; `env` is the workers' environment (default:
    this process's). One worker with no balancer wanted is start_server's job: here even one
    worker sits behind the balancer, so 1 and 2 compare."""
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
    try:
        FeedbackStore(url).close()                      # the schema migrated once, before the workers
        started = [start_server(env, folder / f"worker{i}.log", cfg.startup_seconds) for i in range(n)]
    except BaseException:
        if postgres is not None:
            postgres.stop()
        raise
    port = port if port is not None else cfg.port
    port = port or free_port()
    config = folder / "haproxy.cfg"
    config.write_text(haproxy_config(port, [int(w.url.rsplit(":", 1)[1]) for w in started], cfg.session_ttl_seconds))
    with open(folder / "haproxy.log", "a") as out:
        balancer = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    cluster = Cluster(f"http://127.0.0.1:{port}", balancer, started, env, folder, cfg.startup_seconds, postgres)
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
        bentoml = str(BIN / "bentoml")
        os.execv(bentoml, [bentoml, "serve", "bento.service:InterestService", "--port", str(port)])
    cluster = start_cluster(params, port)
    signal.signal(signal.SIGTERM, lambda *_: cluster.request_stop())
    try:
        cluster.supervise()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
