"""Airflow as a platform team runs it, on this machine: the metadata database on PostgreSQL, Redis
as the Celery broker, and the API server, scheduler, DAG processor, triggerer and Celery workers
as separate processes, each with its own log under the cluster's folder.

Everything listens on 127.0.0.1; workers and the triggerer skip their log servers (Airflow binds
those to every interface, with no setting for the host): on one machine the API server reads
task logs from the shared log folder. The same environment variables, pointed at a managed
database, broker and shared folder, run it across machines (docs/scale-out.md).
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from components.core.config.schema import AirflowClusterParams
from components.core.errors import InterestError
from components.core.ports import free_port
from components.core.paths import BIN
from components.deployment.postgres import PostgresServer, pg_bin, start_postgres
from components.deployment.process_group import stop_process_group

log = logging.getLogger(__name__)

SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
DATABASE = "airflow"
STOP_GRACE_SECONDS = 20   # a component's SIGTERM to exit before SIGKILL (a worker finishing its task's shutdown)


@dataclass
class AirflowCluster:
    root: Path               # home/ (AIRFLOW_HOME), postgres/, redis/, logs/<process>.log, pids.json
    env: dict[str, str]      # what every Airflow process of the cluster runs with
    postgres: PostgresServer
    api_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def database_url(self) -> str:
        """The metadata database, as SQLAlchemy takes it (psycopg 3)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.postgres.port}/{DATABASE}"

    def airflow(self, *args: str, timeout: float = 300) -> str:
        """An `airflow` CLI call with the cluster's settings; its output (raises with it on failure)."""
        done = subprocess.run([str(BIN / "airflow"), *args], env=self.env, cwd=self.root, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            raise InterestError(f"`airflow {' '.join(args)}` failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
        return done.stdout

    def start_worker(self, name: str, concurrency: int) -> subprocess.Popen:
        """A Celery worker (another one may run beside it: `name` tells them apart in logs and task instances)."""
        return _start(self.root, f"worker-{name}", ["celery", "worker", "--concurrency", str(concurrency),
                                                    "--celery-hostname", f"{name}@%h", "--skip-serve-logs"], self.env)

    def stop(self) -> None:
        stop_airflow_cluster(self.root)


def _start(root: Path, name: str, args: list[str], env: dict[str, str], program: str | None = None) -> subprocess.Popen:
    """One long-running process in its own process group, its output in logs/<name>.log, its pid kept."""
    (root / "logs").mkdir(parents=True, exist_ok=True)
    with open(root / "logs" / f"{name}.log", "ab") as out:
        process = subprocess.Popen([program or str(BIN / "airflow"), *args], env=env, cwd=root, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    pids = root / "pids.json"
    kept = json.loads(pids.read_text()) if pids.is_file() else {}
    pids.write_text(json.dumps({**kept, name: process.pid}))
    return process


def _secrets(root: Path) -> dict[str, str]:
    """The API server's and its token signer's secrets, shared by every process, made once."""
    kept = root / "secrets.json"
    if not kept.is_file():
        kept.write_text(json.dumps({"AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                                    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32)}))
        kept.chmod(0o600)
    return json.loads(kept.read_text())


def cluster_env(root: Path, project_dir: Path, dags_dir: Path, pg_port: int, redis_port: int, api_port: int,
                cfg: AirflowClusterParams) -> dict[str, str]:
    database = f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/{DATABASE}"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return {
        **inherited, **_secrets(root),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(cfg.worker_concurrency),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(cfg.task_heartbeat_timeout_seconds),
        "INTEREST_PROJECT_DIR": str(project_dir),
    }


def _start_redis(root: Path) -> int:
    """Redis on a free port of 127.0.0.1, its append-only file in root/redis (a queued task survives a restart)."""
    redis = shutil.which("redis-server")
    if redis is None:
        raise InterestError("no redis-server: `make setup` installs Debian's redis-server (or point "
                            "AIRFLOW__CELERY__BROKER_URL at a running broker)")
    port = free_port()
    (root / "redis").mkdir(parents=True, exist_ok=True)
    _start(root, "redis", ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(root / "redis"),
                           "--appendonly", "yes", "--save", ""], dict(os.environ), program=redis)
    return port


def _create_database(postgres: PostgresServer) -> None:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres", autocommit=True) as db:
        if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            db.execute(f"CREATE DATABASE {DATABASE}")


def start_airflow_cluster(cfg: AirflowClusterParams, root: Path, project_dir: Path, dags_dir: Path,
                          api_port: int | None = None, workers: int = 1) -> AirflowCluster:
    """Start the whole cluster in `root` (kept across restarts: the database and the broker's queue
    stay) and return once the API server reports every component healthy."""
    root = Path(root).resolve()
    if (root / "pids.json").is_file():
        raise InterestError(f"a cluster in {root} is running (or was not stopped): `make airflow-cluster-stop` first")
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    postgres = start_postgres(root / "postgres")
    try:
        _create_database(postgres)
        redis_port = _start_redis(root)
        api_port = api_port or cfg.api_port
        cluster = AirflowCluster(root, cluster_env(root, Path(project_dir).resolve(), Path(dags_dir).resolve(),
                                                  postgres.port, redis_port, api_port, cfg), postgres, api_port)
        log.info("airflow db migrate on PostgreSQL 127.0.0.1:%d ...", postgres.port)
        cluster.airflow("db", "migrate", timeout=cfg.start_seconds)
        for service in SERVICES:
            _start(root, service, [service, *(["--skip-serve-logs"] if service == "triggerer" else [])], cluster.env)
        for n in range(workers):
            cluster.start_worker(f"worker{n + 1}", cfg.worker_concurrency)
        _wait_healthy(cluster, started + cfg.start_seconds)
        _write_env_file(cluster)
    except BaseException:
        stop_airflow_cluster(root)
        raise
    log.info("Airflow cluster up in %.0f s: %s (logs in %s)", time.monotonic() - started, cluster.url, root / "logs")
    return cluster


def _write_env_file(cluster: AirflowCluster) -> None:
    """root/env.sh: `source` it to point the `airflow` CLI of another shell at this cluster."""
    exported = {k: v for k, v in cluster.env.items() if k.startswith("AIRFLOW") or k == "INTEREST_PROJECT_DIR"}
    env_file = cluster.root / "env.sh"
    env_file.write_text("".join(f"export {k}='{v}'\n" for k, v in sorted(exported.items())))
    env_file.chmod(0o600)


def _wait_healthy(cluster: AirflowCluster, deadline: float) -> None:
    health: dict = {}
    while time.monotonic() < deadline:
        try:
            health = httpx.get(f"{cluster.url}/api/v2/monitor/health", timeout=5).json()
            if all((health.get(part) or {}).get("status") == "healthy"
                   for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(1)
    raise InterestError(f"the Airflow cluster was not healthy in time (airflow_cluster.start_seconds): {health}; "
                        f"see the logs in {cluster.root / 'logs'}")


def stop_airflow_cluster(root: Path) -> list[str]:
    """Stop exactly the processes the cluster in `root` started (workers first), then PostgreSQL."""
    root = Path(root)
    pids_file = root / "pids.json"
    pids = json.loads(pids_file.read_text()) if pids_file.is_file() else {}
    order = sorted(pids, key=lambda name: (not name.startswith("worker"), name == "redis"))
    for name in order:
        stop_process_group(pids[name], STOP_GRACE_SECONDS)
    pids_file.unlink(missing_ok=True)
    if (root / "postgres" / "data" / "postmaster.pid").is_file():
        bin_dir = pg_bin()
        if bin_dir is not None:
            PostgresServer(root / "postgres", 0, bin_dir).stop()
    return order
