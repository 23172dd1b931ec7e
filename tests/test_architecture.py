"""The layers of docs/architecture.md hold: import-linter's contracts (pyproject.toml) pass, a violation breaks
them, and the project's own modules are imported at the top of each file, but for the few listed here."""

import ast
import os
import shutil
import subprocess
import sys

from conftest import ROOT

# Function-local imports of project modules, each with its reason (docs/architecture.md lists the same).
LAZY_IMPORTS = {
    ("tasks.cli", "flows.cycle"): "Prefect takes about 1 s to import: only `rft cycle` needs the flow, not each "
                                  "`rft stage` that DVC runs",
    ("tasks.cli", "flows.retrain"): "the same, for `rft retrain` and `rft deploy`",
    ("tasks.judges", "tasks.judges.people"): "the people judge runs its comparisons through the Label Studio "
                                             "labeler's project code, which builds judges itself",
    ("tasks.algorithms.ppo", "tasks.algorithms.ppo_math"): "ppo_math is torch math and imports torch at its top; "
                                                           "config imports the algorithms, and `rft params` "
                                                           "needs no torch",
}


def lint_imports(cwd, env=None):
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "lint-imports"), "--no-cache", "--no-logo"],
                          cwd=cwd, env=env, capture_output=True, text=True)


def test_the_import_contracts_hold():
    out = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 3 kept, 0 broken." in out.stdout


