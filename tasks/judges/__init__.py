"""Judges, chosen by name from the ``judges:`` section of ``params.yaml``.

Each entry names a ``kind`` and that kind's own settings (typed in
``tasks/judges/configs.py``, checked on load)::

    judges:
      embedding: {kind: embedding}
      gold:      {kind: reward_model, path: models/gold-reward}
      local:     {kind: llm, model: models/judge-llm}
      api:       {kind: http, url: http://127.0.0.1:8000/v1, model: my-judge, api_key_env: JUDGE_API_KEY}
      panel:     {kind: ensemble, members: [embedding, gold], combine: mean}
      annotator: {kind: simulated}          # only in an environment with a hidden truth
      people:    {kind: label_studio}       # people in Label Studio, blind (the gate's human judge)
      correct:   {kind: string_check, reference: answer}   # graders: tasks/judges/graders.py

``KINDS`` is the one table of the kinds: each kind's config type, how it is built, and whether it scores
single responses. An unknown kind is a ConfigError on load, never a fall-through to a default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tasks import envs
from tasks.errors import ConfigError
from tasks.judges import configs
from tasks.judges.embedding import EmbeddingJudge
from tasks.judges.ensemble import EnsembleJudge
from tasks.judges.graders import MultiGrader, RegexGrader, StringCheckGrader, TextSimilarityGrader, formula_members
from tasks.judges.http import HttpJudge
from tasks.judges.llm import LLMJudge
from tasks.judges.python_grader import PythonGrader
from tasks.judges.reward_model import RewardModelJudge
from tasks.judges.score_model import ScoreModelGrader
from tasks.judges.sharded import ShardedJudge
from tasks.rubric import load_rubric


def _people(name: str, spec, ctx: "JudgeContext"):
    # lazy: see LAZY_IMPORTS in tests/test_architecture.py
    from tasks.judges.people import PeopleJudge

    return PeopleJudge(name, spec, load_rubric(ctx.task.rubric), ctx.studio)


def _score_model(name: str, spec, ctx: "JudgeContext"):
    return ScoreModelGrader(name, spec, build_judge(spec.judge, ctx.plain()), load_rubric(spec.rubric or ctx.task.rubric))


def _multi(name: str, spec, ctx: "JudgeContext"):
    return MultiGrader(name, spec, {m: build_judge(m, ctx.plain()) for m in formula_members(spec.formula)})


@dataclass(frozen=True)
class Kind:
    config: type                        # the entry's typed settings (tasks/judges/configs.py)
    build: Callable                     # build(name, spec, ctx) -> Judge
    scores: bool                        # scores single responses (best-vs-worst pairs, rewards), not only pairs


KINDS: dict[str, Kind] = {
    "reward_model": Kind(configs.RewardModelJudgeConfig, lambda name, spec, ctx: RewardModelJudge(name, spec), True),
    "embedding": Kind(configs.EmbeddingJudgeConfig,
                      lambda name, spec, ctx: EmbeddingJudge(name, spec, load_rubric(ctx.task.rubric)), True),
    "llm": Kind(configs.LLMJudgeConfig, lambda name, spec, ctx: LLMJudge(name, spec, load_rubric(ctx.task.rubric)),
                False),
    "http": Kind(configs.HttpJudgeConfig,
                 lambda name, spec, ctx: HttpJudge(name, spec, load_rubric(ctx.task.rubric)), False),
    "ensemble": Kind(configs.EnsembleJudgeConfig,
                     lambda name, spec, ctx: EnsembleJudge(name, spec, [build_judge(m, ctx) for m in spec.members]),
                     False),
    # the environment's hidden-truth annotator
    "simulated": Kind(configs.SimulatedJudgeConfig,
                      lambda name, spec, ctx: envs.load_env(ctx.task.env).annotator(ctx.truth, ctx.seed), True),
    "label_studio": Kind(configs.PeopleJudgeConfig, _people, False),
    # graders (tasks/judges/graders.py): a rule, a similarity, code or a model's score of one response
    "string_check": Kind(configs.StringCheckConfig, lambda name, spec, ctx: StringCheckGrader(name, spec), True),
    "regex": Kind(configs.RegexConfig, lambda name, spec, ctx: RegexGrader(name, spec), True),
    "text_similarity": Kind(configs.TextSimilarityConfig, lambda name, spec, ctx: TextSimilarityGrader(name, spec),
                            True),
    "python": Kind(configs.PythonGraderConfig, lambda name, spec, ctx: PythonGrader(name, spec), True),
    "score_model": Kind(configs.ScoreModelConfig, _score_model, True),
    "multi": Kind(configs.MultiGraderConfig, _multi, True),
}
# The graders: judges with a pass threshold (evaluate reports their pass rates).
GRADER_KINDS = ("string_check", "regex", "text_similarity", "python", "score_model", "multi")
# Kinds that score single responses (what best-vs-worst pair picking needs).
SCORING_KINDS = {kind for kind, k in KINDS.items() if k.scores}


def no_judge(key: str, name, judges) -> ConfigError:
    """The error of a key that names a judge the judges section does not define."""
    return ConfigError(f"{key}: no judge named {name!r} in the judges section (defined: {', '.join(judges) or 'none'})")


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
        ``tasks.workers.cluster`` yields); None, or runner local: they judge in this process."""
        return cls(params.judges, params.task, params.truth, seed, params.label_studio,
                   scale if scale is not None and scale.runner != "local" else None)

    def plain(self) -> "JudgeContext":
        """This context without sharding: what a worker builds its judge from (params views pickle as they are)."""

        return JudgeContext(dict(self.judges), self.task, self.truth, self.seed, self.studio, None)


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
            out += [f for f in judge_files(judges, spec.members) if f not in out]
        elif spec.kind == "multi":
            out += [f for f in judge_files(judges, formula_members(spec.formula)) if f not in out]
        elif spec.kind == "score_model":
            out += [f for f in judge_files(judges, [spec.judge]) if f not in out]
        folder = {"reward_model": getattr(spec, "path", None), "llm": getattr(spec, "model", None)}.get(spec.kind)
        if folder and folder not in out:
            out.append(folder)
    return out


def reference_fields(judges: dict, names) -> dict[str, dict]:
    """The prompt-row fields the named judges read (members and terms too): ``{field: {"text": whether a grader
    reads it as text, "judges": [names]}}``. The prompts' validation checks each on every row."""
    out: dict[str, dict] = {}

    def need(field: str, text: bool, name: str) -> None:
        entry = out.setdefault(field, {"text": False, "judges": []})
        entry["text"] = entry["text"] or text
        if name not in entry["judges"]:
            entry["judges"].append(name)

    def walk(name: str, seen: tuple = ()) -> None:
        spec = judges.get(name)
        if spec is None or name in seen:
            return
        if spec.kind == "ensemble":
            for m in spec.members:
                walk(m, (*seen, name))
        elif spec.kind == "multi":
            for m in formula_members(spec.formula):
                walk(m, (*seen, name))
        elif spec.kind == "python":
            for f in spec.fields:
                need(f, False, name)
        elif spec.kind in ("string_check", "text_similarity", "score_model") and spec.reference:
            need(spec.reference, True, name)
    for n in names:
        walk(n)
    return out


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
        raise no_judge("judges", name, ctx.judges)
    spec = ctx.judges[name]
    if spec.kind not in KINDS:
        raise ConfigError(f"judges.{name}.kind: unknown kind {spec.kind!r} (known: {', '.join(KINDS)})")
    return KINDS[spec.kind].build(name, spec, ctx)
