"""Shared fixtures: a throwaway copy of the project with tiny params, in its own git + DVC repo."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tasks.runtime import setup_process

# The tests are an entry point: offline, no telemetry, threads, before anything loads torch (tasks/runtime.py).
setup_process()

ROOT = Path(__file__).resolve().parents[1]


def _split_the_cores_between_workers() -> None:
    """Under pytest-xdist (``make test`` runs two workers): each worker and the processes it starts get an equal
    share of the cores (``RFT_THREADS``, read before torch loads), so two workers' torch pools never fight over
    one core, and each worker gets a Prefect home of its own (two temporary servers on one SQLite file would
    lock each other out). A user's own RFT_THREADS or PREFECT_HOME is kept."""
    import importlib.util
    import tempfile

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    spec = importlib.util.spec_from_file_location("_rft_threads", ROOT / "tasks" / "threads.py")
    threads = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(threads)                   # tasks/threads.py alone: importing tasks sizes torch's pool
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    os.environ.setdefault(threads.ENV, str(max(1, threads.usable_cores() // workers)))
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix=f"rft-tests-prefect-{worker}-"))


_split_the_cores_between_workers()

SHARED_HH = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless" / "train-1200.jsonl"

# Small enough for a stage to run in seconds on a 2-core CPU, big enough to exercise every code path.
TINY = {
    "corpus": {"n_texts": 300, "n_demos": 160, "n_prompts": 40},
    "bootstrap": {"vocab_size": 400, "n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 96,
                  "block_size": 32, "pretrain_steps": 15, "sft_steps": 10, "batch_size": 8, "log_every": 5},
    "generate": {"k": 3, "batch_size": 16, "max_new_tokens": 16, "sample_table_rows": 5},
    "reward": {"max_length": 64, "epochs": 1.0, "batch_size": 8, "warmup_steps": 0, "log_every": 1},
    # probe_budget null: a probe at every due step, as tests read the curve's steps (a share of the training
    # time would make them depend on the machine's speed)
    "optimize": {"probe_prompts": 4, "probe_max_new_tokens": 12, "log_every": 1, "probe_budget": None,
                 "grpo": {"max_steps": 2, "batch_size": 8, "num_generations": 4, "max_completion_length": 12}},
    "evaluate": {"samples_per_prompt": 1, "max_new_tokens": 12, "n_boot": 200},
    # git_commit off: a test that wants an iteration's commits turns it on (tests/test_lineage.py)
    "promote": {"dvc_push": True, "git_commit": False},
}


def merge(base: dict, values: dict) -> dict:
    """``base`` updated with ``values``, nested mappings merged key by key (a sub-section keeps its other keys)."""
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def tiny_params(overrides: dict | None = None) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in {**TINY, **(overrides or {})}.items():
        params.setdefault(section, {}).update(merge(dict(params.get(section) or {}), values))
    return params


def docs_snippet(doc: str, marker: str) -> str:
    """The first ```python block of ``docs/<doc>`` that contains ``marker``: what a reader copies."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / doc).read_text(), re.S)
    return next(b for b in blocks if marker in b)


def run_snippet(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a docs snippet as a reader would, in the project's folder."""
    import sys

    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600)


