from pathlib import Path

import pytest
import yaml

from components.core.config.loader import derive_params, load_params
from components.core.config.overrides import assignment_overrides
from components.core.errors import ConfigError
from tests.conftest import ROOT, write_params


def test_project_params_load():
    params = load_params(ROOT / "params.yaml", environ={})
    assert params.data.dataset == "Beauty"
    assert params.path(Path("data")) == ROOT / "data"


def test_missing_key_is_named(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["split"]["seed"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"split\.seed: field required"):
        load_params(path, environ={})


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"split\.cold_fraction_typo: extra inputs"):
        write_params(tmp_path, split={"cold_fraction_typo": 0.1})   # a derived copy is checked as written


def test_env_override_is_typed(tmp_path):
    path = write_params(tmp_path)
    params = load_params(path, environ={"INTEREST__DATA__SAMPLE_USERS": "7", "INTEREST__DATA__MIRROR_DIR": "/m"})
    assert params.data.sample_users == 7
    assert params.data.mirror_dir == Path("/m")


def test_env_override_of_unknown_key_fails(tmp_path):
    with pytest.raises(ConfigError, match="data.nope"):
        load_params(write_params(tmp_path), environ={"INTEREST__DATA__NOPE": "1"})


def test_assignments_become_typed_nested_overrides():
    assert assignment_overrides(["split.cold_item_fraction=0", "coldstart.exposure_scales=[1, 2]",
                                 "baselines.item_knn.neighbours=50"]) == {
        "split": {"cold_item_fraction": 0}, "coldstart": {"exposure_scales": [1, 2]},
        "baselines": {"item_knn": {"neighbours": 50}}}
    with pytest.raises(ConfigError, match="section.key=value"):
        assignment_overrides(["cold_item_fraction=0"])


def test_derived_params_with_an_unknown_assignment_fail_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="no_such_key"):
        derive_params(ROOT / "params.yaml", tmp_path, assignment_overrides(["split.no_such_key=1"]))


def test_frequency_filter_without_last_position_training_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="every_prefix"):
        write_params(tmp_path, model={"frequency_mix": 0.5}, train={"every_prefix": False})
