"""The stage manifest against dvc.yaml, and against the params keys each stage really reads."""

import subprocess

import pytest
import yaml
from conftest import ROOT

from tasks.manifest import BY_NAME, HOUSEKEEPING, MANIFEST, STAGES, declared_params, dvc_stage


def test_dvc_yaml_is_the_manifest():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(stages) == STAGES
    for s in MANIFEST:
        assert stages[s.name] == dvc_stage(s), f"dvc.yaml stage {s.name} differs from tasks/manifest.py"


def test_rft_dvc_yaml_check_passes_and_fails_on_a_hand_edit(tmp_path):
    # CI runs the check through this test: dvc.yaml is the text `rft dvc-yaml` prints, byte for byte.
    import shutil

    ok = subprocess.run(["rft", "dvc-yaml", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    printed = subprocess.run(["rft", "dvc-yaml"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert printed == (ROOT / "dvc.yaml").read_text()
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    edited = (tmp_path / "dvc.yaml").read_text().replace("    - data/corpus\n", "", 1)
    (tmp_path / "dvc.yaml").write_text(edited)
    bad = subprocess.run(["rft", "dvc-yaml", "--check"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 1 and "dvc.yaml: line " in bad.stderr and "rft dvc-yaml > dvc.yaml" in bad.stderr


def test_every_stage_has_a_module_of_its_name_whose_run_the_registry_holds():
    import importlib

    from tasks.stages import REGISTRY

    assert list(REGISTRY) == STAGES
    for name in STAGES:
        module = importlib.import_module(f"tasks.stages.{name}")
        assert REGISTRY[name] is module.run, name
        assert f"tasks/stages/{name}.py" in BY_NAME[name].deps, f"dvc.yaml: {name} must depend on its own module"


def test_declared_paths_exist_or_are_produced():
    # Every dependency is a file of the repository or the output of an earlier stage (or lies inside an output
    # folder of one: evaluate reads data/corpus/regression/, which the corpus stage writes within data/corpus/).
    produced = set()
    for s in MANIFEST:
        for dep in s.deps:
            if dep.startswith("${"):
                continue
            inside = any(dep.startswith(out.rstrip("/") + "/") for out in produced)
            assert (ROOT / dep).exists() or dep in produced or inside, \
                f"{s.name} depends on {dep}, which nothing provides"
        produced |= set(s.outs) | set(s.reports) | set(s.metrics) | set(s.plots)


def covered(key: str, declared: tuple) -> bool:
    """A read of ``section.key`` is declared by ``section`` or by ``section.key`` itself."""
    return any(key == d or key.startswith(d + ".") for d in declared)


@pytest.mark.slow
def test_every_stage_reads_only_the_params_it_declares(built_project):
    from tasks.manifest import load_params

    path, _, reads = built_project
    params = load_params(path / "params.yaml")
    for name, keys in reads.items():
        # tracking (where MLflow lives) is infrastructure, not an input: it never makes a stage stale.
        declared = tuple(declared_params(name, params))
        # So is scale (where shards run): the sharded output is the same bytes (tests/test_shard.py). Both, and
        # the champion's folder that every stage's swap recovery reads, are the housekeeping keys.
        assert set(HOUSEKEEPING) == {"tracking", "scale", "policy.champion_dir"}
        undeclared = sorted(k for k in keys if not covered(k, (*declared, *HOUSEKEEPING)))
        assert not undeclared, f"stage {name} reads {undeclared} but dvc.yaml declares only {declared}"


def test_the_audit_catches_an_undeclared_read():
    # The checker itself can fail: a stage that reads optimize.seed while declaring only generate.
    from tasks.config import parse_params
    from tasks.params_view import recording

    log = set()
    p = recording(parse_params({}), log)
    assert p.optimize.seed == 0 and p.optimize.dpo.beta > 0 and p.judges
    assert log == {"optimize.seed", "optimize.dpo", "judges"}
    assert not covered("optimize.seed", ("generate", "reward.max_length"))
    assert not covered("optimize.dpo", ("optimize.grpo",))
    assert covered("reward.max_length", ("reward.max_length",)) and covered("label.seed", ("label",))


def test_a_stage_reads_its_declared_keys_and_fails_on_any_other(monkeypatch):
    # run_stage hands the stage a view of params built from its manifest entry: in production as in the tests,
    # a read of a key the entry does not declare stops the stage, naming the stage and the key.
    import pickle

    from tasks import stages
    from tasks.config import parse_params
    from tasks.params_view import UndeclaredParam
    from tasks.stages.common import StageContext

    seen = {}

    def reads(ctx):
        p = ctx.params
        seen.update(k=p.generate.k, dir=p.policy.champion_dir, uri=p.tracking.uri)   # declared, housekeeping
        seen["copy"] = pickle.loads(pickle.dumps(p.policy)).champion_dir              # a shard worker's copy
        with pytest.raises(UndeclaredParam, match="stage generate read policy.base_model"):
            pickle.loads(pickle.dumps(p.policy)).base_model                             # ... is as strict
        return p.optimize.seed                                                          # declared by optimize only

    monkeypatch.setitem(stages.REGISTRY, "generate", reads)
    with pytest.raises(UndeclaredParam, match=r"stage generate read optimize\.seed, which its entry in "
                                              r"tasks/manifest\.py \(and so dvc\.yaml\) does not declare"):
        stages.run_stage("generate", StageContext(parse_params({})))
    assert seen == {"k": 4, "dir": "models/champion", "uri": "sqlite:///mlruns.db", "copy": "models/champion"}


@pytest.mark.parametrize("select", ["last", "best"])
def test_validate_prompts_declares_which_judges_every_algorithm_asks(select):
    # validate_prompts checks the reference fields of the judges in use (config.prompt_fields), so it declares
    # the keys that pick those judges and no whole section: under each algorithm it reads only them, and it names
    # each algorithm's own judge (online DPO's pair judge, Constitutional AI's rl_judge) among the judges in use.
    from tasks.algorithms import REGISTRY
    from tasks.config import judges_in_use, parse_params, prompt_fields
    from tasks.manifest import stage_view

    assert not {"label", "optimize", "evaluate"} & set(declared_params("validate_prompts", parse_params({})))
    raw = {"judges": {"embedding": {"kind": "embedding"}, "reward": {"kind": "reward_model"},
                      "exact": {"kind": "string_check", "reference": "answer"}}}
    for name, algo in REGISTRY.items():
        own = {k: "exact" for k in algo.judge_keys if k != "critic"}       # the critic writes text: an llm judge
        chosen = {"select": "best", "select_judge": "exact"} if select == "best" else {}
        p = parse_params({**raw, "optimize": {"algorithm": name, **chosen, name: own}})
        view = stage_view(p, "validate_prompts")       # any undeclared read raises UndeclaredParam
        asked = bool(own) or select == "best"
        assert ("exact" in judges_in_use(view)) == asked, name
        assert prompt_fields(view) == ({"answer": {"text": True, "judges": ["exact"]}} if asked else {}), name


def test_generated_pages_stay_out_of_git():
    # Data Docs (static files and fonts) and `dvc plots show`'s page are rebuilt, never versioned: a `git add .`
    # after a cycle must not pick them up, and an iteration's commit never names them.
    from tasks.manifest import git_tracked_outputs

    pages = [f"{d}/static/fonts/a.woff" for s in MANIFEST for d in s.docs] + ["dvc_plots/index.html"]
    out = subprocess.run(["git", "check-ignore", "--no-index", *pages], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == pages, out.stdout + out.stderr
    assert not [p for p in git_tracked_outputs() if p.startswith("reports/data_docs")]
