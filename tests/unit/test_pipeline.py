"""The one step list, and everything made from or checked against it: dvc.yaml's stages, their
deps (the import closure of each step) and the CLI's commands."""
from __future__ import annotations

import inspect
import importlib

import pytest
from typer.testing import CliRunner

from components.cli import app
from components.core.config.loader import load_params
from components.core.config.reads import recording_reads
from components.pipeline_deps import generated, stale_stages
from components.pipeline import ANALYSES, ANALYSIS_NAMES, STEP_NAMES, STEPS, get_step, select_steps
from tests.conftest import ROOT
from tests.dvc_stages import missing_deps, stages, uncovered_reads


def test_dvc_stages_are_the_steps_in_order_then_the_analyses():
    assert tuple(stages()) == STEP_NAMES + ANALYSIS_NAMES
    for step in STEPS + ANALYSES:
        assert stages()[step.name]["cmd"] == f"interest {step.command}"


@pytest.mark.parametrize("step", STEPS + ANALYSES, ids=STEP_NAMES + ANALYSIS_NAMES)
def test_stage_deps_cover_every_module_its_step_imports(step):
    assert missing_deps(stages()[step.name], step.module) == [], (
        f"dvc.yaml: stage {step.name} runs these files but does not depend on them")


def test_dvc_yaml_module_deps_are_the_generated_ones():
    """`interest dvc-deps` writes them: each stage's modules are its step's import closure."""
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    assert stale_stages(text) == [] and generated(text) == text, "run `interest dvc-deps`"


def test_a_dropped_module_dep_is_written_back_and_the_other_deps_stay():
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    dropped = text.replace("      - components/evaluation/metrics.py\n", "", 1)
    assert stale_stages(dropped) != [] and generated(dropped) == text
    assert "${data.mirror_dir}  # whole mirror" in generated(dropped)


def test_a_missing_dep_is_named():
    stage = {**stages()["train"], "deps": [d for d in stages()["train"]["deps"] if d != "components/evaluation/metrics.py"]}
    assert missing_deps(stage, get_step("train").module) == ["components/evaluation/metrics.py"]


def test_every_step_is_run_params_to_summary():
    for step in STEPS + ANALYSES:
        run = importlib.import_module(step.module).run
        assert list(inspect.signature(run).parameters) == ["params"], step.module


def test_cli_has_a_command_per_step_with_its_help():
    runner = CliRunner()
    listing = runner.invoke(app, ["--help"]).output
    for step in STEPS + ANALYSES:
        assert step.command in listing
        helped = runner.invoke(app, [step.command, "--help"])
        assert helped.exit_code == 0 and step.summary.split()[0] in helped.output
    steps = runner.invoke(app, ["steps"])
    assert steps.exit_code == 0 and all(s.module in steps.output for s in STEPS)


def test_steps_are_selected_in_pipeline_order():
    assert [s.name for s in select_steps(to="embed")] == ["ingest", "validate", "split", "embed"]
    assert [s.name for s in select_steps(["evaluate-cold", "train"])] == ["train", "evaluate_cold"]
    with pytest.raises(KeyError, match="no pipeline step 'trian'"):
        select_steps(["trian"])
    assert CliRunner().invoke(app, ["run", "trian"]).exit_code != 0


def test_params_reads_are_recorded_down_to_the_key():
    params = load_params(ROOT / "params.yaml", environ={})
    with recording_reads() as reads:
        params.train.lr, params.baselines.item_knn.neighbours   # noqa: B018 - reading is the point
        params.embed.model_dump()
    assert {"train.lr", "baselines.item_knn.neighbours", "embed.encoder", "embed.fields"} <= reads
    assert "train.epochs" not in reads and "train" not in reads
    params.train.epochs   # noqa: B018 - outside the block: not recorded
    assert "train.epochs" not in reads


def test_an_unlisted_param_read_is_named():
    stage = {"params": ["coldstart.epochs", "baselines"]}
    reads = ["coldstart.epochs", "baselines.text.recency_decay", "coldstart.max_warm_drop", "train.model_file"]
    assert uncovered_reads(stage, reads) == ["coldstart.max_warm_drop"]   # file locations are deps/outs
