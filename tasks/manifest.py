"""The stage manifest: one declaration per stage of the cycle, the single source of what each stage is.

Each :class:`Stage` gives the paths it reads (code included) and writes, the ``params.yaml`` keys it reads
(a whole section or one ``section.key``), and the metric its summary row shows; its code is
``tasks/stages/<name>.py`` (``tasks/stages/__init__.py::REGISTRY``). ``dvc.yaml`` is written from it
(``rft dvc-yaml``), and so are the CLI's choices, the flow's summary table, the MLflow ``rft.params`` tag and
each stage's view of params (``stage_view``): a stage that reads a key its entry does not declare fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks import algorithms as _alg
from tasks.config import OPTIMIZE_COMMON, Params, parse_params
from tasks.errors import ConfigError
from tasks.params_view import view
from tasks.paths import (BASE, BOOTSTRAP_REPORT, CANDIDATE, CHAMPION, CORPUS, CURVE, CURVE_PNG, EVAL_METRICS, EVAL_ROWS,
                         GENERATIONS, INCOMING, KEEP_IN_TRAIN, KEY_METRICS, LABEL_QUALITY, LABELS, LABELS_DOCS,
                         LABELS_REPORT, METRIC_MODULES, OPTIMIZE_REPORT, PROMPTS, PROMPTS_DOCS, PROMPTS_REPORT, RATINGS,
                         REGRESSION, REWARD, REWARD_METRICS)
from tasks.yamlfile import read_yaml

# Shared code whose change changes what a stage computes.
LIB = ("tasks/stages/common.py", "tasks/prompting.py", "tasks/text.py", "tasks/heldout.py", "tasks/provenance.py")
JUDGES = ("tasks/judges", "tasks/labelers", "tasks/labels", "tasks/label_studio_client.py", "tasks/rubric.py", "tasks/envs",
          "tasks/reward_model.py", "tasks/importers", "tasks/yamlfile.py", "tasks/judging.py", "tasks/judgemath.py",
          "tasks/formula.py", "tasks/textsim.py", "tasks/metric_modules.py", "metrics/text_similarity")
POLICY = ("tasks/policy.py", "tasks/rollout.py", "tasks/precision.py")
# The keys that say which judges a cycle asks (config.judges_in_use): each algorithm's judge keys are listed, the
# inactive ones' too, since DVC interpolates a section's name but not which of its keys name judges.
JUDGES_IN_USE = ("label.source", "label.judge", "label.quality_judges", "optimize.algorithm", "optimize.reward",
                 "optimize.select", "optimize.select_judge", "evaluate.judges",
                 *(f"optimize.{a.name}.{k}" for a in _alg.REGISTRY.values() for k in a.judge_keys))


@dataclass(frozen=True)
class Stage:
    name: str                      # also its module, tasks/stages/<name>.py, whose ``run(ctx)`` runs it
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


def _p(*paths) -> tuple[str, ...]:
    return tuple(str(p) for p in paths)


MANIFEST: tuple[Stage, ...] = (
    Stage("corpus",
          deps=(*LIB, "tasks/stages/corpus.py", "tasks/bootstrap.py", "tasks/envs", *_p(INCOMING)),
          outs=_p(CORPUS), params=("task.env", "corpus"),
          metric="texts", output=str(CORPUS)),
    Stage("bootstrap",
          deps=(*LIB, "tasks/stages/bootstrap.py", "tasks/bootstrap.py", "tasks/policy.py", "tasks/precision.py",
                *_p(CORPUS)),
          outs=_p(BASE), params=("bootstrap", "policy.base_model", "train.precision"),
          metric="sft_val_loss_after", output=str(BASE), reports=_p(BOOTSTRAP_REPORT)),
    Stage("champion",
          deps=(*LIB, "tasks/stages/champion.py", "tasks/champion.py", "tasks/policy.py", *_p(BASE)),
          outs=_p(CHAMPION), params=("policy.champion_dir", "champion.reseed"),
          metric="registry_version", output=str(CHAMPION), persist=_p(CHAMPION)),
    Stage("prepare",
          deps=(*LIB, "tasks/stages/prepare.py", "tasks/prepare.py", "${prepare.input}", *_p(KEEP_IN_TRAIN, CORPUS)),
          outs=_p(PROMPTS), params=("prepare",),
          metric="heldout", output=str(PROMPTS)),
    Stage("validate_prompts",
          deps=(*LIB, "tasks/stages/validate_prompts.py", "tasks/validate.py", "tasks/policy.py",
                *_p(PROMPTS, CORPUS, BASE)),
          # the judges in use (config.judges_in_use) and the reference fields they read (config.prompt_fields)
          outs=(), params=("validate", "judges", *JUDGES_IN_USE), metric="rows",
          output=f"{PROMPTS_DOCS}/",
          reports=_p(PROMPTS_REPORT), docs=_p(PROMPTS_DOCS)),
    Stage("generate",
          deps=(*LIB, "tasks/stages/generate.py", *POLICY, "tasks/generate.py", "tasks/genbackend.py",
                *_p(PROMPTS, PROMPTS_REPORT, CHAMPION)),
          outs=_p(GENERATIONS), params=("generate", "policy.champion_dir", "train.precision"),
          metric="tokens_per_second", output=str(GENERATIONS)),
    Stage("label",
          deps=(*LIB, "tasks/stages/label.py", *JUDGES, "tasks/pairs.py",
                *_p(GENERATIONS, PROMPTS, INCOMING), "${task.rubric}"),
          outs=_p(LABELS, RATINGS), params=("label", "label_studio", "task", "judges", "truth"),
          metric="pairs", output=str(LABELS), reports=_p(LABEL_QUALITY)),
    Stage("validate_labels",
          deps=(*LIB, "tasks/stages/validate_labels.py", "tasks/validate.py", *_p(LABELS, PROMPTS)),
          outs=(), params=("validate",), metric="rows", output=f"{LABELS_DOCS}/",
          reports=_p(LABELS_REPORT), docs=_p(LABELS_DOCS)),
    Stage("train_reward",
          deps=(*LIB, "tasks/stages/train_reward.py", "tasks/reward_training.py", "tasks/reward_model.py",
                "tasks/labels/convert.py", "tasks/launch.py", "tasks/accel.py", "tasks/precision.py",
                *_p(LABELS, PROMPTS, LABELS_REPORT)),
          outs=_p(REWARD), params=("reward", "label.ties", "train.precision"),
          metric="heldout_accuracy", output=str(REWARD), reports=_p(REWARD_METRICS)),
    Stage("optimize",
          deps=(*LIB, "tasks/stages/optimize.py", *POLICY, *JUDGES, "tasks/optimize.py", "tasks/algorithms",
                "tasks/evalmath.py", "tasks/launch.py", "tasks/accel.py",
                *_p(CHAMPION, REWARD, LABELS, RATINGS, PROMPTS), "${task.rubric}"),
          outs=_p(CANDIDATE),
          params=(*(f"optimize.{k}" for k in OPTIMIZE_COMMON), "optimize.${optimize.algorithm}", "judges", "task.rubric",
                  "policy.champion_dir", "label.ties", "train.precision"),
          metric="final_probe_reward", output=str(CANDIDATE), reports=_p(OPTIMIZE_REPORT),
          plots=_p(CURVE, CURVE_PNG)),
    Stage("evaluate",
          deps=(*LIB, "tasks/stages/evaluate.py", *POLICY, *JUDGES, "tasks/evaluate.py", "tasks/evalmath.py",
                "tasks/reward_training.py", *_p(METRIC_MODULES, PROMPTS, CANDIDATE, CHAMPION, REWARD, REWARD_METRICS, INCOMING,
                                                REGRESSION),
                "${task.rubric}"),
          outs=_p(EVAL_ROWS),
          params=("evaluate", "task", "judges", "truth", "label_studio", "reward.max_length",
                  "policy.champion_dir", "train.precision"),
          metric="winrate_*", output=str(EVAL_METRICS), reports=_p(EVAL_METRICS),
          metrics=_p(KEY_METRICS)),
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


# What every stage may read besides what it declares: settings of where it runs, not inputs of what it computes,
# so that a change of them never makes a stage stale.
HOUSEKEEPING = {
    "tracking": "where MLflow lives (tasks/stages/common.py::stage_run opens the stage's run there)",
    "scale": "where shards run and how many threads: the sharded output is the same bytes (tests/test_shard.py)",
    "policy.champion_dir": "each stage first finishes a folder swap a crash cut short, the champion's included "
                           "(tasks/io.py::recover_all)",
}


def stage_view(params: Params, name: str, log: set | None = None, strict: bool = True):
    """``params`` as stage ``name`` may read them: the keys it declares and the housekeeping ones; any other read
    raises ``UndeclaredParam`` (``tasks/params_view.py``). With ``log`` and ``strict=False``: every read
    recorded, none refused (the test that audits the manifest)."""
    return view(params, [*declared_params(name, params), *HOUSEKEEPING], name, log=log, strict=strict)


def _resolve(params, key: str):
    key = _interpolate(params, key) if "${" in key else key
    value = params
    for part in key.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def flatten(prefix: str, value) -> dict:
    """``value`` (a params section, a dict or a plain value) as ``{prefix.key.subkey: value}``."""
    import dataclasses

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
