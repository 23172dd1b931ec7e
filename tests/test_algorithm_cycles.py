"""A non-default optimizer from params.yaml through both runners a user has: the Prefect flow (`rft cycle`) and
`dvc repro`, each rerunning only what the change of algorithm made stale."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from conftest import merge
from test_algorithms import TINY_SECTIONS

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.matrix, pytest.mark.filterwarnings("ignore")]


def run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def committed(built_project, module_tmp):
    """The built tiny project with its outputs recorded in dvc.lock (as if `dvc repro` had made them)."""
    path = module_tmp("algos") / "proj"
    shutil.copytree(built_project[0], path)
    params = yaml.safe_load((path / "params.yaml").read_text())
    # Absolute MLflow store (the copy's own), and a gate that never promotes: the champion stays put.
    merge(params, {"tracking": {"uri": f"sqlite:///{path / 'mlruns.db'}"}, "promote": {"max_kl": 1e-6}})
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "commit", "-f", "-q"], path)
    assert out.returncode == 0, out.stderr
    return path


def _switch(path, name):
    params = yaml.safe_load((path / "params.yaml").read_text())
    merge(params, {"optimize": {"algorithm": name, name: TINY_SECTIONS[name]}})
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _ran(out) -> set:
    return {line.split("'")[1] for line in out.stdout.splitlines() if line.startswith("Running stage")}


# One non-default algorithm (grpo is the e2e tests' default): how the flow and DVC handle a change of algorithm is
# the same for every one (only optimize.${optimize.algorithm} is declared); each algorithm's training is checked in
# process by tests/test_algorithms.py, and dpo, ppo and online_dpo under accelerate by tests/test_launch.py.
@pytest.mark.parametrize("name", ["dpo"])
def test_algorithm_through_the_flow_and_dvc_repro(committed, name):
    path = committed
    _switch(path, name)
    # The flow trains with the new algorithm, and records what it ran in dvc.lock: nothing is left stale.
    flow = run(["rft", "cycle"], path)
    assert flow.returncode == 0, (flow.stdout + flow.stderr)[-3000:]
    first = json.loads((path / "reports/optimize/metrics.json").read_text())
    assert first["algorithm"] == name and "not promoted" in flow.stdout + flow.stderr
    assert run(["dvc", "status", "--json"], path).stdout.strip() in ("{}", "")
    lock = yaml.safe_load((path / "dvc.lock").read_text())
    assert f"optimize.{name}" in lock["stages"]["optimize"]["params"]["params.yaml"]
    # dvc repro after a change of the algorithm's own section: exactly optimize and evaluate rerun.
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["optimize"][name]["lr"] *= 2
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], path)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert _ran(out) == {"optimize", "evaluate"}
    report = json.loads((path / "reports/optimize/metrics.json").read_text())
    assert report["algorithm"] == name and report["registry_version"] > first["registry_version"]
