"""The stage registry (mst.stages): one list that every layer reads."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from jobs.rundir import SAFE_NAME
from mst.stages import NAMES, NEEDS_PRETRAIN, STAGES, eval_commands, get_stage, stages_with_shape


def test_the_registry_imports_without_torch_or_the_stage_code():
    code = "import sys, mst.stages, jobs.sweep, jobs.profiles; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_entry_point_takes_the_arguments_the_job_passes():
    for spec in STAGES.values():
        params = inspect.signature(spec.resolve()).parameters
        head = ["cfg", "pretrain_dir", "out_dir"] if spec.needs_pretrain else ["cfg", "out_dir"]
        assert list(params)[:len(head)] == head, spec.name
        for key in ("should_stop", "record_extra", "show_progress", *dict(spec.kwargs)):
            assert key in params, (spec.name, key)


def test_names_order_and_shapes():
    assert NAMES[0] == "pretrain" and all(SAFE_NAME.fullmatch(n) for n in NAMES)
    assert set(NEEDS_PRETRAIN) == {"knn", "linear_cls", "linear_dino", "attention"}
    assert stages_with_shape("pretrain") == ("pretrain",)
    assert set(stages_with_shape("eval")) == set(NAMES) - {"pretrain"}
    assert {c: [s.name for s in v] for c, v in eval_commands().items()} == {
        "knn": ["knn"], "linear": ["linear_cls", "linear_dino"], "supervised": ["supervised"],
        "attention": ["attention"]}
    with pytest.raises(ValueError, match="unknown stage 'knnn'; choose from pretrain, knn"):
        get_stage("knnn")


def test_the_sweep_and_profile_names_come_from_the_registry():
    from jobs.profiles import STAGES_WITH_PRETRAIN_SHAPE
    from jobs.sweep import NEEDS_PRETRAIN as SWEEP_NEEDS
    from jobs.sweep import STAGES as SWEEP_STAGES

    assert SWEEP_STAGES == NAMES and SWEEP_NEEDS == NEEDS_PRETRAIN
    assert STAGES_WITH_PRETRAIN_SHAPE == ("pretrain",)


def test_one_job_class_serves_every_stage_and_pickles_small(tmp_path):
    import pickle

    from jobs.config_io import load_config
    from jobs.stage_job import StageJob
    from mst.config import config_to_dict

    config = config_to_dict(load_config("tiny"))
    for name in NAMES:
        job = StageJob(name, runs_root=str(tmp_path), sweep="s", run_id="abc-r0", config=config, extra={})
        again = pickle.loads(pickle.dumps(job))
        assert type(again) is StageJob and again.stage == name
        assert again.out_dir == tmp_path / "s" / "abc-r0" / name
        assert len(pickle.dumps(job)) < 8000  # names and a config dict, never tensors
    with pytest.raises(ValueError, match="unknown stage 'linear_foo'"):
        StageJob("linear_foo", runs_root=str(tmp_path), sweep="s", run_id="abc-r0", config=config, extra={})


def test_the_synthetic_records_report_the_registry_metrics():
    from analysis.synthetic import METRICS

    for stage, make in METRICS.items():
        assert set(make(70.0)) == set(STAGES[stage].metric_names((10, 20, 100, 200))), stage


def test_no_module_but_the_registry_lists_stage_names():
    """A tuple, list, set or dict of two or more stage names outside mst/stages.py is a second stage list; read
    the registry instead (a sweep file's `stages:` is data, not such a list)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    lists = []
    for path in sorted([*(root / "mst").rglob("*.py"), *(root / "analysis").rglob("*.py")]):
        if path == root / "mst" / "stages.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                items = node.elts
            elif isinstance(node, ast.Dict):
                items = [key for key in node.keys if key is not None]
            else:
                continue
            named = [i.value for i in items if isinstance(i, ast.Constant) and i.value in STAGES]
            if len(named) >= 2:
                lists.append(f"{path.relative_to(root)}:{node.lineno} {named}")
    assert not lists, "stage lists outside the registry: " + "; ".join(lists)


def test_the_stage_sets_derive_from_the_registry():
    import mst.eval
    from analysis.synthetic import METRICS
    from mst.eval.baselines import STAGES as WITH_BASELINES
    from mst.export import RESULT_STAGES

    probes = tuple(n for n, s in STAGES.items() if s.frozen_probe)
    assert probes == WITH_BASELINES == RESULT_STAGES == ("knn", "linear_cls", "linear_dino")
    assert tuple(METRICS) == ("pretrain", *probes)
    # mst.eval's entry points are the registry's, each resolving to the function the registry calls
    eval_specs = [s for s in STAGES.values() if s.entry.startswith("mst.eval.")]
    assert set(mst.eval.__all__) == {s.entry.split(":")[1] for s in eval_specs} == {
        "run_knn", "run_linear", "run_supervised", "run_attention"}
    for spec in eval_specs:
        assert getattr(mst.eval, spec.entry.split(":")[1]) is spec.resolve()
