"""A PostgreSQL server of the project's own, from the machine's binaries, in a folder it keeps:
the feedback store several service workers share (`interest serve` with serving.workers > 1),
and the tests' real database. initdb on first use, then pg_ctl start and stop; the data stays
in the folder across restarts. PostgreSQL refuses to run as root, so a root caller runs it as
the `postgres` user (Debian's package makes it)."""
from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from components.core.errors import InterestError
from components.core.ports import free_port

log = logging.getLogger(__name__)
PG_BIN_GLOBS = ("/usr/lib/postgresql/*/bin",)   # Debian's `postgresql` package keeps them off PATH


def pg_bin() -> Path | None:
    """The folder of pg_ctl and initdb, or None when the server is not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(d for pattern in PG_BIN_GLOBS for d in glob.glob(pattern) if Path(d, "pg_ctl").exists())
    return Path(dirs[-1]) if dirs else None


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _reachable_by_owner(folder: Path) -> None:
    """As root, the postgres user must own the folder and pass through every parent."""
    if os.geteuid() != 0:
        return
    for parent in folder.parents:
        if parent != parent.parent:
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    shutil.chown(folder, "postgres")


@dataclass
class PostgresServer:
    root: Path       # data/, server.log
    port: int
    bin_dir: Path

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its `postgres` database (trust authentication, localhost only)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run(_as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "stop"]),
                       capture_output=True)


def start_postgres(root: Path, port: int | None = None) -> PostgresServer:
    """Start the server kept in `root` (made with initdb the first time) on `port` (default: a
    free one), listening on 127.0.0.1 only; returns once it accepts connections."""
    bin_dir = pg_bin()
    if bin_dir is None:
        raise InterestError("no PostgreSQL server binaries (pg_ctl): `make setup` installs Debian's `postgresql`, "
                            "or point serving.store_url at a running server")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    _reachable_by_owner(root)
    data = root / "data"
    if not (data / "PG_VERSION").is_file():
        subprocess.run(_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]),
                       check=True, capture_output=True)
    port = port or free_port()
    started = subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "server.log"),
                                        # TCP on 127.0.0.1 alone: a socket path under a deep folder
                                        # passes the 107 bytes Unix sockets allow
                                        "-o", f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
                                        "start"]),
                             capture_output=True, text=True)
    if started.returncode != 0:
        tail = (root / "server.log").read_text()[-2000:] if (root / "server.log").is_file() else ""
        raise InterestError(f"PostgreSQL in {root} did not start: {started.stderr.strip()}\n{tail}")
    log.info("PostgreSQL %s on 127.0.0.1:%d (data in %s)", bin_dir.parent.name, port, data)
    return PostgresServer(root, port, bin_dir)
