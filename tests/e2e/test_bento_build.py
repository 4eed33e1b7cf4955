"""`bentoml build -f bento/bentofile.yaml .` makes a bento with the whole service: its code, the
feedback store's migrations, params.yaml and every endpoint in its OpenAPI document; the bento's
requirements are the project's pins."""
from __future__ import annotations

import json
import re

import pytest

from tests.e2e.helpers import BIN, ROOT, clean_env, run

pytestmark = pytest.mark.e2e
ENDPOINTS = {"/recommend", "/similar_items", "/feedback", "/add_items", "/model_info"}


def pins(path) -> dict[str, str]:
    found = (re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line) for line in path.read_text().splitlines())
    return {m[1].lower(): m[2] for m in found if m}


def test_the_bentos_requirements_are_the_projects_pins():
    constraints = pins(ROOT / "constraints.txt")
    for name, version in pins(ROOT / "bento" / "requirements.txt").items():
        assert constraints.get(name) == version, f"bento/requirements.txt pins {name}=={version}"


def test_bentoml_build_packages_the_service(tmp_path):
    home = tmp_path / "bentoml"
    run([str(BIN / "bentoml"), "build", "-f", "bento/bentofile.yaml", "."], ROOT,
        clean_env(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="True"), timeout=600)
    [bento] = [p for p in (home / "bentos" / "interest").iterdir() if p.name != "latest"]
    src = bento / "src"
    assert (src / "bento" / "service.py").is_file() and (src / "params.yaml").is_file()
    assert list((src / "components" / "feedback" / "migrations" / "versions").glob("0001_*.py"))
    assert not list(src.rglob("test_*.py"))
    schema = json.loads((bento / "apis" / "schema.json").read_text())
    assert ENDPOINTS <= {route["route"] for route in schema["routes"]}