def make_project(dest: Path, overrides: dict | None = None) -> Path:
    """Copy the pipeline's code and config to ``dest``, with tiny params, as its own git + DVC repo."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("tasks", "flows", "metrics"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "data/incoming", dest / "data/incoming")
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    (dest / "params.yaml").write_text(yaml.safe_dump(tiny_params(overrides), sort_keys=False))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=dest, check=True, env=env)
    shutil.copy(ROOT / ".dvc" / "config", dest / ".dvc" / "config")     # the project's remote and settings
    shutil.copy(ROOT / ".dvc" / "plots.html", dest / ".dvc" / "plots.html")   # `dvc plots show`'s page template
    shutil.copy(ROOT / ".dvcignore", dest / ".dvcignore")
    return dest


@pytest.fixture
def project(tmp_path, monkeypatch):
    path = make_project(tmp_path / "proj")
    monkeypatch.chdir(path)
    return path


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory):
    """``tmp_path_factory.mktemp`` for a module's fixtures, whose folders go when the module ends with no test
    failed (as ``tmp_path_retention_policy = "failed"`` does for each test's own ``tmp_path``): a module's cycles
    and copied projects weigh hundreds of MB each, and the suite's would fill a small disk by its end."""
    made, failed = [], request.session.testsfailed

    def mktemp(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    if request.session.testsfailed == failed:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def built_project(tmp_path_factory):
    """A tiny project with every stage of the first half run once, in order (shared, read-only)."""
    from tasks.config import parse_params
    from tasks.manifest import STAGES, stage_view
    from tasks.stages import REGISTRY
    from tasks.stages.common import StageContext

    path = make_project(tmp_path_factory.mktemp("built") / "proj")
    old = os.getcwd()
    os.chdir(path)
    metrics, reads = {}, {}
    try:
        params = parse_params(yaml.safe_load((path / "params.yaml").read_text()))
        for name in STAGES:
            reads[name] = set()
            # Every read recorded, none refused: the audit's test says which reads no declaration covers.
            metrics[name] = REGISTRY[name](StageContext(stage_view(params, name, log=reads[name], strict=False)))
    finally:
        os.chdir(old)
    return path, metrics, reads


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio server on a free loopback port (tests/label_studio_server.py)."""
    from label_studio_server import start, stop

    proc, server = start(tmp_path_factory.mktemp("label-studio") / "data")
    yield server
    stop(proc)


@pytest.fixture
def studio_cfg(label_studio, monkeypatch):
    """The label_studio section for the test server, with a project prefix of this test's own."""
    import time

    from tasks.config import parse_params

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    prefix = f"t{time.monotonic_ns() % 10**9}"
    return parse_params({"label_studio": {"url": label_studio.url, "project_prefix": prefix}}).label_studio


# Each algorithm's section shrunk to a few steps on the tiny project.
TINY_SECTIONS = {
    "grpo": {},                                         # conftest's TINY already shrinks grpo
    "rloo": {"max_steps": 2, "batch_size": 8, "num_generations": 4, "max_completion_length": 12},
    "ppo": {"updates": 2, "rollout_batch_size": 8, "ppo_epochs": 2, "num_minibatches": 2, "max_new_tokens": 12,
            "lr": 1e-3},
    "dpo": {"epochs": 1.0, "batch_size": 8},
    "kto": {"epochs": 1.0, "batch_size": 8},
    "best_of_n": {"n": 3, "max_new_tokens": 12, "epochs": 1.0, "batch_size": 8},
    "online_dpo": {"rounds": 2, "prompts_per_round": 6, "max_new_tokens": 12, "batch_size": 4},
    "constitutional": {"prompts": 6, "max_new_tokens": 12, "epochs": 1.0, "batch_size": 4, "rl_prompts": 6},
}


IMPLY_SLOW = ("e2e", "servers", "matrix")


# Modules that share the session's Label Studio server: under pytest-xdist they run on one worker, which starts
# (and installs) the server once.
LABEL_STUDIO_MODULES = ("test_label_studio", "test_label_studio_ui", "test_people_cycle")
# The longest groups first, as `make test --durations` measured them: under two workers the order decides only how
# evenly the workers end, never a result.
LONGEST_FIRST = ("test_infra", "test_lineage", "test_user_task", "test_shard", "label_studio", "test_crash",
                 "test_e2e", "test_launch", "test_algorithm_cycles", "test_bad_input", "test_resume")


def _group(nodeid: str) -> str:
    """The module a test belongs to, with the Label Studio modules as one."""
    stem = Path(nodeid.split("::", 1)[0]).stem
    return "label_studio" if stem in LABEL_STUDIO_MODULES else stem


def pytest_report_header(config):
    """The free disk where the tests write: a full disk fails tests by the hundred, each as an OSError of its own."""
    import tempfile

    where = tempfile.gettempdir()
    free = shutil.disk_usage(where).free / 2**30
    return f"free disk under {where}: {free:.1f} GiB (make test's peak use: 3.3 GiB, docs/testing.md)"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, with the Label Studio modules as one file: each module runs on one worker (its
    module-scoped pipeline is built once), and the session's Label Studio server starts on one worker only.
    (pytest-xdist's own ``loadgroup`` marks cannot say this under pytest 9.2, whose node ids it can no longer
    suffix.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return ModuleGroups(config, log)


def pytest_collection_modifyitems(config, items):
    """``e2e``, ``servers`` and ``matrix`` tests are ``slow`` too, so ``pytest -m "not slow"`` stays the unit loop
    and ``-m e2e`` (or ``servers``, ``matrix``) picks one kind of the slow tests. The longest groups run first,
    so that under pytest-xdist the long ones start early and the unit tests fill the end."""
    for item in items:
        if any(item.get_closest_marker(name) for name in IMPLY_SLOW) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
    first = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: first.get(_group(item.nodeid), len(first)))   # stable: a module keeps its order
