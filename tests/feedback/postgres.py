"""A real PostgreSQL server for the tests, started from the machine's binaries in a private folder
(initdb + pg_ctl; as the `postgres` user when the tests run as root, which PostgreSQL refuses)."""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Iterator

PG_BIN_GLOBS = ("/usr/lib/postgresql/*/bin",)   # Debian's `postgresql` package keeps them off PATH


def pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(d for pattern in PG_BIN_GLOBS for d in glob.glob(pattern) if Path(d, "pg_ctl").exists())
    return Path(dirs[-1]) if dirs else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def postgres_server(bin_dir: Path, root: Path) -> Iterator[str]:
    """Yields a SQLAlchemy URL of a fresh server on a free localhost port; stops it afterwards."""
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    subprocess.run(_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                   check=True, capture_output=True)
    subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "server.log"),
                              "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), capture_output=True)
