from __future__ import annotations

import pytest

from components.deployment.postgres import pg_bin, start_postgres


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A real PostgreSQL server in a fresh folder for the session's tests."""
    if pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (pg_ctl) on this machine: `make setup` installs the "
                    "Debian package `postgresql`")
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server.url
    finally:
        server.stop()
