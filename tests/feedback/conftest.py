from __future__ import annotations

import os

import pytest

from tests.feedback.postgres import pg_bin, postgres_server


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    bin_dir = pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (pg_ctl) on this machine: `make setup` installs the "
                    "Debian package `postgresql`")
    root = tmp_path_factory.mktemp("postgres")
    if os.geteuid() == 0:   # the postgres user must reach its folder
        for parent in [root, *root.parents]:
            if parent == parent.parent:
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    yield from postgres_server(bin_dir, root)
