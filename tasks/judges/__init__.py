"""Judges, chosen by name from the ``judges:`` section of ``params.yaml``.

Each entry names a ``kind`` and that kind's own settings (typed in
``tasks/config.py``, checked on load)::

    judges:
      embedding: {kind: embedding}
      gold:      {kind: reward_model, path: models/gold-reward}
      local:     {kind: llm, model: models/judge-llm}
      api:       {kind: http, url: http://127.0.0.1:8000/v1, model: my-judge, api_key_env: JUDGE_API_KEY}
      panel:     {kind: ensemble, members: [embedding, gold], combine: mean}
      annotator: {kind: simulated}          # only in an environment with a hidden truth
      people:    {kind: label_studio}       # people in Label Studio, blind (the gate's human judge)

``KINDS`` maps each kind to its implementation; an unknown kind is a
ConfigError on load, never a fall-through to a default.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from tasks.errors import ConfigError
from tasks.judges.sharded import ShardedJudge
from tasks.params_audit import unwrap
from tasks.rubric import load_rubric

KINDS = {
    "reward_model": "tasks.judges.reward_model:RewardModelJudge",
    "embedding": "tasks.judges.embedding:EmbeddingJudge",
    "llm": "tasks.judges.llm:LLMJudge",
    "http": "tasks.judges.http:HttpJudge",
    "ensemble": "tasks.judges.ensemble:EnsembleJudge",
    "simulated": "tasks.envs:load_env",        # the environment's annotator
    "label_studio": "tasks.judges.people:PeopleJudge",
}
# Kinds that score single responses (what best-vs-worst pair picking needs).
SCORING_KINDS = {"reward_model", "embedding", "simulated"}


@dataclass(frozen=True)
class JudgeContext:
    """What building a judge needs besides its own entry: every entry (for ensembles), the task, the truth,
    and the Label Studio server (for people)."""
    judges: dict
    task: object           # TaskConfig: env and rubric
    truth: object          # TruthConfig of an environment with a truth
    seed: int = 0
    studio: object = None  # LabelStudioConfig
    scale: object = None   # ScaleConfig of a stage that shards its judging; None: judge in this process

    @classmethod
    def of(cls, params, seed: int = 0, scale=None) -> "JudgeContext":
        """``scale``: the judges it builds split their work over its workers (label and evaluate pass what
        ``tasks.shard.cluster`` yields); None, or runner local: they judge in this process."""
        return cls(params.judges, params.task, params.truth, seed, params.label_studio,
                   scale if scale is not None and scale.runner != "local" else None)

    def plain(self) -> "JudgeContext":
        """This context without sharding and without recording views: what a worker builds its judge from."""

        return JudgeContext({k: unwrap(v) for k, v in self.judges.items()}, unwrap(self.task), unwrap(self.truth),
                            self.seed, unwrap(self.studio), None)


def judge_files(judges: dict, names) -> list[str]:
    """The model folders that the named judges read (reward-model and LLM judges, ensemble members too).

    Stages log their content hashes as lineage (``dvc.md5.<path>`` tags). DVC reruns a stage when such a
    folder changes only if it lies under ``data/incoming/`` (a dependency of ``label`` and ``evaluate``)
    or is a pipeline output such as ``models/reward``."""
    out: list[str] = []
    for name in names:
        spec = judges.get(name)
        if spec is None:
            continue
        if spec.kind == "ensemble":
            out += judge_files(judges, spec.members)
        folder = {"reward_model": getattr(spec, "path", None), "llm": getattr(spec, "model", None)}.get(spec.kind)
        if folder and folder not in out:
            out.append(folder)
    return out


def _load(path: str):
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def build_judge(name: str, ctx: JudgeContext):
    """The judge ``judges.<name>`` describes; when ``ctx`` shards, wrapped to judge on its workers."""
    if ctx.scale is None:
        return _build(name, ctx)
    import dataclasses

    judge = _build(name, dataclasses.replace(ctx, scale=None))
    if not judge.shardable:
        return judge

    return ShardedJudge(judge, name, ctx.plain(), ctx.scale, build_judge)


def _build(name: str, ctx: JudgeContext):
    if name not in ctx.judges:
        raise ConfigError(f"judges: no judge named {name!r} (defined: {', '.join(ctx.judges) or 'none'})")
    spec = ctx.judges[name]
    if spec.kind not in KINDS:
        raise ConfigError(f"judges.{name}.kind: unknown kind {spec.kind!r} (known: {', '.join(KINDS)})")
    if spec.kind == "simulated":
        return _load(KINDS["simulated"])(ctx.task.env).annotator(ctx.truth, ctx.seed)
    if spec.kind == "ensemble":
        members = [build_judge(m, ctx) for m in spec.members]
        return _load(KINDS["ensemble"])(name, spec, members)

    rubric = load_rubric(ctx.task.rubric) if spec.kind in ("embedding", "llm", "http", "label_studio") else None
    if spec.kind == "label_studio":
        return _load(KINDS[spec.kind])(name, spec, rubric, ctx.studio)
    return _load(KINDS[spec.kind])(name, spec, rubric)