def test_an_import_up_a_layer_breaks_the_contract(tmp_path):
    # The checker can fail: a copy of the project whose config imports the stages (a lower layer reaching up,
    # the cycle this layout removed) is refused, naming the import.
    for name in ("tasks", "flows"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "tasks" / "config.py", "a") as f:
        f.write("\nfrom tasks.stages import run_stage  # noqa: E402,F401\n")
    out = lint_imports(tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode != 0, out.stdout
    assert "tasks.config is not allowed to import tasks.stages" in out.stdout, out.stdout
    assert "BROKEN" in out.stdout


def local_project_imports() -> set[tuple[str, str]]:
    """(module, imported module) for every import of a project module inside a function of tasks/ or flows/."""
    found = set()
    for path in sorted([*ROOT.joinpath("tasks").rglob("*.py"), *ROOT.joinpath("flows").rglob("*.py")]):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

        def walk(node, in_function):
            for child in ast.iter_child_nodes(node):
                inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if in_function and isinstance(child, ast.ImportFrom) and child.level == 0:
                    names = [child.module] if child.module.split(".")[0] in ("tasks", "flows") else []
                    if child.module in ("tasks", "tasks.algorithms"):          # from tasks import x: module x
                        names = [f"{child.module}.{a.name}" for a in child.names]
                    found.update((module, n) for n in names)
                elif in_function and isinstance(child, ast.Import):
                    found.update((module, a.name) for a in child.names if a.name.split(".")[0] in ("tasks", "flows"))
                walk(child, inside)

        walk(ast.parse(path.read_text()), False)
    return found


def test_project_modules_are_imported_at_the_top_but_for_the_listed_few():
    found = local_project_imports()
    assert found == set(LAZY_IMPORTS), (f"function-local imports not listed: {sorted(found - set(LAZY_IMPORTS))}; "
                                        f"listed but gone: {sorted(set(LAZY_IMPORTS) - found)}")


def test_the_architecture_doc_lists_the_same_exceptions():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for module, imported in LAZY_IMPORTS:
        assert f"`{module}` → `{imported}`" in doc, (module, imported)


def test_importing_the_project_changes_nothing_in_the_process():
    # Every module of tasks/ is imported in a fresh interpreter: the environment stays as it was, no project
    # filter of warnings or log records is installed, and torch is not loaded (but by the one module whose
    # job is torch math). The entry points set the process up (tasks/runtime.py).
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for p in ROOT.joinpath("tasks").rglob("*.py"))
    code = (
        "import importlib, logging, os, sys, warnings\n"
        "env = dict(os.environ)\n"
        f"for m in {modules!r}:\n"
        "    if m != 'tasks.algorithms.ppo_math':\n"
        "        importlib.import_module(m)\n"
        "torch = 'torch' in sys.modules\n"
        "importlib.import_module('tasks.algorithms.ppo_math')\n"
        "ours = [n for n, lg in logging.Logger.manager.loggerDict.items()\n"
        "        if any(type(f).__module__ == 'tasks.quiet' for f in getattr(lg, 'filters', []))]\n"
        "checkpointing = [f for f in warnings.filters if f[1] and 'gradient_checkpointing' in f[1].pattern]\n"
        "print(dict(os.environ) == env, ours, checkpointing, torch)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "OMP_", "MLFLOW_", "PREFECT_"))}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[0] == "True [] [] False", out.stdout
    # ... and the entry points' set-up does set it up.
    code = ("import logging, os; from tasks.runtime import setup_process; setup_process(); "
            "print(os.environ['HF_HUB_OFFLINE'], os.environ['OMP_NUM_THREADS'].isdigit(), "
            "bool(logging.getLogger('dvc.output').filters))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["1", "True", "True"], out.stdout + out.stderr


def test_every_read_of_the_environment_says_why():
    # Nothing is passed between the project's own code through os.environ (the flow hands a stage its
    # StageContext). What remains reads settings of others (DVC, accelerate, oneDNN, git, Prefect), secrets
    # that params.yaml names, or the thread count: each says so in a comment on its line or just above it.
    # tasks/runtime.py, the process set-up of the entry points, is about nothing else.
    unexplained = []
    for path in sorted([*ROOT.joinpath("tasks").rglob("*.py"), *ROOT.joinpath("flows").rglob("*.py")]):
        if path.name == "runtime.py":
            continue
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "os.environ" not in line or line.lstrip().startswith("#"):
                continue
            said = "#" in line.split("os.environ", 1)[1] or any(
                above.lstrip().startswith("#") or '"""' in above for above in lines[max(0, i - 3):i])
            if not said:
                unexplained.append(f"{path.relative_to(ROOT)}:{i + 1}: {line.strip()}")
    assert not unexplained, "\n".join(unexplained)
    # The cycle's run and name, once exported to the stages through the environment, are no variable at all.
    source = "".join(p.read_text() for p in [*ROOT.joinpath("tasks").rglob("*.py"), *ROOT.joinpath("flows").rglob("*.py")])
    assert "RFT_PARENT_RUN_ID" not in source and "RFT_CYCLE_NAME" not in source


def test_components_are_found_by_reference_and_the_environments_by_a_checked_name():
    # Stages, algorithms, judges and labelers are tables of the functions, classes and modules themselves: a
    # rename fails at import. The environments are named by module so that no generic code imports a demo;
    # each name is checked here to load an environment that says the same about its truth.
    from tasks import envs, labelers
    from tasks.algorithms import REGISTRY as ALGORITHMS
    from tasks.judges import KINDS
    from tasks.stages import REGISTRY as STAGES

    assert all(callable(f) for f in STAGES.values())
    assert all(callable(a.module.train) for a in ALGORITHMS.values())
    assert all(callable(k.build) and isinstance(k.config, type) for k in KINDS.values())
    assert all(callable(f) for f in labelers.LABELERS.values())
    for name, info in envs.REGISTRY.items():
        assert envs.load_env(name).has_truth == info.has_truth, name


def test_reward_models_registered_before_the_rename_still_load():
    # Each registered reward model keeps the pyfunc code it was logged with, and those logged before the
    # module's rename import it by its old name (tasks/rewardmodel.py).
    from tasks import reward_model, rewardmodel

    assert rewardmodel.RewardModel is reward_model.RewardModel
    assert rewardmodel.trained_max_length is reward_model.trained_max_length
