"""The stage manifest: one declaration per stage of the cycle, the single source of what each stage is.

Each :class:`Stage` gives the function that runs it, the paths it reads
(code included) and writes, the ``params.yaml`` keys it reads (a whole section
or one ``section.key``), and the metric its summary row shows. The stage
registry, the CLI's choices, the flow's summary table and the MLflow
``rft.params`` tag derive from it, and ``tests/test_manifest.py`` checks it
against ``dvc.yaml`` and against the keys each stage really reads, so a stage
that reads a key or a file that ``dvc.yaml`` does not list fails CI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks.config import OptimizeConfig, Params, parse_params
from tasks.errors import ConfigError
from tasks.params_audit import unwrap
from tasks.paths import KEEP_IN_TRAIN
from tasks.yamlfile import read_yaml

LIB = ("tasks/stages/common.py", "tasks/prompting.py", "tasks/text.py", "tasks/heldout.py", "tasks/provenance.py")   # shared code whose change changes what a stage computes
JUDGES = ("tasks/judges", "tasks/labelers", "tasks/labels", "tasks/labelstudio.py", "tasks/rubric.py", "tasks/envs",
          "tasks/rewardmodel.py", "tasks/importers", "tasks/yamlfile.py")
POLICY = ("tasks/policy.py", "tasks/rollout.py", "tasks/precision.py")


@dataclass(frozen=True)
class Stage:
    name: str                      # also its module, tasks/stages/<name>.py, whose ``run(params)`` runs it
    deps: tuple[str, ...]          # paths it reads; ${...} is interpolated from params.yaml by DVC
    outs: tuple[str, ...]          # paths it writes (DVC outs, cached)
    params: tuple[str, ...]        # params.yaml keys it reads: "section" or "section.key"
    metric: str                    # the metric its summary row shows
    output: str                    # the output its summary row points to
    reports: tuple[str, ...] = ()  # JSON reports of its figures (not cached, kept in git; `dvc metrics show FILE`)
    metrics: tuple[str, ...] = ()  # DVC metrics files it writes: the cycle's key figures, one small file
    docs: tuple[str, ...] = ()     # report folders it writes (not cached)
    persist: tuple[str, ...] = ()  # outs DVC must keep between runs
    plots: tuple[str, ...] = ()    # plot files it writes (not cached)


def _optimize_common() -> tuple[str, ...]:
    """The optimize keys every algorithm reads; of the per-algorithm sections only the active one is declared
    (``optimize.${optimize.algorithm}``, which DVC interpolates from params.yaml)."""
    import dataclasses

    return tuple(f"optimize.{f.name}" for f in dataclasses.fields(OptimizeConfig)
                 if not (f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory)))


MANIFEST: tuple[Stage, ...] = (
    Stage("corpus",
          deps=(*LIB, "tasks/stages/corpus.py", "tasks/bootstrap.py", "tasks/envs", "data/incoming"),
          outs=("data/corpus",), params=("task.env", "corpus"),
          metric="texts", output="data/corpus"),
    Stage("bootstrap",
          deps=(*LIB, "tasks/stages/bootstrap.py", "tasks/bootstrap.py", "tasks/policy.py", "tasks/precision.py", "data/corpus"),
          outs=("models/base",), params=("bootstrap", "policy.base_model", "train.precision"),
          metric="sft_val_loss_after", output="models/base", reports=("reports/bootstrap/metrics.json",)),
    Stage("champion",
          deps=(*LIB, "tasks/stages/champion.py", "tasks/champion.py", "tasks/policy.py", "models/base"),
          outs=("models/champion",), params=("policy.champion_dir", "champion.reseed"),
          metric="registry_version", output="models/champion", persist=("models/champion",)),
    Stage("prepare",
          deps=(*LIB, "tasks/stages/prepare.py", "tasks/prepare.py", "${prepare.input}", str(KEEP_IN_TRAIN), "data/corpus"),
          outs=("data/prompts.jsonl",), params=("prepare",),
          metric="heldout", output="data/prompts.jsonl"),
    Stage("validate_prompts",
          deps=(*LIB, "tasks/stages/validate_prompts.py", "tasks/validate.py", "tasks/policy.py", "data/prompts.jsonl", "data/corpus", "models/base"),
          outs=(), params=("validate",), metric="rows", output="reports/data_docs/prompts/",
          reports=("reports/validation/prompts.json",), docs=("reports/data_docs/prompts",)),
    Stage("generate",
          deps=(*LIB, "tasks/stages/generate.py", *POLICY, "tasks/generate.py", "tasks/genbackend.py", "data/prompts.jsonl", "reports/validation/prompts.json",
                "models/champion"),
          outs=("data/generations.jsonl",), params=("generate", "policy.champion_dir", "train.precision"),
          metric="tokens_per_second", output="data/generations.jsonl"),
    Stage("label",
          deps=(*LIB, "tasks/stages/label.py", *JUDGES, "tasks/label.py", "tasks/pairs.py", "data/generations.jsonl", "data/prompts.jsonl",
                "data/incoming", "${task.rubric}"),
          outs=("data/labels.jsonl", "data/ratings.jsonl"), params=("label", "label_studio", "task", "judges", "truth"),
          metric="pairs", output="data/labels.jsonl", reports=("reports/label/quality.json",)),
    Stage("validate_labels",
          deps=(*LIB, "tasks/stages/validate_labels.py", "tasks/validate.py", "data/labels.jsonl", "data/prompts.jsonl"),
          outs=(), params=("validate",), metric="rows", output="reports/data_docs/labels/",
          reports=("reports/validation/labels.json",), docs=("reports/data_docs/labels",)),
    Stage("train_reward",
          deps=(*LIB, "tasks/stages/train_reward.py", "tasks/reward.py", "tasks/rewardmodel.py", "tasks/labels/convert.py", "tasks/launch.py", "tasks/accel.py",
                "tasks/precision.py",
                "data/labels.jsonl",
                "data/prompts.jsonl", "reports/validation/labels.json"),
          outs=("models/reward",), params=("reward", "label.ties", "train.precision"),
          metric="heldout_accuracy", output="models/reward", reports=("reports/reward/metrics.json",)),
    Stage("optimize",
          deps=(*LIB, "tasks/stages/optimize.py", *POLICY, *JUDGES, "tasks/optimize.py", "tasks/algorithms", "tasks/evalmath.py", "tasks/launch.py", "tasks/accel.py",
                "models/champion", "models/reward", "data/labels.jsonl", "data/ratings.jsonl", "data/prompts.jsonl",
                "${task.rubric}"),
          outs=("models/candidate",),
          params=(*_optimize_common(), "optimize.${optimize.algorithm}", "judges", "task.rubric",
                  "policy.champion_dir", "label.ties", "train.precision"),
          metric="final_probe_reward", output="models/candidate", reports=("reports/optimize/metrics.json",),
          plots=("reports/optimize/curve.csv", "reports/optimize/curve.png")),
    Stage("evaluate",
          deps=(*LIB, "tasks/stages/evaluate.py", *POLICY, *JUDGES, "tasks/evaluate.py", "tasks/evalmath.py", "tasks/reward.py", "metrics",
                "data/prompts.jsonl", "models/candidate", "models/champion", "models/reward",
                "reports/reward/metrics.json", "data/incoming", "${task.rubric}"),
          outs=("data/eval.jsonl",),
          params=("evaluate", "task", "judges", "truth", "label_studio", "reward.max_length",
                  "policy.champion_dir", "train.precision"),
          metric="winrate_*", output="reports/eval/metrics.json", reports=("reports/eval/metrics.json",),
          metrics=("reports/metrics.json",)),
)

BY_NAME = {s.name: s for s in MANIFEST}

# ``dvc plots show``'s plots: the probe's reward and its KL to the reference, each on its own axis (vega
# scripts from a CDN, blank offline), and the PNG that the optimize stage draws of the same curve, embedded
# in the same page with no network.
PLOTS: tuple[dict, ...] = (
    {"probe_reward": {"template": "linear", "title": "Probe reward per optimizer step", "x": "step",
                      "x_label": "optimizer step", "y_label": "probe reward (reward model score)",
                      "y": {"reports/optimize/curve.csv": "reward"}}},
    {"probe_kl": {"template": "linear", "title": "Probe KL to the reference per optimizer step", "x": "step",
                  "x_label": "optimizer step", "y_label": "KL to the reference (nats per sequence)",
                  "y": {"reports/optimize/curve.csv": "kl"}}},
    "reports/optimize/curve.png",
)
STAGES = [s.name for s in MANIFEST]
KEY_METRIC = {s.name: (s.metric, s.output) for s in MANIFEST}


def git_tracked_outputs() -> list[str]:
    """What DVC leaves to git: the reports, metrics and plots files (not cached), and the ``.gitignore`` files DVC
    writes beside cached outputs. A commit of an iteration holds these with ``dvc.lock`` and ``params.yaml``."""
    from pathlib import Path

    files = [p for s in MANIFEST for p in (*s.reports, *s.metrics, *s.plots)]
    parents = {Path(out).parent for s in MANIFEST for out in s.outs} - {Path(".")}
    ignores = {str(parent / ".gitignore") for parent in parents}
    return files + sorted(ignores)


def _interpolate(params, key: str) -> str:
    """``key`` with each ``${a.b}`` replaced by that value of params (a Params object or the raw mapping)."""
    import re

    return re.sub(r"\$\{([^}]+)\}", lambda m: str(_resolve(params, m.group(1))), key)


def declared_params(name: str, params) -> list[str]:
    """The params keys the stage declares, interpolated: ``optimize.${optimize.algorithm}`` -> ``optimize.dpo``."""
    return [_interpolate(params, k) for k in BY_NAME[name].params]


def _resolve(params, key: str):
    key = _interpolate(params, key) if "${" in key else key
    value = params
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def flatten(prefix: str, value) -> dict:
    """``value`` (a params section, a dict or a plain value) as ``{prefix.key.subkey: value}``."""
    import dataclasses

    value = unwrap(value)
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten(f"{prefix}.{k}", v))
        return out
    return {prefix: value}


def logged_params(name: str, params: Params) -> dict:
    """Every params key the stage declares, flattened (``judges.gold.path``): what its MLflow run logs."""
    out = {}
    for key in declared_params(name, params):
        out.update(flatten(key, _resolve(params, key)))
    return out


def input_paths(name: str, params: Params) -> list:
    """The data the stage declares it reads (code left out; ``${key}`` filled in from params): the paths
    whose DVC hashes tag its MLflow run."""
    from pathlib import Path

    out = []
    for dep in BY_NAME[name].deps:
        if dep.startswith("tasks/") or dep == "metrics":
            continue
        out.append(Path(_interpolate(params, dep)))
    return out


def dvc_stage(stage: Stage) -> dict:
    """The ``dvc.yaml`` entry this declaration stands for (what ``tests/test_manifest.py`` compares)."""
    entry: dict = {"cmd": f"rft stage {stage.name}", "deps": list(stage.deps)}
    if stage.params:
        entry["params"] = list(stage.params)
    outs = [{o: {"persist": True}} if o in stage.persist else o for o in stage.outs]
    outs += [{d: {"cache": False}} for d in (*stage.docs, *stage.reports, *stage.plots)]
    if outs:
        entry["outs"] = outs
    if stage.metrics:
        entry["metrics"] = [{m: {"cache": False}} for m in stage.metrics]
    return entry


def missing_declared_params(raw: dict) -> list[tuple[str, str]]:
    """(key, stage) for each params key that a stage declares and the params file lacks: DVC needs every
    declared key written out, even one left at its default, or it fails after the stage has run."""
    missing = []
    for stage in MANIFEST:
        for key in stage.params:
            try:
                key = _interpolate(raw, key)
            except (KeyError, TypeError):
                missing.append((key, stage.name))
                continue
            node = raw
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    missing.append((key, stage.name))
                    break
                node = node[part]
    return missing


_LOADED: dict[tuple, Params] = {}


def load_params(path: str | Path = "params.yaml") -> Params:
    """``params.yaml``, read strictly and validated; a file unchanged since this process last read it (same
    size and modification time) is not parsed again."""
    path = Path(path)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, str(Path.cwd()))
    except OSError:
        key = None
    if key in _LOADED:
        return _LOADED[key]
    params = _load_params(path)
    if key is not None:
        _LOADED.clear()
        _LOADED[key] = params
    return params


def _load_params(path: Path) -> Params:
    raw = read_yaml(path, "run from the project root, or pass --params")
    params = parse_params(raw, str(path))

    missing = missing_declared_params(raw)
    if missing:
        key, stage = missing[0]
        raise ConfigError(f"{path}: {key}: missing; dvc.yaml's stage {stage} reads it, so the file must "
                          "write it out (its default is in `rft params`)")
    return params
