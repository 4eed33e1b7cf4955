"""The service as a real process for the tests: components.deployment.service_process in a clean environment."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from components.core.config.schema import Params
from components.core.errors import InterestError
from components.registry.store import store_home
from components.deployment.service_process import LocalServer, start_server
from tests.e2e.helpers import clean_env

STARTUP_S = 180


def sample_service_env(served_sample: Params, tmp_path: Path, token: str) -> dict[str, str]:
    """The service on the registered sample, with its own feedback store and added products in tmp_path."""
    return {"INTEREST_PARAMS": str(served_sample.root / "params.yaml"), "BENTOML_HOME": str(store_home(served_sample)),
            "INTEREST__SERVING__STORE_URL": f"sqlite:///{tmp_path / 'feedback.db'}",
            "INTEREST__SERVING__ADDED_ITEMS_DIR": str(tmp_path / "added"), "INTEREST_SERVICE_TOKEN": token}


def start_service(env: dict[str, str], log: Path) -> LocalServer:
    try:
        return start_server(clean_env(BENTOML_DO_NOT_TRACK="True", **env), log, STARTUP_S)
    except InterestError as exc:
        pytest.fail(str(exc))


def post(url: str, endpoint: str, body: dict, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{url}/{endpoint}", json=body, headers=headers, timeout=60)
